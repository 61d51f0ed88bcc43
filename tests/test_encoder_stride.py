"""`encoder_stride`: the student's layers at a lower frame rate, the output back at the front-end's. Same frames out,
a padded batch as its clips alone, loaded in a fresh process from the folder's own code, exported to ONNX, refused
where it cannot go, and distilled by train_distill.py."""

import json

import numpy as np
import pytest
import torch
from conftest import distill, logits_of_a_hub_user, tiny_student_config
from transformers import AutoProcessor

from modeling_distilxlsr import DistilXLSRConfig, DistilXLSRForCTC, DistilXLSRForDistillation
from modeling_distilxlsr.distill.teacher import init_student_from_teacher
from modeling_distilxlsr.export.ctranslate2_export import ctranslate2_problems
from modeling_distilxlsr.export.onnx_export import export_onnx
from modeling_distilxlsr.export.wav2vec2 import export_as_wav2vec2
from modeling_distilxlsr.inference.backends import load_backend
from modeling_distilxlsr.models.folder import save_for_hub


def strided_model(vocab_size: int = 12, stride: int = 2) -> DistilXLSRForCTC:
    torch.manual_seed(0)
    return DistilXLSRForCTC(tiny_student_config(vocab_size=vocab_size, encoder_stride=stride)).eval()


def test_the_layers_see_half_the_frames_and_the_output_keeps_every_frame():
    """Stride 2: every hidden state of the layers has ceil(frames / 2) frames, the logits the front-end's count;
    before training each pair of output frames is one layer output repeated (the expansion starts as a repeat, the
    skip at zero), after it each frame can be its own."""
    model = strided_model()
    wave = torch.randn(1, 16000)
    with torch.no_grad():
        out = model.distilxlsr(wave, output_hidden_states=True)
        logits = model(wave).logits
    frames = out.extract_features.shape[1]
    assert out.last_hidden_state.shape[1] == logits.shape[1] == frames
    assert {h.shape[1] for h in out.hidden_states} == {-(-frames // 2)}
    torch.testing.assert_close(out.last_hidden_state[:, 0::2][:, : frames // 2], out.last_hidden_state[:, 1::2])
    with torch.no_grad():
        model.distilxlsr.encoder_stride.skip_scale.fill_(0.5)
        skipped = model.distilxlsr(wave).last_hidden_state
    assert not torch.allclose(skipped[:, 0::2][:, : frames // 2], skipped[:, 1::2])  # each frame its own now


def test_a_strided_student_starts_from_the_teachers_layers(tiny_teacher):
    config = DistilXLSRConfig.from_teacher_config(tiny_teacher.config, encoder_stride=2)
    student = init_student_from_teacher(DistilXLSRForDistillation(config), tiny_teacher).distilxlsr
    for name, value in tiny_teacher.encoder.layers[1].state_dict().items():
        torch.testing.assert_close(student.encoder.layers[1].state_dict()[name], value)
    torch.testing.assert_close(
        student.encoder.pos_conv_embed.conv.weight, tiny_teacher.encoder.pos_conv_embed.conv.weight
    )


def test_a_clip_in_a_padded_batch_gives_what_it_gives_alone():
    """Padding never enters a group's mean, also when a clip ends inside a group (27 frames: the last group holds
    one real frame)."""
    model = strided_model()
    with torch.no_grad():
        model.distilxlsr.encoder_stride.skip_scale.normal_()
    waves = torch.randn(2, 16000)
    mask = torch.ones(2, 16000, dtype=torch.long)
    mask[1, 9000:] = 0
    with torch.no_grad():
        batch = model(waves, attention_mask=mask).logits
        alone = model(waves[1:, :9000]).logits
    assert alone.shape[1] % 2 == 1
    torch.testing.assert_close(batch[1, : alone.shape[1]], alone[0], atol=1e-5, rtol=0)


def test_a_saved_strided_model_loads_in_a_fresh_process_from_the_folders_own_code(tmp_path):
    model = strided_model()
    with torch.no_grad():  # trained values, which the folder must keep (not the repeat it starts from)
        model.distilxlsr.encoder_stride.skip_scale.normal_()
        model.distilxlsr.encoder_stride.expand.weight.normal_(std=0.2)
    save_for_hub(model, tmp_path / "model")
    assert json.loads((tmp_path / "model" / "config.json").read_text())["encoder_stride"] == 2
    assert (tmp_path / "model" / "modeling_distilxlsr_stride.py").exists()
    wave = torch.randn(1, 12000)
    with torch.no_grad():
        expected = model(wave).logits
    check = 'type(model.distilxlsr.encoder_stride).__name__ == "DistilXLSREncoderStride"'
    logits = logits_of_a_hub_user(tmp_path / "model", wave, tmp_path, check)
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)


def test_onnx_export_of_a_strided_model_gives_its_logits_and_the_other_exports_refuse_it(tmp_path, tiny_ctc_dir):
    processor_dir, _ = tiny_ctc_dir
    model = strided_model(vocab_size=json.loads((processor_dir / "config.json").read_text())["vocab_size"])
    with torch.no_grad():
        model.distilxlsr.encoder_stride.skip_scale.normal_()
    save_for_hub(model, tmp_path / "model", AutoProcessor.from_pretrained(processor_dir))
    export_onnx(tmp_path / "model", tmp_path / "model")
    for samples in (20000, 13000):  # an even and an odd frame count: the graph is not traced for one length
        wave = np.random.default_rng(samples).standard_normal(samples).astype(np.float32)
        reference = load_backend(str(tmp_path / "model"), "torch-fp32").logits([wave])[0]
        onnx = load_backend(str(tmp_path / "model"), "onnx-fp32").logits([wave])[0]
        np.testing.assert_allclose(onnx, reference, atol=1e-3, rtol=0)
    with pytest.raises(ValueError, match=r"1/2 of the frame rate \(encoder_stride\), which wav2vec2 has no module"):
        export_as_wav2vec2(str(tmp_path / "model"), str(tmp_path / "wav2vec2"))
    assert any(p.startswith("encoder_stride=2") for p in ctranslate2_problems(model.config))


@pytest.mark.slow
def test_train_distill_distils_a_strided_student_with_the_teachers_layers(tiny_teacher_dir, small_corpus, tmp_path):
    """`--student_encoder_stride 2`: the loss falls, the folder and its card say the stride, and a bad stride is a
    one-line usage error."""
    out = tmp_path / "out"
    steps = ["--max_steps", 20, "--eval_steps", 20, "--save_steps", 20, "--learning_rate", 1e-3]
    bad = distill(tiny_teacher_dir, small_corpus / "train", tmp_path / "bad", "--student_encoder_stride", 0, *steps,
                  check=False)  # fmt: skip
    assert bad.returncode != 0 and "encoder_stride` must be 1" in bad.stderr and "Traceback" not in bad.stderr
    distill(tiny_teacher_dir, small_corpus / "train", out, "--student_encoder_stride", 2, *steps)
    results = json.loads((out / "distill_results.json").read_text())
    assert results["final_eval"]["eval/loss"] < results["initial_eval"]["eval/loss"]
    assert json.loads((out / "config.json").read_text())["encoder_stride"] == 2
    assert "32 wide, at 1/2 of the frame rate (`encoder_stride`" in (out / "README.md").read_text()
