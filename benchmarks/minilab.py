"""The mini-lab: the offline stand-in for "XLSR-53 -> DistilXLSR -> BP ASR", measured end to end.

    python benchmarks/minilab.py [--out out/minilab] [--corpus DIR] [--scale cpu|gpu]

1. Teacher: a small wav2vec2 (configs/minilab_teacher.json, 6 pre-LN layers) trained with CTC on the synthetic pt-BR
   corpus' train split: the model that "knows" pt-BR phonetics.
2. Distil it into a 2-layer student with train_distill.py on the train audio, *without labels*.
3. Fine-tune the student with finetune_ctc.py on 10% of the labelled train split.
4. The slim student: the same recipe with a CNN half as wide (`--student_cnn_width`), initialised from a
   channel subset of the teacher's and distilled from its CNN output.
5. Baselines under the same fine-tuning budget: the same student architecture from random init, and the teacher itself.
6. With `--probe`: benchmarks/probe.py on the teacher and the distilled students (frozen encoders: speaker ID, keyword
   spotting, phoneme recognition).

With `--kd`: the output-distillation table instead (`kd_stages`): the shipped pt-BR teacher (or `--teacher`), and
students distilled from it with the layer loss only + 10% of the labels (the recipe above), with the layer loss + the
KL of its CTC posteriors and no label, the same + its greedy pseudo-labels, and the KL student fine-tuned on 10% of
the labels; all scored by benchmarks/robustness.py on the clean and corrupted test split and on a test split of
voices no model heard (the `--voices mixed` corpus' 12 unseen timbres).

Prints a table (CER/WER on the test split, whose sentences and voices training never saw; parameters; wall time per
stage) and writes it to OUT/minilab.json and OUT/minilab.md. Every stage runs the repo's own scripts as a user would.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

from harness import write_results
from render_tables import corrupted_mean, minilab_table

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCALES = {
    # steps for: teacher CTC training, distillation, each 10% fine-tune, each probe (classification, phonemes)
    "cpu": {"teacher": 2000, "distill": 1200, "finetune": 600, "batch": 8, "probe": (120, 400)},
    "gpu": {"teacher": 8000, "distill": 6000, "finetune": 2000, "batch": 16, "probe": (400, 1000)},
    # smoke: checks the stages run, in minutes
    "smoke": {"teacher": 20, "distill": 10, "finetune": 10, "batch": 4, "probe": (2, 2)},
}


def run(stage: str, args: list[str], log_dir: str) -> float:
    started = time.time()
    log_path = os.path.join(log_dir, f"{stage}.log")
    print(f"[{stage}] {' '.join(args)}", flush=True)
    with open(log_path, "w") as log:
        result = subprocess.run([sys.executable, *args], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise SystemExit(f"[{stage}] failed, see {log_path}")
    seconds = time.time() - started
    print(f"[{stage}] done in {seconds:.0f} s", flush=True)
    return seconds


def ctc_results(folder: str) -> dict:
    with open(os.path.join(folder, "ctc_results.json")) as f:
        return json.load(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/minilab")
    parser.add_argument("--corpus", default=None, help="Corpus folder (default: the cached synthetic corpus).")
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--pred_layer_ids", default="2 4 6")
    parser.add_argument("--slim_cnn_width", type=int, default=32, help="CNN width of the slim student (teacher: 64).")
    parser.add_argument("--skip_existing", action="store_true", help="Reuse stages whose output already exists.")
    parser.add_argument(
        "--robust",
        action="store_true",
        help="Run the robustness stages instead (robust.py in this folder's README): a teacher trained with "
        "--augment, plain and robust distillation from it, every fine-tune with --augment, then "
        "benchmarks/robustness.py on all of them.",
    )
    parser.add_argument("--kd", action="store_true", help="Run the output-distillation stages (see above).")
    parser.add_argument("--teacher", default=None, help="With --kd: the CTC teacher (default: the shipped one).")
    parser.add_argument("--unseen_test", default=None, help="With --kd: the unseen-voice test split (default: made).")
    parser.add_argument("--kd_extra", nargs="*", default=[], help="With --kd: flags added to every stage.")
    parser.add_argument(
        "--probe", action="store_true", help="Then run benchmarks/probe.py on the teacher and students (~10 min)."
    )
    args = parser.parse_args()
    scale = SCALES[args.scale]
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    from modeling_distilxlsr.corpus.synthesis import default_corpus_dir, ensure_corpus

    corpus = args.corpus or ensure_corpus(default_corpus_dir())
    train, dev, test = (os.path.join(corpus, s) for s in ("train", "dev", "test"))
    common = ["--report_to", "none", "--num_workers", "2", "--per_device_batch_size", str(scale["batch"])]
    finetune = [
        "finetune_ctc.py",
        "--train_data",
        train,
        "--eval_data",
        dev,
        test,
        *common,
        "--mask_time_prob",
        "0.0",
        "--eval_steps",
        "200",
        "--save_steps",
        "100000",
    ]
    names = ("teacher", "distilled", "student_distilled", "distilled_slim", "student_distilled_slim", "student_scratch")
    names += tuple(f"{name}_robust" for name in ("teacher", "distilled_plain", "distilled", "student_plain"))
    names += ("student_robust", "student_scratch_robust")
    dirs = {name: os.path.join(out, name) for name in names}
    times_path = os.path.join(out, "stage_seconds.json")  # kept across --skip_existing reruns
    times = json.load(open(times_path)) if os.path.exists(times_path) else {}

    def stage(name, stage_args, folder=None):
        folder = folder or dirs[name]
        done = os.path.exists(os.path.join(folder, "config.json"))
        if not (done and args.skip_existing):
            extra = ["--overwrite_output_dir"] if os.path.isdir(folder) else []  # a rerun replaces the stage
            times[name] = run(name, stage_args + extra, out)
            with open(times_path, "w") as f:
                json.dump(times, f, indent=2)

    distill_args = [
        "train_distill.py",
        "--train_data",
        train,
        "--max_steps",
        str(scale["distill"]),
        *common,
        "--pred_layer_ids",
        *args.pred_layer_ids.split(),
        "--learning_rate",
        "1e-3",
        "--max_audio_samples",
        "64000",
        "--eval_steps",
        "500",
        "--save_steps",
        "100000",
    ]
    tenth = ["--train_fraction", "0.1", "--max_steps", str(scale["finetune"]), "--learning_rate", "1e-3"]
    teacher_args = [*finetune, "--model", "configs/minilab_teacher.json", "--from_scratch", "--freeze_cnn", "false"]
    teacher_args += ["--max_steps", str(scale["teacher"]), "--learning_rate", "2e-3"]
    if args.robust:
        robust_stages(stage, dirs, finetune, teacher_args, distill_args, tenth, out, test, times)
        return
    if args.kd:
        kd_stages(args, stage, finetune, tenth, out, train, test, times)
        return

    stage("teacher", [*teacher_args, "--output_dir", dirs["teacher"]])
    for suffix, student_args in (("", []), ("_slim", ["--student_cnn_width", str(args.slim_cnn_width)])):
        stage(
            f"distilled{suffix}",
            [*distill_args, "--teacher", dirs["teacher"], "--output_dir", dirs[f"distilled{suffix}"], *student_args],
        )
        stage(
            f"student_distilled{suffix}",
            [
                *finetune,
                "--model",
                dirs[f"distilled{suffix}"],
                "--output_dir",
                dirs[f"student_distilled{suffix}"],
                *tenth,
            ],
        )
    stage(
        "student_scratch",
        [
            *finetune,
            "--model",
            os.path.join(dirs["distilled"], "config.json"),
            "--from_scratch",
            "--freeze_cnn",
            "false",
            "--output_dir",
            dirs["student_scratch"],
            *tenth,
        ],
    )

    rows = []
    labels = {
        "teacher": "teacher (wav2vec2, 6 layers, CTC on 100% of labels)",
        "student_distilled": "distilled student, fine-tuned on 10%",
        "student_distilled_slim": f"slim distilled student (CNN {args.slim_cnn_width} of 64 wide), fine-tuned on 10%",
        "student_scratch": "same student from random init, fine-tuned on 10%",
    }
    for name, label in labels.items():
        results = ctc_results(dirs[name])
        test_result, dev_result = results["best_eval"][test], results["best_eval"][dev]
        params = json.load(open(os.path.join(dirs[name], "config.json")))
        rows.append(
            {
                "model": label,
                "test_cer": test_result["cer"],
                "test_wer": test_result["wer"],
                "dev_cer": dev_result["cer"],
                "params": sum_params(dirs[name]),
                "hidden_layers": params["num_hidden_layers"],
                "steps": results["steps"],
                "stage_seconds": times.get(name, 0.0)
                + (times.get(name[8:], 0.0) if name.startswith("student_distilled") else 0.0),
            }
        )
    distill = {
        name: json.load(open(os.path.join(dirs[name], "distill_results.json")))
        for name in ("distilled", "distilled_slim")
    }
    report = {"rows": rows, "distillation": distill, "scale": args.scale, "corpus": corpus, "stage_seconds": times}
    write_results(os.path.join(out, "minilab.json"), report)
    table = minilab_table(report)
    with open(os.path.join(out, "minilab.md"), "w") as f:
        f.write(table)
    print(table)
    if args.probe:
        models = [f"{name}={dirs[name]}" for name in ("teacher", "distilled")]
        models += [f"slim={dirs['distilled_slim']}", f"scratch=random:{dirs['distilled']}"]
        probe_args = ["benchmarks/probe.py", "--models", *models, "--out", os.path.join(out, "probe")]
        steps = ["--steps", str(scale["probe"][0]), "--phoneme_steps", str(scale["probe"][1])]
        times["probe"] = run("probe", [*probe_args, "--corpus", corpus, *steps], out)
        with open(os.path.join(out, "probe.log")) as f:
            print("".join(line for line in f if line.startswith("|")))


def robust_stages(stage, dirs, finetune, teacher_args, distill_args, tenth, out, test, times):
    """The robustness recipe: everything as above, with `--augment` (default transforms, no noise files: built-in
    noises and simulated rooms) in the teacher's training, in the robust distillation (the teacher hears the clean
    clip, the student the corrupted one) and in every fine-tune; the plain distillation, from the same teacher,
    hears clean audio only. Then benchmarks/robustness.py on conditions whose noise types training never used."""
    augment = ["--augment"]
    stage("teacher_robust", [*teacher_args, *augment, "--output_dir", dirs["teacher_robust"]])
    for name, extra in (("distilled_plain_robust", []), ("distilled_robust", augment)):
        stage(name, [*distill_args, *extra, "--teacher", dirs["teacher_robust"], "--output_dir", dirs[name]])
    for name, base in (("student_plain_robust", "distilled_plain_robust"), ("student_robust", "distilled_robust")):
        stage(name, [*finetune, *augment, "--model", dirs[base], "--output_dir", dirs[name], *tenth])
    scratch = ["--model", os.path.join(dirs["distilled_robust"], "config.json"), "--from_scratch", "--freeze_cnn"]
    stage(
        "student_scratch_robust",
        [*finetune, *augment, *scratch, "false", "--output_dir", dirs["student_scratch_robust"], *tenth],
    )
    models = {
        "teacher, trained with --augment (100% of labels)": "teacher_robust",
        "plain distilled student (clean audio), fine-tuned with --augment on 10%": "student_plain_robust",
        "robust distilled student (--augment), fine-tuned with --augment on 10%": "student_robust",
        "same student from random init, fine-tuned with --augment on 10%": "student_scratch_robust",
        "teacher of the default mini-lab (no augmentation anywhere)": "teacher",
        "distilled student of the default mini-lab (no augmentation anywhere)": "student_distilled",
    }
    present = [f"{label}={dirs[name]}" for label, name in models.items() if os.path.exists(dirs[name])]
    robustness_out = os.path.join(out, "robustness")
    times["robustness"] = run(
        "robustness",
        ["benchmarks/robustness.py", "--test", test, "--out", robustness_out, "--models", *present],
        out,
    )
    with open(os.path.join(out, "stage_seconds.json"), "w") as f:
        json.dump(times, f, indent=2)
    print(open(os.path.join(robustness_out, "robustness.md")).read())
    for name in models.values():
        if os.path.exists(dirs[name]) and name in times:
            print(f"{name}: {times[name]:.0f} s")


def kd_stages(args, stage, finetune, tenth, out, train, test, times):
    """Output distillation against today's recipe, from one teacher, every student with the main job's settings
    (configs/main_job.yaml: steps, batch, crops; `--kd_extra` adds flags to every stage, e.g. --augment):
    layer loss only then 10% of the labels; layer + KL of the CTC posteriors, 0 labels; the same + greedy
    pseudo-labels, 0 labels; layer + KL, then 10% of the labels; the same with the teacher's KL on the untranscribed
    train audio (corrupted by --augment for the student) in every fine-tuning step. Scored with
    benchmarks/robustness.py on the test split (clean and 8 unseen corruptions) and on the unseen-voice test split."""

    from modeling_distilxlsr.corpus.teacher import shipped_teacher_dir

    teacher = args.teacher or shipped_teacher_dir()
    unseen = args.unseen_test
    if unseen is None:
        corpus = os.path.join(out, "corpus-mixed-voices")
        if not os.path.exists(os.path.join(corpus, "test", "metadata.csv")):
            run("unseen_voices", ["-m", "modeling_distilxlsr.corpus", "--voices", "mixed", corpus], out)
        unseen = os.path.join(corpus, "test")
    base = ["train_distill.py", "configs/main_job.yaml", "--teacher", teacher, "--test_data", test, *args.kd_extra]
    dirs = {name: os.path.join(out, name) for name in ("layers", "layers_10", "kd", "kd_pseudo", "kd_10", "kd_semi")}
    stage = stage_into(stage, dirs)
    stage("layers", [*base, "--logit_loss_weight", "0", "--output_dir", dirs["layers"]])
    stage(
        "layers_10", [*finetune, *args.kd_extra, "--model", dirs["layers"], "--output_dir", dirs["layers_10"], *tenth]
    )
    stage("kd", [*base, "--output_dir", dirs["kd"]])
    pseudo = ["--pseudo_labels", "greedy", "--max_audio_samples", "160000"]
    stage("kd_pseudo", [*base, *pseudo, "--output_dir", dirs["kd_pseudo"]])
    stage("kd_10", [*finetune, *args.kd_extra, "--model", dirs["kd"], "--output_dir", dirs["kd_10"], *tenth])
    # semi-supervised: the same 10% of the labels, each step also a batch of the whole train audio (untranscribed)
    # on which the student, hearing it corrupted, learns the teacher's posteriors of the clean clip
    semi = ["--teacher", teacher, "--unlabeled_data", train, "--augment"]
    stage("kd_semi", [*finetune, *args.kd_extra, "--model", dirs["kd"], "--output_dir", dirs["kd_semi"], *tenth, *semi])
    models = {
        "teacher (shipped, 6 layers, CTC on 100% of the labels)": teacher,
        "layer loss only, then 10% of the labels (the earlier recipe)": dirs["layers_10"],
        "layer loss + KL of the CTC posteriors, 0 labels": dirs["kd"],
        "layer loss + KL + greedy pseudo-labels, 0 labels": dirs["kd_pseudo"],
        "layer loss + KL, then 10% of the labels": dirs["kd_10"],
        "layer loss + KL, then 10% of the labels + the teacher's KL on the rest, --augment": dirs["kd_semi"],
    }
    specs = [f"{label}={folder}" for label, folder in models.items()]
    for name, split in (("robustness", test), ("robustness_unseen_voices", unseen)):
        times[name] = run(
            name, ["benchmarks/robustness.py", "--test", split, "--out", os.path.join(out, name), "--models", *specs],
            out,
        )  # fmt: skip
    with open(os.path.join(out, "stage_seconds.json"), "w") as f:
        json.dump(times, f, indent=2)
    report = {name: json.load(open(os.path.join(out, name, "robustness.json"))) for name in
              ("robustness", "robustness_unseen_voices")}  # fmt: skip
    teacher_row = next(iter(models))
    lines = [
        "| model | clean CER | x teacher | corrupted CER | x teacher | unseen voices CER | x teacher | unseen voices, "
        "corrupted | x teacher |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def figures(label):
        values = []
        for name in ("robustness", "robustness_unseen_voices"):
            result = report[name]["results"][label]
            values += [result["clean"]["cer"], corrupted_mean(result)]
        return values

    base_figures = figures(teacher_row)
    for label in models:
        cells = []
        for value, reference in zip(figures(label), base_figures, strict=True):
            cells += [f"{value:.3f}", f"{value / reference:.2f}x"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    with open(os.path.join(out, "minilab_kd.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    for name in dirs:
        if name in times:
            print(f"{name}: {times[name]:.0f} s")


def stage_into(stage, dirs):
    """`stage` (which knows the default stages' folders) for the --kd stages' own folders."""

    def kd_stage(name, stage_args):
        return stage(name, stage_args, dirs[name])

    return kd_stage


def sum_params(folder: str) -> int:
    """Parameters of the saved model, prediction heads excluded (they are dropped after distillation)."""
    from safetensors import safe_open

    total = 0
    with safe_open(os.path.join(folder, "model.safetensors"), "pt") as f:
        for key in f.keys():
            if "prediction_heads" not in key:
                shape = f.get_slice(key).get_shape()
                total += math.prod(shape)
    return total


if __name__ == "__main__":
    main()
