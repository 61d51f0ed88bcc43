import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import (
    REPO_ROOT,
    TINY_RUN,
    TWO_CPU_RANKS,
    TWO_CPU_RANKS_ENV,
    TWO_PROCESS_GROUP,
    distill,
    run_fresh_python,
    run_script,
    tiny_student_config,
    tiny_teacher_config,
    write_parquet_stream,
)

from modeling_distilxlsr import DistilXLSRConfig, DistilXLSRForDistillation
from modeling_distilxlsr.distill.losses import distillation_loss
from modeling_distilxlsr.distill.teacher import TeacherTargets, init_student_from_teacher


def test_masked_loss_of_a_padded_batch_equals_the_loss_of_its_items():
    torch.manual_seed(0)
    student = DistilXLSRForDistillation(tiny_student_config()).eval()
    teacher_targets = TeacherTargets(
        __import__("transformers").Wav2Vec2Model(tiny_teacher_config()).eval(), (2, 4), normalize=True
    )
    waves = [torch.randn(16000), torch.randn(7000)]
    batch = torch.zeros(2, 16000)
    mask = torch.zeros(2, 16000, dtype=torch.long)
    for i, wave in enumerate(waves):
        batch[i, : len(wave)], mask[i, : len(wave)] = wave, 1
    with torch.no_grad():
        out = student(batch, attention_mask=mask)
        padded = distillation_loss(out.predictions, teacher_targets(batch, mask)[0], out.frame_attention_mask)
        alone = []
        for wave in waves:
            single = student(wave[None])
            alone.append(distillation_loss(single.predictions, teacher_targets(wave[None])[0]))
        # Unmasked, the padding frames would enter the mean: the bug this guards against.
        unmasked = distillation_loss(out.predictions, teacher_targets(batch, mask)[0])
    frames = torch.stack([a.num_frames for a in alone])
    expected_l1 = (torch.stack([a.l1_per_layer for a in alone]) * frames[:, None]).sum(0) / frames.sum()
    expected_cos = (torch.stack([a.cosine_per_layer for a in alone]) * frames[:, None]).sum(0) / frames.sum()
    torch.testing.assert_close(padded.l1_per_layer, expected_l1, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded.cosine_per_layer, expected_cos, atol=1e-5, rtol=1e-5)
    assert padded.num_frames == frames.sum()
    assert not torch.allclose(unmasked.l1_per_layer, expected_l1, atol=1e-3)


def test_loss_is_l1_plus_log_sigmoid_cosine_summed_over_layers():
    predictions = torch.randn(2, 3, 5, 8)
    targets = torch.randn(2, 3, 5, 8)
    result = distillation_loss(predictions, targets, cosine_weight=0.5)
    l1 = (predictions - targets).abs().mean((0, 2, 3))
    cos = torch.nn.functional.cosine_similarity(predictions, targets, dim=-1)
    expected = (l1 - 0.5 * torch.nn.functional.logsigmoid(cos).mean((0, 2))).sum()
    torch.testing.assert_close(result.loss, expected)
    assert distillation_loss(targets, targets).cosine_per_layer.allclose(torch.ones(3))


def test_truncated_teacher_gives_the_same_targets_as_the_full_one(tiny_teacher):
    import copy

    wave = torch.randn(2, 12000)
    mask = torch.ones(2, 12000, dtype=torch.long)
    mask[1, 7000:] = 0
    with torch.no_grad():
        full = tiny_teacher(wave, attention_mask=mask, output_hidden_states=True).hidden_states
        teacher_cnn = tiny_teacher.feature_extractor(wave)
    targets = TeacherTargets(copy.deepcopy(tiny_teacher), (1, 3), normalize=False)
    assert len(targets.teacher.encoder.layers) == 3  # layer 4 is never run
    out, cnn_features, logits = targets(wave, mask)
    assert logits is None  # a base teacher has no CTC head
    torch.testing.assert_close(out[:, 0], full[1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:, 1], full[3], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cnn_features, teacher_cnn, atol=1e-4, rtol=0)
    normalized = TeacherTargets(copy.deepcopy(tiny_teacher), (3,), normalize=True)(wave, mask)[0]
    expected = torch.nn.functional.layer_norm(full[3], (32,))
    torch.testing.assert_close(normalized[:, 0], expected, atol=1e-5, rtol=0)


def test_shared_cnn_features_give_the_same_predictions(tiny_teacher):
    student = DistilXLSRForDistillation(tiny_student_config()).eval()
    init_student_from_teacher(student, tiny_teacher)
    wave = torch.randn(2, 12000)
    teacher_cnn = TeacherTargets(tiny_teacher, (2, 4), normalize=True)(wave)[1]
    with torch.no_grad():
        shared = student(wave, cnn_features=teacher_cnn).predictions
        own = student(wave).predictions
        other = student(wave, cnn_features=torch.zeros_like(teacher_cnn)).predictions
    torch.testing.assert_close(shared, own)
    assert not torch.allclose(other, own)  # the given features are what the student uses, not its own CNN


@pytest.mark.slow
def test_a_shorter_positional_convolution_starts_as_the_teachers_central_taps(tiny_teacher):
    """`--student_pos_conv 6 2` of the tiny teacher's 16 taps in 2 groups: the student's convolution computes what
    the teacher's does with only the 6 taps around each frame (the others zeroed), so the cut is centred; another
    group count cannot be cut and is learnt from scratch."""
    cropped = DistilXLSRConfig.from_teacher_config(tiny_teacher.config, pos_conv=(6, 2))
    student = init_student_from_teacher(DistilXLSRForDistillation(cropped), tiny_teacher).distilxlsr
    teacher_conv = tiny_teacher.encoder.pos_conv_embed
    weight = teacher_conv.conv.weight.detach().clone()  # (hidden, hidden / groups, 16), weight norm applied
    kept = torch.zeros(weight.shape[-1], dtype=torch.bool)
    kept[8 - 3 : 8 + 3] = True
    weight[..., ~kept] = 0
    hidden = torch.randn(1, 50, cropped.hidden_size)
    x = hidden.transpose(1, 2)
    expected = torch.nn.functional.conv1d(x, weight, teacher_conv.conv.bias, padding=8, groups=2)[..., :-1]
    expected = torch.nn.functional.gelu(expected).transpose(1, 2)
    with torch.no_grad():
        assert torch.allclose(student.encoder.pos_conv_embed(hidden), expected, atol=1e-5)
    regrouped = DistilXLSRConfig.from_teacher_config(tiny_teacher.config, pos_conv=(6, 4))
    torch.manual_seed(1)
    fresh = init_student_from_teacher(DistilXLSRForDistillation(regrouped), tiny_teacher).distilxlsr
    assert fresh.encoder.pos_conv_embed.conv.weight.shape[1] == cropped.hidden_size // 4  # its own, not cut


def test_a_run_lowers_held_out_loss_and_raises_cosine(tiny_teacher_dir, small_corpus, tmp_path):
    out = tmp_path / "out"
    distill(
        tiny_teacher_dir,
        small_corpus / "train",
        out,
        "--max_steps",
        40,
        "--eval_steps",
        20,
        "--save_steps",
        20,
        "--logging_steps",
        5,
        "--eval_fraction",
        0.15,
        "--learning_rate",
        1e-3,
    )
    results = json.loads((out / "distill_results.json").read_text())
    initial, final = results["initial_eval"], results["final_eval"]
    assert final["eval/loss"] < initial["eval/loss"] - 0.05
    for layer in (2, 4):
        assert final[f"eval/cosine_layer_{layer}"] > initial[f"eval/cosine_layer_{layer}"] + 0.05
    assert results["steps"] == 40 and results["audio_hours"] > 0
    for name in (
        "model.safetensors",
        "config.json",
        "preprocessor_config.json",
        "modeling_distilxlsr.py",
        "configuration_distilxlsr.py",
        "training_args.json",
        "loss_curve.png",
        "cosine_per_layer.png",
    ):
        assert (out / name).exists(), name
    card = (out / "README.md").read_text()
    assert "2, 4" in card and f"{final['eval/loss']:.4f}" in card and "cosine" in card
    # A local teacher is named by its folder, never by this machine's path, and is no Hub base_model.
    assert os.path.basename(tiny_teacher_dir) in card and tiny_teacher_dir not in card
    # The usage snippet loads the folder by its own name, not by the absolute path of the machine that wrote it
    assert str(out) not in card and f'from_pretrained("{out.name}"' in card
    from huggingface_hub import ModelCard

    assert ModelCard.load(out / "README.md").data.base_model is None
    assert sorted(os.listdir(out / "checkpoints")) == ["step_20", "step_40"]


@pytest.mark.slow
def test_slim_student_learns_the_teacher_cnn_output(tiny_teacher_dir, small_corpus, tmp_path):
    out = tmp_path / "out"
    common = ["--student_cnn_width", 8, "--max_steps", 30, "--eval_steps", 30, "--save_steps", 30]
    result = distill(tiny_teacher_dir, small_corpus / "train", tmp_path / "o", *common, "--freeze_cnn", check=False)
    assert result.returncode != 0 and "choose one" in result.stderr
    distill(tiny_teacher_dir, small_corpus / "train", out, *common, "--eval_fraction", 0.15, "--learning_rate", 1e-3)
    results = json.loads((out / "distill_results.json").read_text())
    initial, final = results["initial_eval"], results["final_eval"]
    assert final["eval/loss"] < initial["eval/loss"] - 0.05
    assert final["eval/cosine_cnn"] > initial["eval/cosine_cnn"] + 0.05
    for layer in (2, 4):
        assert final[f"eval/cosine_layer_{layer}"] > initial[f"eval/cosine_layer_{layer}"]
    assert json.loads((out / "config.json").read_text())["conv_dim"] == [8] * 6 + [16]
    assert "slim, [8, 8, 8, 8, 8, 8, 16] channels" in (out / "README.md").read_text()


@pytest.mark.slow
def test_yaml_config_and_bad_setups_fail_before_training(tiny_teacher_dir, small_corpus, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        f"teacher: {tiny_teacher_dir}\ntrain_data: {small_corpus / 'train'}\noutput_dir: {tmp_path / 'o'}\n"
        "pred_layer_ids: [2, 9]\nreport_to: none\n"
    )
    result = run_script([sys.executable, "train_distill.py", str(config)], check=False)
    assert result.returncode != 0 and "only 4 layers" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = distill(tiny_teacher_dir, empty, tmp_path / "o", check=False)
    assert result.returncode != 0 and "No usable audio" in result.stderr
    assert "error: No usable audio" in result.stderr and "Traceback" not in result.stderr  # one line, no traceback
    result = distill(str(tmp_path / "no-such-teacher"), small_corpus / "train", tmp_path / "o", check=False)
    assert result.returncode != 0 and "Could not load the model" in result.stderr
    # impossible augmentation settings and a manifest with a column named twice: one line each
    result = distill(
        tiny_teacher_dir, small_corpus / "train", tmp_path / "o", "--augment", "--noise_kinds", "x", check=False
    )
    assert result.returncode != 0 and "error: --noise_kinds: unknown ['x']" in result.stderr
    assert "Traceback" not in result.stderr
    manifest = tmp_path / "twice.csv"
    manifest.write_text("path,path\na.wav,b.wav\n", encoding="utf-8")
    result = distill(tiny_teacher_dir, manifest, tmp_path / "o", check=False)
    assert result.returncode != 0 and "error: " in result.stderr and "appear more than once" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "o" / "checkpoints").exists()


@pytest.mark.slow
def test_bad_files_are_skipped_and_counted(tiny_teacher_dir, small_corpus, tmp_path):
    data = tmp_path / "messy"
    data.mkdir()
    for name in sorted(os.listdir(small_corpus / "dev"))[:6]:
        if name.endswith(".flac"):
            (data / name).write_bytes((small_corpus / "dev" / name).read_bytes())
    (data / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt garbage" * 10)
    (data / "empty.flac").write_bytes(b"")
    sf.write(data / "tiny.wav", np.random.randn(80).astype("float32") * 0.1, 16000)  # 5 ms
    t = np.arange(8000 * 2) / 8000
    stereo = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)], axis=1) * 0.3
    sf.write(data / "stereo_8k.wav", stereo.astype("float32"), 8000)
    out = tmp_path / "out"
    result = distill(
        tiny_teacher_dir, data, out, "--max_steps", 4, "--eval_steps", 4, "--save_steps", 4, "--eval_fraction", 0.3
    )
    assert "skipped 3 of 10 files: 1 empty (0 bytes), 1 too short, 1 unreadable" in result.stderr
    assert "skipped 3 of 10 files" in json.loads((out / "distill_results.json").read_text())["skipped"]


@TWO_PROCESS_GROUP
@pytest.mark.slow
def test_two_real_ddp_ranks_write_one_output_that_loads_in_a_fresh_process(tiny_teacher_dir, small_corpus, tmp_path):
    out = tmp_path / "out"
    noise_dir = tmp_path / "noise"  # robust distillation on both ranks, with a bad noise file counted
    noise_dir.mkdir()
    sf.write(noise_dir / "fan.flac", np.random.default_rng(0).standard_normal(8000).astype("float32") * 0.1, 8000)
    (noise_dir / "broken.wav").write_bytes(b"RIFF0000WAVE")
    result = distill(
        tiny_teacher_dir,
        small_corpus / "train",
        out,
        "--max_steps",
        6,
        "--eval_steps",
        3,
        "--save_steps",
        3,
        "--augment",
        "--noise_dir",
        noise_dir,
        launcher=TWO_CPU_RANKS,
        env_extra=TWO_CPU_RANKS_ENV,
    )
    assert "MULTI_CPU, 2 process(es)" in result.stderr
    assert (
        "augment (heard by the student)" in result.stderr
        and "skipped 1 of 2 files: 1 noise unreadable" in result.stderr
    )
    results = json.loads((out / "distill_results.json").read_text())
    assert results["num_processes"] == 2 and results["steps"] == 6
    assert result.stderr.count("done: 6 steps") == 1  # the output is written once, by the main process
    # The LR follows the schedule of max_steps optimizer steps whatever the number of ranks (a prepared scheduler is
    # stepped once per rank: laid out naively, 2 ranks would reach LR 0 at step 3): warm-up 1 step, then linear.
    _, _, lr_at_3 = _optimizer_and_scheduler(out / "checkpoints" / "step_3")
    assert lr_at_3 == [pytest.approx(2e-4 * 3 / 5)] * 2
    run_fresh_python(
        f"""
        import torch
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(out)!r}, trust_remote_code=True).eval()
        assert type(model).__name__ == "DistilXLSRModel"
        print(model(torch.randn(1, 16000)).last_hidden_state.shape)
        """,
        cwd=tmp_path,
    )


def _optimizer_and_scheduler(checkpoint):
    optimizer = torch.load(os.path.join(checkpoint, "optimizer.bin"), weights_only=False)
    scheduler = torch.load(os.path.join(checkpoint, "scheduler.bin"), weights_only=False)
    steps = {float(s["step"]) for s in optimizer["state"].values()}
    return steps, scheduler["last_epoch"], scheduler["_last_lr"]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_step_optimizer_state_and_lr(tiny_teacher_dir, small_corpus, tmp_path):
    # with --augment: speed perturbation changes clip lengths, so equal audio hours mean the same corruptions
    common = ["--max_steps", 24, "--eval_steps", 100, "--save_steps", 8, "--logging_steps", 4, "--seed", 3, "--augment"]
    straight = tmp_path / "straight"
    distill(tiny_teacher_dir, small_corpus / "train", straight, *common)

    killed = tmp_path / "killed"
    args = [
        sys.executable,
        "train_distill.py",
        "--teacher",
        tiny_teacher_dir,
        "--train_data",
        str(small_corpus / "train"),
        "--output_dir",
        str(killed),
        *TINY_RUN,
        *map(str, common),
        "--max_audio_samples",
        "32000",
    ]
    proc = subprocess.Popen(
        args,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "step_8").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (killed / "checkpoints" / "step_8").exists() and not (killed / "distill_results.json").exists()

    distill(tiny_teacher_dir, small_corpus / "train", killed, *common, "--resume_from_checkpoint", "latest")
    steps_a, epoch_a, lr_a = _optimizer_and_scheduler(straight / "checkpoints" / "step_24")
    steps_b, epoch_b, lr_b = _optimizer_and_scheduler(killed / "checkpoints" / "step_24")
    assert steps_a == steps_b == {24.0}
    assert epoch_a == epoch_b == 24 and lr_a == lr_b
    a = json.loads((straight / "distill_results.json").read_text())
    b = json.loads((killed / "distill_results.json").read_text())
    assert a["steps"] == b["steps"] == 24
    assert b["audio_hours"] == pytest.approx(a["audio_hours"], rel=1e-6)  # same data position after resume


@TWO_PROCESS_GROUP
@pytest.mark.slow
def test_streaming_from_a_sharded_dataset_on_two_ranks_and_resume(tiny_teacher_dir, small_corpus, tmp_path):
    clips = [(p.name, p.read_bytes()) for p in sorted((small_corpus / "train").glob("*.flac"))[:40]]
    clips[7] = ("corrupt.flac", b"fLaC" + b"\x00" * 50)
    stream = write_parquet_stream(tmp_path / "stream", clips)
    out = tmp_path / "out"
    common = ["--streaming", "--streaming_eval_examples", 6, "--save_steps", 4, "--eval_steps", 4, "--num_workers", 2]
    common += ["--augment", "--speed_prob", 1.0]  # every clip's length changes: equal audio hours = same corruptions
    launch = dict(launcher=TWO_CPU_RANKS, env_extra=TWO_CPU_RANKS_ENV)
    result = distill(tiny_teacher_dir, stream, out, *common, "--max_steps", 8, **launch)
    assert "MULTI_CPU, 2 process(es)" in result.stderr and "streaming" in result.stderr
    first = json.loads((out / "distill_results.json").read_text())
    assert first["steps"] == 8 and first["num_processes"] == 2
    # resume the same run from its step-4 checkpoint, as after a kill there
    step_4 = out / "checkpoints" / "step_4"
    result = distill(
        tiny_teacher_dir, stream, out, *common, "--max_steps", 8, "--resume_from_checkpoint", step_4, **launch
    )
    assert "at step 4" in result.stderr
    results = json.loads((out / "distill_results.json").read_text())
    assert results["steps"] == 8 and results["audio_hours"] == pytest.approx(first["audio_hours"], rel=1e-6)
    # 2 ranks x 8 batches of 4 pass over the 34 training rows more than once; the corrupt row is counted once
    # counted over the whole run, the part before the resume included: 6 held out + 8 steps x 2 ranks x 4
    assert results["skipped"] == "skipped 1 of 70 examples read: 1 unreadable"
    assert results["final_eval"]["eval/loss"] < results["initial_eval"]["eval/loss"]


def test_a_config_file_followed_by_flags_that_override_it():
    from modeling_distilxlsr.audio.augment import AugmentArguments
    from modeling_distilxlsr.training.arguments import RunArguments, parse_args
    from train_distill import DISTILL_DEFAULTS, DistillArguments

    groups = (RunArguments, AugmentArguments, DistillArguments)
    smoke = os.path.join(REPO_ROOT, "configs", "smoke.yaml")
    run, _, distill = parse_args(groups, DISTILL_DEFAULTS, [smoke, "--output_dir", "out/other", "--max_steps", "7"])
    assert (run.output_dir, run.max_steps) == ("out/other", 7)
    assert distill.teacher_random_init and list(distill.pred_layer_ids) == [2, 4] and run.report_to == "none"
    assert parse_args(groups, DISTILL_DEFAULTS, [smoke])[0].output_dir == "out/smoke"
    with pytest.raises(SystemExit):  # an unknown flag is still an error
        parse_args(groups, DISTILL_DEFAULTS, [smoke, "--no_such_flag", "1"])


def test_default_target_layers_follow_the_teachers_depth_and_a_wrong_choice_is_one_clear_error(tiny_teacher_dir):
    """No config, no --pred_layer_ids: DistilHuBERT's thirds of whatever teacher is given (2/4/6 of the shipped
    6-layer teacher, where a fixed 8/16/24 ended in a ValueError traceback); a layer the teacher lacks is an
    `OptionsError`, which the recipe prints as one `error:` line."""
    from modeling_distilxlsr.audio.augment import AugmentArguments
    from modeling_distilxlsr.distill.build import build_teacher_and_student
    from modeling_distilxlsr.errors import OptionsError
    from modeling_distilxlsr.training.arguments import RunArguments, parse_args
    from train_distill import DISTILL_DEFAULTS, DistillArguments

    groups = (RunArguments, AugmentArguments, DistillArguments)
    _, _, distill = parse_args(groups, DISTILL_DEFAULTS, ["--train_data", "DATA"])
    assert distill.pred_layer_ids is None and distill.teacher is None
    targets, student, *_ = build_teacher_and_student(distill, "cpu")  # the shipped teacher
    assert distill.pred_layer_ids == [2, 4, 6] and list(student.config.pred_layer_ids) == [2, 4, 6]
    assert targets.pred_layer_ids == [2, 4, 6]
    _, _, distill = parse_args(groups, DISTILL_DEFAULTS, ["--teacher", tiny_teacher_dir, "--pred_layer_ids", "2", "9"])
    with pytest.raises(OptionsError, match=r"asks for teacher layer\(s\) \[9\].*only 4 layers"):
        build_teacher_and_student(distill, "cpu")
