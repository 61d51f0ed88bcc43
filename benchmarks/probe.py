"""What a student keeps from its teacher beyond ASR: SUPERB-style probes with the encoder frozen.

    python benchmarks/probe.py --models teacher=MINILAB/teacher distilled=MINILAB/distilled \
        slim=MINILAB/distilled_slim scratch=random:MINILAB/distilled --out out/probe

For each model and task a head trains on the frozen encoder and its held-out score is reported, with each model's
score as a fraction of the teacher's. Tasks, made from the synthetic pt-BR corpus and espeak-ng:
- speaker identification: the corpus' 9 training voices, utterances per voice split into probe-train and held-out;
- keyword spotting: BP command words ("sim", "não", "ligar", "desligar", "parar", "abrir"), an unknown-word class
  and a silence class, synthesised in the training voices for training and in the 3 test voices for testing;
  both with `finetune_classification.py --freeze_encoder` (SUPERB's head: weighted sum of every layer, mean pooling
  over real frames, a classifier);
- phoneme recognition: `finetune_ctc.py --target phonemes --freeze_encoder`, a linear CTC head over espeak-ng's IPA
  phones on the frozen encoder's last layer (transformers' CTC classes have no weighted-sum head, and the teacher is
  a `Wav2Vec2ForCTC`), trained on the corpus' train split, the step chosen on dev, phone error rate (PER) on the test
  split (unseen sentences and voices).
`random:DIR` is DIR's architecture with random weights (the scratch baseline).
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time

import numpy as np
import soundfile as sf
import soxr
from harness import write_results

from modeling_distilxlsr.corpus.synthesis import (
    NUM_TEST_VOICES,
    VOICES,
    default_corpus_dir,
    ensure_corpus,
    vary_voice,
)
from modeling_distilxlsr.models.audio_format import SAMPLING_RATE
from modeling_distilxlsr.text.espeak import Espeak

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PHONEME_TASK = "phoneme recognition (PER, test split: unseen sentences and voices)"
KEYWORDS = ("sim", "não", "ligar", "desligar", "parar", "abrir")
UNKNOWN_WORDS = ("janela", "cavalo", "amanhã", "feijoada", "bicicleta", "computador", "verde", "depois")


def write_manifest(path: str, rows: list[tuple[str, str]]):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", "label"])
        writer.writerows(rows)


def speaker_task(corpus_dir: str, out: str, per_speaker: int, seed: int) -> tuple[str, str]:
    """Manifests of corpus training utterances by voice: 80% of each voice's clips to train the probe, 20% (at least
    one) held out."""
    corpus = os.path.join(corpus_dir, "train")
    by_speaker: dict[str, list[str]] = {}
    with open(os.path.join(corpus, "metadata.csv"), encoding="utf-8") as f:
        for row in csv.DictReader(f):
            by_speaker.setdefault(row["speaker"], []).append(os.path.join(corpus, row["file_name"]))
    rng = np.random.default_rng(seed)
    train, test = [], []
    for speaker, paths in sorted(by_speaker.items()):
        chosen = [paths[i] for i in rng.permutation(len(paths))[:per_speaker]]
        cut = min(int(0.8 * len(chosen)), len(chosen) - 1)
        if cut < 1:
            raise SystemExit(f"Voice {speaker} has {len(chosen)} training utterance(s): the probe needs 2 or more.")
        train += [(p, speaker) for p in chosen[:cut]]
        test += [(p, speaker) for p in chosen[cut:]]
    folder = os.path.join(out, "speaker_id")
    os.makedirs(folder, exist_ok=True)
    write_manifest(os.path.join(folder, "train.csv"), train)
    write_manifest(os.path.join(folder, "test.csv"), test)
    return os.path.join(folder, "train.csv"), os.path.join(folder, "test.csv")


def keyword_task(out: str, per_class_train: int, per_class_test: int, seed: int) -> tuple[str, str]:
    """1 s clips: a word at a random offset in low noise; training voices for train, test voices for test. Made once
    per setting: the folder is named by the clip counts and seed, so a rerun with other settings never reuses them."""
    folder = os.path.join(out, f"keywords_{per_class_train}x{per_class_test}_seed{seed}")
    if os.path.exists(os.path.join(folder, "test.csv")):
        return os.path.join(folder, "train.csv"), os.path.join(folder, "test.csv")
    os.makedirs(folder, exist_ok=True)
    espeak, rng = Espeak.shared(), np.random.default_rng(seed)
    voices = {"train": VOICES[:-NUM_TEST_VOICES], "test": VOICES[-NUM_TEST_VOICES:]}
    classes = [*KEYWORDS, "desconhecida", "silêncio"]
    manifests = {}
    for split, count in (("train", per_class_train), ("test", per_class_test)):
        rows = []
        for label in classes:
            for i in range(count):
                clip = (rng.standard_normal(SAMPLING_RATE) * 0.003).astype(np.float32)
                if label != "silêncio":
                    word = label if label in KEYWORDS else UNKNOWN_WORDS[rng.integers(len(UNKNOWN_WORDS))]
                    voice = vary_voice(voices[split][rng.integers(len(voices[split]))], rng)
                    speech = espeak.synthesize(word, voice, seed=int(rng.integers(1 << 30)))
                    speech = soxr.resample(speech, espeak.sample_rate, SAMPLING_RATE)[: SAMPLING_RATE - 1]
                    start = int(rng.integers(0, SAMPLING_RATE - len(speech) + 1))
                    clip[start : start + len(speech)] += speech * rng.uniform(0.5, 1.0)
                path = os.path.join(folder, split, f"{label}_{i:03d}.wav")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                sf.write(path, clip, SAMPLING_RATE)
                rows.append((path, label))
        manifests[split] = os.path.join(folder, f"{split}.csv")
        write_manifest(manifests[split], rows)
    return manifests["train"], manifests["test"]


def random_copy(model_dir: str, out: str) -> str:
    """`model_dir`'s architecture with random weights (the scratch student), saved as a model folder."""
    import torch

    from modeling_distilxlsr import DistilXLSRConfig, DistilXLSRModel
    from modeling_distilxlsr.models.folder import save_for_hub

    torch.manual_seed(0)
    save_for_hub(DistilXLSRModel(DistilXLSRConfig.from_pretrained(model_dir)), out)
    return out


def run_probe(command: list[str], results_file: str, out: str) -> dict:
    """Runs one probe script to its end and returns its results file (the script's own output is kept in out)."""
    started = time.time()
    os.makedirs(out, exist_ok=True)
    log_path = os.path.join(out, "probe.log")
    with open(log_path, "w") as log:
        returncode = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
    if returncode != 0:
        with open(log_path) as log:
            last_lines = "".join(log.readlines()[-5:])
        raise SystemExit(f"{os.path.basename(command[1])} failed ({returncode}); its log is {log_path}:\n{last_lines}")
    with open(os.path.join(out, results_file)) as f:
        return {**json.load(f), "seconds": time.time() - started}


def common_flags(model: str, out: str, steps: int, learning_rate: float, seed: int) -> list[str]:
    flags = ["--model", model, "--output_dir", out, "--freeze_encoder", "--learning_rate", str(learning_rate)]
    flags += ["--max_steps", str(steps), "--eval_steps", str(max(1, steps // 4)), "--save_steps", str(steps)]
    return flags + [
        "--per_device_batch_size",
        "16",
        "--report_to",
        "none",
        "--overwrite_output_dir",
        "--seed",
        str(seed),
    ]


def classification_probe(model: str, train: str, test: str, out: str, steps: int, seed: int) -> dict:
    command = [sys.executable, "finetune_classification.py", "--train_data", train, "--eval_data", test]
    results = run_probe([*command, *common_flags(model, out, steps, 3e-3, seed)], "classification_results.json", out)
    best = results["best_eval"][test]
    return {"accuracy": best["accuracy"], "macro_f1": best["macro_f1"], "seconds": results["seconds"]}


def phoneme_probe(model: str, corpus: str, out: str, steps: int, seed: int) -> dict:
    """PER on the test split at the step with the best dev PER (finetune_ctc.py selects on its first eval set)."""
    train, dev, test = (os.path.join(corpus, split) for split in ("train", "dev", "test"))
    command = [sys.executable, "finetune_ctc.py", "--target", "phonemes", "--train_data", train, "--eval_data", dev]
    command += [test, *common_flags(model, out, steps, 5e-3, seed)]
    results = run_probe(command, "ctc_results.json", out)
    return {
        "per": results["best_eval"][test]["per"],
        "dev_per": results["best_eval"][dev]["per"],
        "best_step": results["best_step"],
        "seconds": results["seconds"],
    }


def table_cell(result: dict, teacher: dict) -> str:
    """Accuracy and its fraction of the teacher's; for PER (lower is better) the PER and its ratio to the teacher's."""
    if "per" in result:
        ratio = f"{result['per'] / teacher['per']:.2f}x the teacher's" if teacher["per"] else "teacher at 0"
        return f"{result['per']:.3f} PER ({ratio})"
    ratio = f"{result['accuracy'] / teacher['accuracy']:.0%}" if teacher["accuracy"] else "teacher at 0"
    return f"{result['accuracy']:.3f} ({ratio})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", nargs="+", required=True, help="NAME=DIR (or NAME=random:DIR); the first is the teacher."
    )
    parser.add_argument("--out", default="out/probe")
    parser.add_argument("--steps", type=int, default=400, help="Steps of each classification probe.")
    parser.add_argument("--phoneme_steps", type=int, default=400, help="Steps of each phoneme-recognition probe.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--corpus", default=None, help="A corpus made by modeling_distilxlsr.corpus (default: its own)."
    )
    parser.add_argument("--speaker_clips", type=int, default=50, help="Utterances per voice (80%% train, 20%% test).")
    parser.add_argument("--keyword_clips", type=int, nargs=2, default=[40, 15], help="Clips per class: train, test.")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    corpus = args.corpus or ensure_corpus(default_corpus_dir())
    speakers = speaker_task(corpus, args.out, args.speaker_clips, args.seed)
    keywords = keyword_task(args.out, *args.keyword_clips, args.seed)
    tasks = {  # task -> (model, run folder) -> its result
        "speaker identification (9 voices)": lambda model, run_dir: classification_probe(
            model, *speakers, run_dir, args.steps, args.seed
        ),
        "keyword spotting (6 words + unknown + silence, unseen voices)": lambda model, run_dir: classification_probe(
            model, *keywords, run_dir, args.steps, args.seed
        ),
        PHONEME_TASK: lambda model, run_dir: phoneme_probe(model, corpus, run_dir, args.phoneme_steps, args.seed),
    }
    models = {}
    for spec in args.models:
        name, path = spec.split("=", 1)
        models[name] = (
            random_copy(path[7:], os.path.join(args.out, f"{name}_model")) if path.startswith("random:") else path
        )
    results = {}
    for task, run_task in tasks.items():
        for name, path in models.items():
            results[(task, name)] = run_task(path, os.path.join(args.out, "runs", f"{name}_{task[:7]}"))
            print(f"{task} / {name}: {results[(task, name)]}", file=sys.stderr, flush=True)
    teacher = next(iter(models))
    lines = [f"| task | {' | '.join(models)} |", "|---" * (len(models) + 1) + "|"]
    for task in tasks:
        cells = [table_cell(results[(task, name)], results[(task, teacher)]) for name in models]
        lines.append(f"| {task} | {' | '.join(cells)} |")
    print("\n".join(lines))
    rows = {f"{t} / {m}": r for (t, m), r in results.items()}
    write_results(os.path.join(args.out, "probe_results.json"), {"rows": rows})


if __name__ == "__main__":
    main()
