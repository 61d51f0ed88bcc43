"""The log-mel front-end (`feature_frontend="log_mel"`): the teacher's frames for every length, the same log-mel as a
library's STFT, empty bands floored (padded batches: tests/test_modeling.py), loaded in a fresh process from the
folder's own code, exported to ONNX, refused where it cannot go, and distilled by train_distill.py."""

import json

import librosa
import numpy as np
import pytest
import torch
from conftest import distill, logits_of_a_hub_user, tiny_student_config, tiny_teacher_config
from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import AutoProcessor, Wav2Vec2Model

from modeling_distilxlsr import DistilXLSRConfig, DistilXLSRForCTC, DistilXLSRForDistillation, DistilXLSRModel
from modeling_distilxlsr.distill.teacher import init_student_from_teacher
from modeling_distilxlsr.export.onnx_export import export_onnx
from modeling_distilxlsr.export.wav2vec2 import export_as_wav2vec2
from modeling_distilxlsr.inference.backends import load_backend
from modeling_distilxlsr.models import modeling_distilxlsr_log_mel as log_mel_module
from modeling_distilxlsr.models.configuration_distilxlsr import cnn_output_frames
from modeling_distilxlsr.models.folder import save_for_hub
from modeling_distilxlsr.models.modeling_distilxlsr_log_mel import DistilXLSRLogMelFeatureEncoder


def log_mel_config(**overrides):
    return tiny_student_config(feature_frontend="log_mel", **overrides)


def test_the_log_mel_config_takes_the_teacher_cnns_receptive_field_stride_and_width():
    config = log_mel_config()
    assert (config.conv_kernel, config.conv_stride, config.conv_dim) == ((400,), (320,), (16,))
    assert config.receptive_field == 400
    xlsr = DistilXLSRConfig.from_teacher_config(DistilXLSRConfig(), feature_frontend="log_mel")
    assert (xlsr.conv_kernel, xlsr.conv_stride, xlsr.conv_dim) == ((400,), (320,), (512,))
    with pytest.raises(ValueError, match="choose one"):
        tiny_student_config(feature_frontend="log_mel", cnn_width=8)
    with pytest.raises(StrictDataclassClassValidationError, match="feature_frontend"):
        tiny_student_config(feature_frontend="mfcc")
    with pytest.raises(StrictDataclassClassValidationError, match="one frame analysis"):
        DistilXLSRConfig(feature_frontend="log_mel")  # XLSR-53's 7 CNN layers are not a frame analysis


@pytest.mark.parametrize("samples", [400, 719, 720, 16000, 16319, 23457])
def test_every_length_gives_the_teachers_frame_count(tiny_teacher, samples):
    torch.manual_seed(0)
    student = DistilXLSRModel(log_mel_config()).eval()
    wave = torch.randn(1, samples)
    with torch.no_grad():
        frames = student(wave).last_hidden_state.shape[1]
        teacher_frames = tiny_teacher(wave).last_hidden_state.shape[1]
    assert frames == teacher_frames == cnn_output_frames(tiny_teacher_config(), samples)


def test_log_mel_is_librosas_power_mel_spectrogram_of_the_same_frames():
    model = DistilXLSRModel(log_mel_config()).eval()
    wave = np.random.default_rng(0).standard_normal(8000).astype(np.float32)
    ours = model.feature_extractor.log_mel(torch.from_numpy(wave)[None])[0].numpy()
    reference = librosa.feature.melspectrogram(
        y=wave, sr=16000, n_fft=400, hop_length=320, win_length=400, window="hann", center=False, power=2.0,
        n_mels=80, fmin=0.0, fmax=8000.0, htk=False, norm="slaney",
    )  # fmt: skip
    np.testing.assert_allclose(ours, np.log(reference.T + 1e-6), atol=2e-3, rtol=0)


def test_bands_far_below_a_frames_loudest_are_floored_so_an_empty_band_cannot_swing_the_output(monkeypatch):
    model = DistilXLSRModel(log_mel_config()).eval()
    time = torch.arange(16000) / 16000
    tone = torch.sin(2 * torch.pi * 300 * time)[None]  # band-limited: nothing above a few hundred Hz
    hiss = 1e-3 * torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))  # 57 dB down
    front_end = model.feature_extractor

    def output_change():
        with torch.no_grad():
            return (front_end(tone + hiss) - front_end(tone)).abs().max()

    floored = output_change()
    monkeypatch.setattr(log_mel_module, "DYNAMIC_RANGE", float("inf"))  # the same front-end without the floor
    unfloored = output_change()
    assert floored < 0.01 and unfloored > 10 * floored


def test_mel_band_masks_set_whole_bands_to_the_frames_floor_in_training_and_never_at_inference():
    torch.manual_seed(0)
    front_end = DistilXLSRModel(log_mel_config(mel_band_mask_prob=0.3, mel_band_mask_length=8)).feature_extractor
    seen = []
    front_end.projection.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    wave = torch.randn(2, 16000, generator=torch.Generator().manual_seed(1))
    front_end.eval()
    front_end(wave)
    front_end(wave)
    front_end.train()
    front_end(wave)
    clean, clean_again, masked = seen
    torch.testing.assert_close(clean, clean_again)  # inference: no mask, deterministic
    changed = (masked != clean).any(dim=1)  # (batch, bands): which bands the mask touched
    assert changed.any(dim=1).all()  # every clip got a mask (0.3 of 80 bands in spans of 8: about 3 spans)
    floor = clean.amax(dim=-1, keepdim=True) - log_mel_module.DYNAMIC_RANGE
    for row in range(2):
        bands = changed[row]
        torch.testing.assert_close(masked[row][:, bands], floor[row].expand(-1, int(bands.sum())))
        assert int(bands.sum()) < 80 * 0.6  # whole bands, a share of them, over every frame
    with pytest.raises(StrictDataclassClassValidationError, match="needs `feature_frontend='log_mel'`"):
        tiny_student_config(mel_band_mask_prob=0.2)
    with pytest.raises(StrictDataclassClassValidationError, match="must be in"):
        log_mel_config(mel_band_mask_prob=1.5)


def test_the_front_end_costs_a_fraction_of_the_cnn_it_replaces():
    cnn = DistilXLSRModel(tiny_student_config()).feature_extractor
    log_mel = DistilXLSRModel(log_mel_config()).feature_extractor
    learnt = sum(p.numel() for p in log_mel.parameters())
    assert learnt == (80 * 16 + 16) + (16 * 16 + 16) + 4 * 16  # two Linear layers and two LayerNorms
    assert learnt < sum(p.numel() for p in cnn.parameters())


def test_init_from_the_teacher_copies_everything_above_the_front_end(tiny_teacher):
    torch.manual_seed(1)
    student = DistilXLSRForDistillation(log_mel_config())
    front_end = {k: v.clone() for k, v in student.distilxlsr.feature_extractor.state_dict().items()}
    init_student_from_teacher(student, tiny_teacher)
    backbone = student.distilxlsr
    for name, value in backbone.feature_extractor.state_dict().items():
        torch.testing.assert_close(value, front_end[name])  # its own: learnt from the teacher's CNN output
    torch.testing.assert_close(
        backbone.feature_projection.projection.weight, tiny_teacher.feature_projection.projection.weight
    )
    torch.testing.assert_close(
        backbone.encoder.layers[1].feed_forward.output_dense.weight,
        tiny_teacher.encoder.layers[1].feed_forward.output_dense.weight,
    )
    other = Wav2Vec2Model(tiny_teacher_config(conv_stride=(5, 2, 2, 2, 2, 2, 3))).eval()
    with pytest.raises(ValueError, match="log-mel frames"):
        init_student_from_teacher(DistilXLSRForDistillation(log_mel_config()), other)


def test_a_saved_log_mel_model_loads_in_a_fresh_process_from_the_folders_own_code(tmp_path):
    torch.manual_seed(0)
    model = DistilXLSRForCTC(log_mel_config(vocab_size=12)).eval()
    save_for_hub(model, tmp_path / "model")
    assert json.loads((tmp_path / "model" / "config.json").read_text())["feature_frontend"] == "log_mel"
    wave = torch.randn(1, 12000)
    with torch.no_grad():
        expected = model(wave).logits
    check = 'type(model.distilxlsr.feature_extractor).__name__ == "DistilXLSRLogMelFeatureEncoder"'
    logits = logits_of_a_hub_user(tmp_path / "model", wave, tmp_path, check)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


def test_onnx_export_of_a_log_mel_model_gives_its_logits(tmp_path, tiny_ctc_dir):
    processor_dir, _ = tiny_ctc_dir
    torch.manual_seed(0)
    config = log_mel_config(vocab_size=json.loads((processor_dir / "config.json").read_text())["vocab_size"])
    model = DistilXLSRForCTC(config).eval()
    save_for_hub(model, tmp_path / "model", AutoProcessor.from_pretrained(processor_dir))
    export_onnx(tmp_path / "model", tmp_path / "model", quantize="dynamic")
    wave = np.random.default_rng(0).standard_normal(20000).astype(np.float32)
    reference = load_backend(str(tmp_path / "model"), "torch-fp32").logits([wave])[0]
    onnx = load_backend(str(tmp_path / "model"), "onnx-fp32").logits([wave])[0]
    int8 = load_backend(str(tmp_path / "model"), "onnx-int8").logits([wave])[0]
    np.testing.assert_allclose(onnx, reference, atol=1e-3, rtol=0)
    assert int8.shape == reference.shape and np.isfinite(int8).all()


def test_export_as_wav2vec2_refuses_a_log_mel_model_clearly(tmp_path):
    save_for_hub(DistilXLSRForCTC(log_mel_config(vocab_size=12)), tmp_path / "model")
    with pytest.raises(ValueError, match="log_mel front-end, which wav2vec2 has no module for"):
        export_as_wav2vec2(str(tmp_path / "model"), str(tmp_path / "wav2vec2"))


@pytest.mark.slow
def test_train_distill_distils_a_log_mel_student_from_the_teachers_cnn_output(tiny_teacher_dir, small_corpus, tmp_path):
    out = tmp_path / "out"
    common = ["--student_frontend", "log_mel", "--max_steps", 30, "--eval_steps", 30, "--save_steps", 30]
    result = distill(tiny_teacher_dir, small_corpus / "train", tmp_path / "o", *common, "--freeze_cnn", check=False)
    assert result.returncode != 0 and "choose one" in result.stderr
    distill(
        tiny_teacher_dir, small_corpus / "train", out, *common, "--eval_fraction", 0.15, "--learning_rate", 1e-3,
        "--mel_band_mask_prob", 0.2,
    )  # fmt: skip
    results = json.loads((out / "distill_results.json").read_text())
    initial, final = results["initial_eval"], results["final_eval"]
    assert final["eval/loss"] < initial["eval/loss"] - 0.05
    assert final["eval/cosine_cnn"] > initial["eval/cosine_cnn"] + 0.05  # the teacher's CNN output, learnt
    config = json.loads((out / "config.json").read_text())
    assert config["feature_frontend"] == "log_mel" and config["conv_dim"] == [16]
    assert config["mel_band_mask_prob"] == 0.2  # saved: a fine-tune of this folder keeps its band masks
    card = (out / "README.md").read_text()
    assert "log-mel (80 bands, 400-sample window every 320)" in card and "mel-band masks over 0.2 of the bands" in card
    ctc = DistilXLSRForCTC.from_pretrained(out).eval()  # the distilled folder loads as an ASR model's backbone
    assert isinstance(ctc.distilxlsr.feature_extractor, DistilXLSRLogMelFeatureEncoder)
