"""Output distillation: the KL of CTC posteriors, pseudo-labels and their cache, a CTC teacher distilled into an ASR
folder that the pipeline loads in a fresh process, semi-supervised fine-tuning, and the README's main job."""

import json
import os
import shlex
import shutil

import numpy as np
import pytest
import torch
from conftest import distill, run_fresh_python, run_script
from readme_blocks import readme_block

from modeling_distilxlsr.audio.sources import SkipCounter, Utterance
from modeling_distilxlsr.distill.losses import logit_distillation_loss
from modeling_distilxlsr.distill.pseudo_labels import PseudoLabel, PseudoLabelCache, greedy_confidence, pseudo_labelled
from modeling_distilxlsr.distill.teacher import VocabularyMismatchError, check_same_vocabulary, vocabulary_differences


def test_the_kl_is_zero_when_student_and_teacher_agree_and_grows_as_they_differ():
    torch.manual_seed(0)
    teacher = torch.randn(2, 30, 12)
    assert logit_distillation_loss(teacher.clone(), teacher).item() == pytest.approx(0.0, abs=1e-6)
    noise = torch.randn_like(teacher)
    losses = [logit_distillation_loss(teacher + scale * noise, teacher).item() for scale in (0.1, 0.5, 1.0, 3.0)]
    assert losses[0] > 0 and losses == sorted(losses)
    # the softmax of logits shifted by a constant is the same distribution: no loss
    assert logit_distillation_loss(teacher + 5.0, teacher).item() == pytest.approx(0.0, abs=1e-5)


def test_padded_frames_never_enter_the_kl_so_a_padded_batch_is_its_items_together():
    torch.manual_seed(0)
    lengths = (30, 18)
    teachers = [torch.randn(n, 12) for n in lengths]
    students = [t + torch.randn_like(t) for t in teachers]
    teacher_batch = torch.zeros(2, 30, 12)
    student_batch = torch.zeros(2, 30, 12)
    mask = torch.zeros(2, 30, dtype=torch.bool)
    for row, (t, s) in enumerate(zip(teachers, students, strict=True)):
        teacher_batch[row, : len(t)], student_batch[row, : len(s)] = t, s
        mask[row, : len(t)] = True
    # what a CTC model puts on padded frames: every label but blank at the lowest float (infinite KL if counted)
    student_batch[1, 18:] = torch.finfo(torch.float32).min
    student_batch[1, 18:, 0] = 0.0
    padded = logit_distillation_loss(student_batch, teacher_batch, mask, temperature=2.0)
    together = logit_distillation_loss(torch.cat(students)[None], torch.cat(teachers)[None], temperature=2.0)
    assert torch.isfinite(padded)
    assert padded.item() == pytest.approx(together.item(), rel=1e-5)


def test_a_ctc_teacher_runs_whole_gives_its_own_logits_and_hands_its_head_to_the_student(tiny_ctc_teacher_dir):
    from modeling_distilxlsr import DistilXLSRConfig, DistilXLSRForDistillation
    from modeling_distilxlsr.distill.teacher import TeacherTargets, init_student_from_teacher, load_teacher

    teacher = load_teacher(tiny_ctc_teacher_dir, ctc_head=True)
    wave = torch.randn(2, 12000)
    mask = torch.ones(2, 12000, dtype=torch.long)
    mask[1, 7000:] = 0
    with torch.no_grad():
        expected = teacher(wave, attention_mask=mask).logits
    config = DistilXLSRConfig.from_teacher_config(
        teacher.config, pred_layer_ids=(2,), distill_ctc_head=True, vocab_size=teacher.config.vocab_size
    )
    student = init_student_from_teacher(DistilXLSRForDistillation(config), teacher)
    torch.testing.assert_close(student.lm_head.weight, teacher.lm_head.weight)
    targets = TeacherTargets(teacher, (2,), normalize=False)
    assert len(targets.teacher.encoder.layers) == 4  # not cut at layer 2: the logits need the last layer
    outputs = targets(wave, mask)
    torch.testing.assert_close(outputs.logits, expected, atol=1e-5, rtol=1e-5)
    assert student(wave, attention_mask=mask).logits.shape == expected.shape


def test_logits_of_another_vocabulary_are_refused():
    with pytest.raises(ValueError, match="vocabulary and frame rate"):
        logit_distillation_loss(torch.zeros(1, 5, 10), torch.zeros(1, 5, 12))


def test_the_confidence_of_a_greedy_reading_is_the_mean_of_its_characters_peaks():
    blank = 0

    def frames(*rows):
        return np.log(np.array(rows, dtype=np.float64))

    # a (0.9, then 0.6 in the same run), blank, b (0.5): characters a and b, peaks 0.9 and 0.5
    logits = frames([0.05, 0.9, 0.05], [0.2, 0.6, 0.2], [0.8, 0.1, 0.1], [0.25, 0.25, 0.5])
    assert greedy_confidence(logits, blank) == pytest.approx((0.9 + 0.5) / 2)
    assert greedy_confidence(frames([0.9, 0.05, 0.05], [0.8, 0.1, 0.1]), blank) == 0.0  # nothing emitted


def test_every_pseudo_label_left_out_is_counted_with_its_reason(tmp_path, tiny_ctc_teacher_dir):
    from transformers import Wav2Vec2Config, Wav2Vec2Processor

    tokenizer = Wav2Vec2Processor.from_pretrained(tiny_ctc_teacher_dir).tokenizer
    config = Wav2Vec2Config.from_pretrained(tiny_ctc_teacher_dir)
    paths = []
    for name in ("good", "quiet", "unsure", "long", "short", "undecodable"):
        path = tmp_path / f"{name}.wav"
        path.write_bytes(b"x" * 10)
        paths.append(str(path))
    utterances = [Utterance(p, n, None, None, os.path.basename(p)) for p, n in
                  zip(paths, (32000, 32000, 32000, 320000, 800, 32000), strict=True)]  # fmt: skip
    cache = PseudoLabelCache("teacher", {"mode": "greedy"}, folder=str(tmp_path / "cache"))
    from modeling_distilxlsr.distill.pseudo_labels import file_key

    labels = ["uma frase", "", "talvez", "longa demais", "curta demais para dois quadros", None]
    confidences = [0.9, 0.0, 0.2, 0.9, 0.9, None]
    cache.add({file_key(u): PseudoLabel(t, c) for u, t, c in zip(utterances, labels, confidences, strict=True)
               if t is not None})  # fmt: skip
    skips = SkipCounter()
    skips.total = len(utterances)
    kept = pseudo_labelled(utterances, cache, 0.5, config, tokenizer, skips, max_samples=160000)
    assert [u.name for u in kept] == ["good.wav"] and kept[0].text == "uma frase"
    summary = skips.summary()
    for reason in ("empty", "confidence under 0.5", "longer than 10 s", "too short for its transcript",
                   "failed to decode"):  # fmt: skip
        assert reason in summary, summary
    # read back from disk by a second cache object: the same labels
    again = PseudoLabelCache("teacher", {"mode": "greedy"}, folder=str(tmp_path / "cache"))
    assert again.labels == cache.labels
    other_settings = PseudoLabelCache("teacher", {"mode": "lm"}, folder=str(tmp_path / "cache"))
    assert other_settings.labels == {} and other_settings.path != cache.path


def test_a_tokenizer_that_is_not_the_teachers_is_refused_naming_the_characters(tiny_ctc_teacher_dir, tmp_path):
    from transformers import Wav2Vec2Processor

    from modeling_distilxlsr.models.audio_format import default_feature_extractor
    from modeling_distilxlsr.text.normalizer import build_processor, build_vocab

    teacher_tokenizer = Wav2Vec2Processor.from_pretrained(tiny_ctc_teacher_dir).tokenizer
    check_same_vocabulary(teacher_tokenizer, teacher_tokenizer, "The same tokenizer")  # no error
    other = build_processor(build_vocab(["abc xyz"]), default_feature_extractor()).tokenizer
    with pytest.raises(VocabularyMismatchError, match="token\\(s\\) differ") as err:
        check_same_vocabulary(other, teacher_tokenizer, "The model's tokenizer")
    assert "36 token(s) differ ('d', 'e'" in str(err.value)  # the first characters only the teacher spells
    assert vocabulary_differences({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == ["b", "c"]


slow = pytest.mark.slow  # end-to-end runs


@slow
def test_a_teacher_without_a_ctc_head_is_refused_before_training(tiny_teacher_dir, small_corpus, tmp_path):
    result = distill(
        tiny_teacher_dir, small_corpus / "train", tmp_path / "out", "--max_steps", "2", "--logit_loss_weight", "1",
        check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "error: --logit_loss_weight and --pseudo_labels need a fine-tuned CTC teacher" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "checkpoints").exists()


@slow
def test_a_ctc_teacher_distils_into_an_asr_folder_that_the_pipeline_loads_in_a_fresh_process(
    tiny_ctc_teacher_dir, small_corpus, tmp_path
):
    out = tmp_path / "student"
    result = distill(
        tiny_ctc_teacher_dir, small_corpus / "train", out, "--max_steps", "4", "--eval_steps", "2",
        "--save_steps", "2", "--test_data", small_corpus / "test", "--augment",
    )  # fmt: skip
    assert "test CER" in result.stdout
    results = json.loads((out / "distill_results.json").read_text())
    assert results["test"]["utterances"] == 8 and 0 <= results["test"]["cer"]
    assert "eval/logit_kl" in results["final_eval"]
    assert any("train/logit_kl" in row for row in json.loads((out / "checkpoints" / "step_4" /
               "training_state.json").read_text())["history"])  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["DistilXLSRForCTC"]
    assert (out / "vocab.json").read_text() == open(os.path.join(tiny_ctc_teacher_dir, "vocab.json")).read()
    assert "automatic-speech-recognition" in (out / "README.md").read_text()
    code = f"""
        import numpy as np
        import torch
        import modeling_distilxlsr
        from safetensors.torch import load_file
        from transformers import pipeline

        asr = pipeline("automatic-speech-recognition", model={str(out)!r})
        print(type(asr.model).__name__, repr(asr(np.zeros(16000, np.float32))["text"][:0]))
        teacher = load_file({os.path.join(tiny_ctc_teacher_dir, "model.safetensors")!r})
        assert asr.model.lm_head.weight.shape == teacher["lm_head.weight"].shape
    """
    assert run_fresh_python(code, tmp_path, with_package=True).startswith("DistilXLSRForCTC ''")
    transcribe = run_script(["python", "transcribe.py", str(out), str(small_corpus / "test"), "--format", "jsonl",
                             "--output", str(tmp_path / "test.jsonl")])  # fmt: skip
    assert transcribe.returncode == 0
    assert len((tmp_path / "test.jsonl").read_text().splitlines()) == 8


@slow
def test_pseudo_labels_are_cached_and_a_resume_with_other_settings_is_refused(
    tiny_ctc_teacher_dir, small_corpus, tmp_path
):
    env = {"DISTILXLSR_CACHE": str(tmp_path / "cache")}
    args = ["--pseudo_labels", "greedy", "--min_pseudo_confidence", "0", "--max_audio_samples", "160000",
            "--save_steps", "2", "--eval_steps", "2"]  # fmt: skip
    first = distill(tiny_ctc_teacher_dir, small_corpus / "train", tmp_path / "a", "--max_steps", "4", *args,
                    env_extra=env)  # fmt: skip
    assert "transcribed now, 0 read from" in first.stderr
    cache_files = os.listdir(tmp_path / "cache" / "pseudo_labels")
    assert len(cache_files) == 1
    rows = (tmp_path / "cache" / "pseudo_labels" / cache_files[0]).read_text().splitlines()
    assert len(rows) == 43 and {"key", "text", "confidence"} == set(json.loads(rows[0]))
    # a second run, and a resume of the first (from its last checkpoint), read them back
    second = distill(tiny_ctc_teacher_dir, small_corpus / "train", tmp_path / "b", "--max_steps", "4", *args,
                     env_extra=env)  # fmt: skip
    assert "0 transcribed now, 43 read from" in second.stderr
    resumed = distill(tiny_ctc_teacher_dir, small_corpus / "train", tmp_path / "a", "--max_steps", "4", *args,
                      "--resume_from_checkpoint", "latest", env_extra=env)  # fmt: skip
    assert "0 transcribed now" in resumed.stderr
    changed = [*args[:2], "--min_pseudo_confidence", "0.01", *args[4:]]
    refused = distill(tiny_ctc_teacher_dir, small_corpus / "train", tmp_path / "a", "--max_steps", "4", *changed,
                      "--resume_from_checkpoint", "latest", env_extra=env, check=False)  # fmt: skip
    assert refused.returncode != 0
    assert "min_pseudo_confidence" in refused.stderr and "Traceback" not in refused.stderr
    assert "pseudo-labels (" not in refused.stderr  # refused before any pseudo-labelling


@slow
def test_semi_supervised_finetuning_mixes_ctc_batches_with_teacher_kd_on_unlabeled_audio(
    tiny_ctc_teacher_dir, small_corpus, tmp_path
):
    out = tmp_path / "asr"
    common = ["--train_data", str(small_corpus / "train"), "--eval_data", str(small_corpus / "dev"),
              "--max_steps", "4", "--eval_steps", "2", "--save_steps", "2", "--logging_steps", "1",
              "--per_device_batch_size", "4", "--num_workers", "0", "--report_to", "none"]  # fmt: skip
    run_script(["python", "finetune_ctc.py", "--model", tiny_ctc_teacher_dir, "--output_dir", str(out), *common,
                "--teacher", tiny_ctc_teacher_dir, "--unlabeled_data", str(small_corpus / "test"), "--augment",
                "--unlabeled_batches_per_step", "2"])  # fmt: skip
    history = json.loads((out / "checkpoints" / "step_4" / "training_state.json").read_text())["history"]
    kl = [row["train/logit_kl"] for row in history if "train/logit_kl" in row]
    assert kl and all(np.isfinite(kl))
    args = json.loads((out / "training_args.json").read_text())
    assert args["unlabeled_data"] == str(small_corpus / "test")
    # a model whose tokenizer spells other characters than the teacher's is refused, naming them
    refused = run_script(["python", "finetune_ctc.py", "--model", tiny_ctc_teacher_dir, "--vocab", "corpus",
                          "--output_dir", str(tmp_path / "other"), *common, "--teacher", tiny_ctc_teacher_dir,
                          "--unlabeled_data", str(small_corpus / "test")], check=False)  # fmt: skip
    assert refused.returncode == 1 and "does not match the teacher's vocabulary" in refused.stderr
    assert "Traceback" not in refused.stderr


@slow
def test_the_readme_main_job_distils_the_shipped_teacher_into_an_asr_student_and_prints_its_cer(small_corpus, tmp_path):
    """The README's first command, its install part left out (CI runs it whole), at tiny scale: a small corpus in
    the cache where the built-in one would be, and a few steps."""
    commands = readme_block("main")
    assert len(commands) == 1 and commands[0].startswith("bash install.sh && python train_distill.py")
    job = shlex.split(commands[0].split("&&")[-1])
    cache = tmp_path / "cache"
    shutil.copytree(small_corpus, cache / "corpus-pt-br-v2")
    tiny = ["--max_steps", "3", "--eval_steps", "3", "--save_steps", "3", "--output_dir", str(tmp_path / "main")]
    result = run_script([*job, *tiny], env_extra={"DISTILXLSR_CACHE": str(cache)})
    assert "test CER" in result.stdout
    results = json.loads((tmp_path / "main" / "distill_results.json").read_text())
    assert results["test"]["utterances"] == 8
    args = json.loads((tmp_path / "main" / "training_args.json").read_text())
    assert args["teacher"].endswith(os.path.join("corpus", "teacher_pt_br"))
