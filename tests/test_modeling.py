import json
import logging

import pytest
import torch
import transformers
from conftest import run_fresh_python, tiny_student_config, tiny_teacher_config
from safetensors.torch import load_file, save_file
from transformers import HubertConfig, Wav2Vec2Config, Wav2Vec2Model

from modeling_distilxlsr import DistilXLSRConfig, DistilXLSRForCTC, DistilXLSRForDistillation, DistilXLSRModel
from modeling_distilxlsr.distill.teacher import init_student_from_teacher
from modeling_distilxlsr.export.wav2vec2 import export_as_wav2vec2
from modeling_distilxlsr.models.folder import load_config, save_for_hub


def test_default_config_is_distilhubert_recipe_on_xlsr53():
    config = DistilXLSRConfig()
    assert config.model_type == "distilxlsr"
    assert tuple(config.pred_layer_ids) == (8, 16, 24)
    assert (config.hidden_size, config.num_attention_heads, config.intermediate_size) == (1024, 16, 4096)
    assert config.num_hidden_layers == 2 and config.layerdrop == 0.0
    assert tuple(config.conv_kernel) == (10, 3, 3, 3, 3, 2, 2) and tuple(config.conv_stride) == (5, 2, 2, 2, 2, 2, 2)
    assert config.conv_bias and config.feat_extract_norm == "layer" and config.do_stable_layer_norm
    assert config.receptive_field == 400 and config.inputs_to_logits_ratio == 320
    assert set(config.auto_map) == {
        "AutoConfig",
        "AutoModel",
        "AutoModelForCTC",
        "AutoModelForPreTraining",
        "AutoModelForAudioClassification",
    }


def test_from_teacher_config_matches_any_teacher_and_refuses_too_deep_layers():
    hubert_base = DistilXLSRConfig.from_teacher_config(HubertConfig())
    assert hubert_base.hidden_size == 768 and hubert_base.teacher_hidden_size == 768
    assert tuple(hubert_base.pred_layer_ids) == (4, 8, 12)
    assert hubert_base.feat_extract_norm == "group" and not hubert_base.do_stable_layer_norm
    xlsr_300m = Wav2Vec2Config(**json.load(open("configs/xlsr53_config.json")) | {"model_type": None})
    student = DistilXLSRConfig.from_teacher_config(xlsr_300m, num_hidden_layers=3, pred_layer_ids=[6, 12, 24])
    assert student.num_hidden_layers == 3 and tuple(student.pred_layer_ids) == (6, 12, 24)
    with pytest.raises(ValueError, match=r"layer\(s\) \[13\].*only 12 layers"):
        DistilXLSRConfig.from_teacher_config(HubertConfig(), pred_layer_ids=(4, 13))


def test_forward_shapes_hidden_states_and_heads():
    config = tiny_student_config()
    model = DistilXLSRForDistillation(config).eval()
    out = model(torch.randn(3, 16000), output_hidden_states=True)
    frames = 49  # 1 s at 16 kHz with a 320x stride and a 400-sample receptive field
    assert out.predictions.shape == (3, 2, frames, config.teacher_hidden_size)
    assert out.last_hidden_state.shape == (3, frames, config.hidden_size)
    assert len(out.hidden_states) == config.num_hidden_layers + 1
    assert model(torch.randn(2, 16000), return_dict=False)[0].shape == (2, 2, frames, config.teacher_hidden_size)


def test_hidden_states_and_attentions_are_wav2vec2s(tmp_path):
    """The hook-based recording (public torch hooks, not transformers' private output capturing) gives what the
    same weights give as a transformers Wav2Vec2Model: per-layer hidden states and attention weights."""
    from transformers import Wav2Vec2Model

    torch.manual_seed(0)
    model = DistilXLSRModel(tiny_student_config(attn_implementation="eager")).eval()
    save_for_hub(model, tmp_path / "ours")
    export_as_wav2vec2(str(tmp_path / "ours"), str(tmp_path / "plain"))
    plain = Wav2Vec2Model.from_pretrained(tmp_path / "plain", attn_implementation="eager").eval()
    wave, mask = torch.randn(2, 16000), torch.ones(2, 16000, dtype=torch.long)
    mask[1, 9000:] = 0
    ours = model(wave, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    theirs = plain(wave, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    assert len(ours.hidden_states) == len(theirs.hidden_states) == model.config.num_hidden_layers + 1
    assert len(ours.attentions) == model.config.num_hidden_layers
    for a, b in zip(ours.hidden_states + ours.attentions, theirs.hidden_states + theirs.attentions, strict=True):
        torch.testing.assert_close(a, b)
    assert model(wave, output_hidden_states=False).hidden_states is None
    assert not model.encoder.layers[0]._forward_hooks and not model.encoder.layers[0]._forward_pre_hooks


@pytest.mark.parametrize("feature_frontend", ["cnn", "log_mel"])
def test_padded_batch_gives_the_same_frames_as_each_utterance_alone(feature_frontend):
    torch.manual_seed(0)
    model = DistilXLSRModel(tiny_student_config(feature_frontend=feature_frontend)).eval()
    lengths = [16000, 9000, 4321]
    batch = torch.zeros(3, 16000)
    mask = torch.zeros(3, 16000, dtype=torch.long)
    waves = [torch.randn(n) for n in lengths]
    for i, wave in enumerate(waves):
        batch[i, : len(wave)] = wave
        mask[i, : len(wave)] = 1
    padded = model(batch, attention_mask=mask, output_hidden_states=True)
    for i, wave in enumerate(waves):
        alone = model(wave[None], output_hidden_states=True)
        frames = alone.last_hidden_state.shape[1]
        assert padded.frame_attention_mask[i].sum() == frames
        torch.testing.assert_close(padded.last_hidden_state[i, :frames], alone.last_hidden_state[0], atol=1e-4, rtol=0)
        for h_pad, h_alone in zip(padded.hidden_states, alone.hidden_states, strict=True):
            torch.testing.assert_close(h_pad[i, :frames], h_alone[0], atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("input_values", "message"),
    [
        (torch.zeros(2, 16000, dtype=torch.int16), "float waveform"),
        (torch.zeros(2, 2, 16000), "multi-channel"),
        (torch.zeros(1, 1, 2, 16000), "4 dimensions"),
        (torch.zeros(2, 399), "Audio too short: 399 samples.*at least 400"),
        ([0.0] * 16000, "torch.Tensor"),
    ],
)
def test_bad_input_gives_a_clear_error(input_values, message):
    model = DistilXLSRModel(tiny_student_config()).eval()
    with pytest.raises(ValueError, match=message):
        model(input_values)


def test_short_utterance_inside_a_padded_batch_is_refused():
    model = DistilXLSRModel(tiny_student_config()).eval()
    mask = torch.ones(2, 8000, dtype=torch.long)
    mask[1, 300:] = 0
    with pytest.raises(ValueError, match="300 samples"):
        model(torch.randn(2, 8000), attention_mask=mask)


def test_one_dimensional_input_is_one_utterance_and_mono_channel_axis_is_squeezed():
    model = DistilXLSRModel(tiny_student_config()).eval()
    wave = torch.randn(8000)
    expected = model(wave[None]).last_hidden_state
    torch.testing.assert_close(model(wave).last_hidden_state, expected)
    torch.testing.assert_close(model(wave[None, None]).last_hidden_state, expected)


def test_ctc_model_loss_freeze_and_spec_augment():
    torch.manual_seed(0)
    config = tiny_student_config(
        vocab_size=12, pad_token_id=0, mask_time_prob=0.5, mask_time_length=2, final_dropout=0.3
    )
    model = DistilXLSRForCTC(config)
    assert model.config.inputs_to_logits_ratio == 320
    labels = torch.tensor([[3, 4, 5, 6], [7, 8, -100, -100]])
    waves = torch.randn(2, 16000)
    model.eval()
    out = model(waves, labels=labels)
    assert out.logits.shape == (2, 49, 12) and torch.isfinite(out.loss)
    # Infeasible clip (more labels than frames): zero_infinity keeps the loss finite instead of inf/NaN.
    long_labels = torch.randint(1, 12, (2, 200))
    assert torch.isfinite(model(waves, labels=long_labels).loss)
    with pytest.raises(ValueError, match="vocab_size"):
        model(waves, labels=torch.tensor([[12]]))
    # SpecAugment and final dropout only in training: in eval the model equals one built without them.
    without = DistilXLSRForCTC(tiny_student_config(vocab_size=12, pad_token_id=0)).eval()
    without.load_state_dict(model.state_dict())
    torch.testing.assert_close(model(waves).logits, without(waves).logits)
    model.train()
    assert not torch.allclose(model(waves).logits, without(waves).logits)
    masked = model.distilxlsr._mask_hidden_states(torch.zeros(2, 49, config.hidden_size))
    assert (masked != 0).any()
    model.freeze_feature_encoder()
    assert not any(p.requires_grad for p in model.distilxlsr.feature_extractor.parameters())
    assert all(p.requires_grad for p in model.lm_head.parameters())


def test_ctc_loss_is_float32_under_bf16_autocast():
    model = DistilXLSRForCTC(tiny_student_config(vocab_size=12)).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(2, 16000), labels=torch.tensor([[3, 4, 5], [6, 7, 8]]))
    assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)


def test_distillation_checkpoint_loads_into_backbone_and_ctc_with_only_expected_keys(tmp_path):
    torch.manual_seed(0)
    distil = DistilXLSRForDistillation(tiny_student_config(vocab_size=12)).eval()
    distil.save_pretrained(tmp_path)
    backbone, info = DistilXLSRModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    ctc, info = DistilXLSRForCTC.from_pretrained(tmp_path, output_loading_info=True)
    assert info["missing_keys"] == {"lm_head.weight", "lm_head.bias"} and not info["unexpected_keys"]
    wave = torch.randn(1, 8000)
    expected = distil(wave).last_hidden_state
    torch.testing.assert_close(backbone.eval()(wave).last_hidden_state, expected)
    torch.testing.assert_close(ctc.eval().distilxlsr(wave).last_hidden_state, expected)


def test_checkpoint_with_missing_backbone_keys_warns(tmp_path, caplog):
    DistilXLSRForCTC(tiny_student_config(vocab_size=12)).save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    dropped = "distilxlsr.encoder.layers.1.attention.q_proj.weight"
    del weights[dropped]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    transformers_logger = logging.getLogger("transformers")
    transformers_logger.addHandler(caplog.handler)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_warning()  # what this test relies on, whatever TRANSFORMERS_VERBOSITY says
    try:
        _, info = DistilXLSRForCTC.from_pretrained(tmp_path, output_loading_info=True)
    finally:
        transformers.logging.set_verbosity(verbosity)
        transformers_logger.removeHandler(caplog.handler)
    assert info["missing_keys"] == {dropped}
    assert dropped in caplog.text and "MISSING" in caplog.text


def test_init_student_copies_teacher_and_hidden_states_match(tiny_teacher):
    student = DistilXLSRForDistillation(tiny_student_config()).eval()
    init_student_from_teacher(student, tiny_teacher)
    wave = torch.randn(2, 12000)
    with torch.no_grad():
        teacher_states = tiny_teacher(wave, output_hidden_states=True).hidden_states
        student_states = student(wave, output_hidden_states=True).hidden_states
    for i in range(3):
        torch.testing.assert_close(student_states[i], teacher_states[i], atol=1e-5, rtol=0)


def test_init_student_with_layer_map(tiny_teacher):
    student = DistilXLSRModel(tiny_student_config()).eval()
    init_student_from_teacher(student, tiny_teacher, layer_map={0: 0, 1: 3})
    torch.testing.assert_close(
        student.encoder.layers[1].feed_forward.output_dense.weight,
        tiny_teacher.encoder.layers[3].feed_forward.output_dense.weight,
    )
    assert not torch.equal(
        student.encoder.layers[1].feed_forward.output_dense.weight,
        tiny_teacher.encoder.layers[1].feed_forward.output_dense.weight,
    )
    with pytest.raises(ValueError, match="outside 0..3"):
        init_student_from_teacher(student, tiny_teacher, layer_map={0: 0, 1: 4})


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"hidden_size": 48}, "hidden_size"),
        ({"conv_bias": False}, "conv_bias"),
        ({"feat_extract_norm": "group"}, "feat_extract_norm"),
    ],
)
def test_incompatible_teacher_is_refused_naming_the_difference(overrides, field):
    from transformers import Wav2Vec2Model

    teacher = Wav2Vec2Model(tiny_teacher_config(**overrides))
    student = DistilXLSRModel(tiny_student_config())
    with pytest.raises(ValueError, match=f"{field}: student"):
        init_student_from_teacher(student, teacher)


def test_slim_student_starts_from_a_channel_subset_of_the_teacher_cnn(tiny_teacher):
    config = tiny_student_config(cnn_width=8)
    assert list(config.conv_dim) == [8] * 6 + [16]  # the last layer keeps the teacher's width
    student = DistilXLSRForDistillation(config).eval()
    init_student_from_teacher(student, tiny_teacher)
    student_layers = student.distilxlsr.feature_extractor.conv_layers
    teacher_layers = tiny_teacher.feature_extractor.conv_layers
    kept_in = None
    for index, (ours, theirs) in enumerate(zip(student_layers, teacher_layers, strict=True)):
        # every output channel of ours is one of the teacher's, with its own bias and LayerNorm gain
        weight = theirs.conv.weight if kept_in is None else theirs.conv.weight[:, kept_in]
        matches = (ours.conv.weight[:, None] == weight[None]).flatten(2).all(-1)  # (ours, theirs)
        assert matches.sum(1).tolist() == [1] * ours.conv.out_channels, index
        kept = matches.float().argmax(1)
        torch.testing.assert_close(ours.conv.bias, theirs.conv.bias[kept])
        torch.testing.assert_close(ours.layer_norm.weight, theirs.layer_norm.weight[kept])
        kept_in = kept
    assert kept_in.tolist() == list(range(16))
    # everything above the CNN is the teacher's, as for the default student
    torch.testing.assert_close(
        student.distilxlsr.feature_projection.projection.weight, tiny_teacher.feature_projection.projection.weight
    )
    wave = torch.randn(2, 12000)
    with torch.no_grad():
        outputs = student(wave)
        teacher_cnn = tiny_teacher.feature_extractor(wave)
    assert outputs.cnn_features.shape == teacher_cnn.shape
    torch.testing.assert_close(outputs.cnn_features, student.distilxlsr.feature_extractor(wave), atol=1e-4, rtol=0)


def test_slim_cnn_needs_the_teacher_last_width(tiny_teacher):
    student = DistilXLSRModel(tiny_student_config(conv_dim=[8] * 7))
    with pytest.raises(ValueError, match="conv_dim: student"):
        init_student_from_teacher(student, tiny_teacher)
    with pytest.raises(ValueError, match="cnn_width"):
        tiny_student_config(cnn_width=0)


def test_real_xlsr53_architecture_initialises_the_default_student_exactly(tmp_path):
    """XLSR-53's whole shape for the counts and the default config; its first 3 layers, at full width, for the
    weights: the init rule copies layer by layer, so 3 of 24 layers check the same code at an eighth of the cost."""
    from modeling_distilxlsr.distill.teacher import load_teacher

    xlsr53 = load_config("configs/xlsr53_config.json")
    with torch.device("meta"):  # the parameter count without allocating 315M weights
        assert sum(p.numel() for p in Wav2Vec2Model(xlsr53).parameters()) == pytest.approx(315.4e6, rel=0.01)
    student_config = DistilXLSRConfig.from_teacher_config(xlsr53, teacher_name_or_path="configs/xlsr53_config.json")
    assert student_config.teacher_name_or_path == "configs/xlsr53_config.json"
    student_config.teacher_name_or_path = None
    assert student_config.to_diff_dict() == DistilXLSRConfig().to_diff_dict()  # the default student *is* XLSR-53's

    three_layers = tmp_path / "xlsr53_3_layers.json"
    three_layers.write_text(json.dumps({**json.load(open("configs/xlsr53_config.json")), "num_hidden_layers": 3}))
    torch.manual_seed(0)
    teacher = load_teacher(str(three_layers), random_init=True)
    assert teacher.config.hidden_size == 1024 and len(teacher.encoder.layers) == 3
    student = DistilXLSRForDistillation(DistilXLSRConfig.from_teacher_config(teacher.config)).eval()
    init_student_from_teacher(student, teacher)
    wave = torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))  # not drawn after init's draws
    with torch.no_grad():
        teacher_states = teacher(wave, output_hidden_states=True).hidden_states
        student_states = student(wave, output_hidden_states=True).hidden_states
    assert len(teacher_states) == 4
    for i in range(3):
        # The same weights and the same maths, summed in another order (the time-major CNN's matmuls against
        # Conv1d): float32 rounding, which differs between CPUs' kernels (1.1e-5 on one of 50,176 elements on an
        # AVX2 EPYC). A relative bound of 1e-5 of the layer's own scale holds on every CPU; a wrong weight moves
        # whole rows by far more.
        scale = teacher_states[i].abs().max().item()
        torch.testing.assert_close(student_states[i], teacher_states[i], atol=1e-5 * max(scale, 1.0), rtol=1e-5)


@pytest.mark.slow
def test_save_then_load_with_remote_code_in_a_fresh_process(tmp_path):
    torch.manual_seed(0)
    model_dir = tmp_path / "model"
    model = DistilXLSRForDistillation(tiny_student_config(vocab_size=12)).eval()
    save_for_hub(model, model_dir)
    files = {p.name for p in model_dir.iterdir()}
    assert {"model.safetensors", "config.json", "preprocessor_config.json"} <= files
    assert {"configuration_distilxlsr.py", "modeling_distilxlsr.py", "modeling_distilxlsr_classification.py"} <= files
    config = json.loads((model_dir / "config.json").read_text())
    assert set(config["auto_map"]) == {
        "AutoConfig",
        "AutoModel",
        "AutoModelForCTC",
        "AutoModelForPreTraining",
        "AutoModelForAudioClassification",
    }
    preprocessor = json.loads((model_dir / "preprocessor_config.json").read_text())
    assert (
        preprocessor["sampling_rate"] == 16000
        and preprocessor["do_normalize"]
        and preprocessor["return_attention_mask"]
    )

    torch.manual_seed(1)
    wave = torch.randn(1, 12000)
    torch.save(wave, tmp_path / "wave.pt")
    expected = model(wave).last_hidden_state
    run_fresh_python(
        f"""
        import sys, torch
        from transformers import AutoModel, AutoModelForCTC, AutoModelForPreTraining
        wave = torch.load({str(tmp_path / "wave.pt")!r})
        backbone = AutoModel.from_pretrained({str(model_dir)!r}, trust_remote_code=True).eval()
        ctc = AutoModelForCTC.from_pretrained({str(model_dir)!r}, trust_remote_code=True).eval()
        distil = AutoModelForPreTraining.from_pretrained({str(model_dir)!r}, trust_remote_code=True).eval()
        assert type(backbone).__name__ == "DistilXLSRModel", type(backbone)
        assert type(ctc).__name__ == "DistilXLSRForCTC", type(ctc)
        assert sys.modules.get("modeling_distilxlsr") is None  # loaded from the folder's code, not our package
        with torch.no_grad():
            torch.save({{"backbone": backbone(wave).last_hidden_state, "ctc": ctc.distilxlsr(wave).last_hidden_state,
                        "distil": distil(wave).predictions}}, {str(tmp_path / "out.pt")!r})
        """,
        cwd=tmp_path,
    )
    outputs = torch.load(tmp_path / "out.pt")
    torch.testing.assert_close(outputs["backbone"], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(outputs["ctc"], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(outputs["distil"], model(wave).predictions, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("model_class", "cnn_width"), [(DistilXLSRForDistillation, None), (DistilXLSRForCTC, None), (DistilXLSRForCTC, 8)]
)
def test_export_as_wav2vec2_loads_without_remote_code(tmp_path, model_class, cnn_width):
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Model

    torch.manual_seed(0)
    model = model_class(tiny_student_config(vocab_size=12, cnn_width=cnn_width)).eval()
    save_for_hub(model, tmp_path / "ours")
    export_as_wav2vec2(str(tmp_path / "ours"), str(tmp_path / "plain"))
    config = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert config["model_type"] == "wav2vec2" and "auto_map" not in config
    assert not list((tmp_path / "plain").glob("*.py"))
    wave = torch.randn(2, 12000)
    if model_class is DistilXLSRForCTC:
        plain = Wav2Vec2ForCTC.from_pretrained(tmp_path / "plain").eval()
        torch.testing.assert_close(plain(wave).logits, model(wave).logits, atol=1e-5, rtol=0)
        # The loss (plain torch ctc_loss in ours) is Wav2Vec2ForCTC's, with a padded batch and padded labels.
        mask = torch.ones_like(wave, dtype=torch.long)
        mask[1, 8000:] = 0
        labels = torch.tensor([[3, 4, 5, 6], [7, 8, -100, -100]])
        expected = plain(wave, attention_mask=mask, labels=labels).loss
        torch.testing.assert_close(model(wave, attention_mask=mask, labels=labels).loss, expected)
    else:
        plain = Wav2Vec2Model.from_pretrained(tmp_path / "plain").eval()
        expected = model(wave).last_hidden_state
        torch.testing.assert_close(plain(wave).last_hidden_state, expected, atol=1e-5, rtol=0)
    assert (tmp_path / "plain" / "preprocessor_config.json").exists()


def test_export_command_line(tmp_path):
    import subprocess
    import sys

    save_for_hub(DistilXLSRModel(tiny_student_config()), tmp_path / "ours")
    subprocess.run(
        [sys.executable, "-m", "modeling_distilxlsr.export", str(tmp_path / "ours"), str(tmp_path / "plain")],
        check=True,
        capture_output=True,
    )
    assert (tmp_path / "plain" / "model.safetensors").exists()


@pytest.mark.parametrize("seconds", [0.025, 0.0251, 1.0, 3.3377])
def test_fast_cnn_path_matches_transformers_feature_encoder(seconds):
    from transformers import Wav2Vec2Config
    from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2FeatureEncoder

    from modeling_distilxlsr.models.modeling_distilxlsr_parts import time_major_conv_features

    torch.manual_seed(0)
    config = Wav2Vec2Config(conv_bias=True, feat_extract_norm="layer", conv_dim=(64,) * 7)
    encoder = Wav2Vec2FeatureEncoder(config).eval()
    for layer in encoder.conv_layers:  # non-trivial LayerNorm and bias values
        torch.nn.init.normal_(layer.layer_norm.weight, 1.0, 0.2)
        torch.nn.init.normal_(layer.layer_norm.bias, 0.0, 0.2)
    waves = torch.randn(3, int(16000 * seconds))
    with torch.no_grad():
        expected = encoder(waves)
        fast = time_major_conv_features(encoder, waves)
    assert fast.shape == expected.shape
    torch.testing.assert_close(fast, expected, atol=1e-4, rtol=1e-4)


def test_fast_cnn_path_gives_the_same_model_outputs_and_gradients():
    torch.manual_seed(0)
    model = DistilXLSRForCTC(tiny_student_config(vocab_size=12)).train()
    model.config.mask_time_prob = 0.0
    wave = torch.randn(2, 9000)
    labels = torch.tensor([[3, 4, 5], [6, 7, -100]])
    grads = {}
    for fast in (True, False):
        model.config.fast_feature_encoder = fast
        model.zero_grad()
        torch.manual_seed(1)  # same dropout masks
        model(wave, labels=labels).loss.backward()
        grads[fast] = model.distilxlsr.feature_extractor.conv_layers[0].conv.weight.grad.clone()
    torch.testing.assert_close(grads[True], grads[False], atol=1e-5, rtol=1e-4)


def test_teacher_targets_use_the_fast_cnn_with_unchanged_results(tiny_teacher):
    import copy

    from modeling_distilxlsr.distill.teacher import TeacherTargets

    wave = torch.randn(2, 12000)
    with torch.no_grad():
        reference = tiny_teacher(wave, output_hidden_states=True).hidden_states[2]
    targets = TeacherTargets(copy.deepcopy(tiny_teacher), (2,), normalize=False)

    def transformers_cnn(*args, **kwargs):
        raise AssertionError("TeacherTargets ran transformers' channel-first CNN, not the time-major fast path")

    targets.teacher.feature_extractor.forward = transformers_cnn
    torch.testing.assert_close(targets(wave)[0][:, 0], reference, atol=1e-4, rtol=1e-4)
