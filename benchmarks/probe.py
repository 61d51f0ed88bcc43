"""What a student keeps from its teacher beyond ASR: SUPERB-style probes with the encoder frozen.

    python benchmarks/probe.py --models teacher=MINILAB/teacher distilled=MINILAB/distilled \
        slim=MINILAB/distilled_slim scratch=random:MINILAB/distilled --out out/probe

For each model and task, `finetune_classification.py --freeze_encoder` trains SUPERB's head (a weighted sum of
every layer, mean pooling, a classifier) on the frozen encoder, and the held-out accuracy is reported, with each
model's fraction of the teacher's. Tasks, made from the synthetic pt-BR corpus and espeak-ng:
- speaker identification: the corpus' 9 training voices, utterances per voice split into probe-train and held-out;
- keyword spotting: BP command words ("sim", "não", "ligar", "desligar", "parar", "abrir"), an unknown-word class
  and a silence class, synthesised in the training voices for training and in the 3 test voices for testing.
`random:DIR` is DIR's architecture with random weights (the scratch baseline). Phoneme recognition (PER) is not in
this table yet.
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

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from modeling_distilxlsr.audio_format import SAMPLING_RATE  # noqa: E402
from modeling_distilxlsr.corpus import NUM_TEST_VOICES, VOICES, Espeak, default_corpus_dir, vary_voice  # noqa: E402

KEYWORDS = ("sim", "não", "ligar", "desligar", "parar", "abrir")
UNKNOWN_WORDS = ("janela", "cavalo", "amanhã", "feijoada", "bicicleta", "computador", "verde", "depois")


def write_manifest(path: str, rows: list[tuple[str, str]]):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["file_name", "label"])
        writer.writerows(rows)


def speaker_task(out: str, per_speaker: int, seed: int) -> tuple[str, str]:
    """Manifests of corpus training utterances by voice: 80% of each voice's clips to train the probe, 20% held out."""
    corpus = os.path.join(default_corpus_dir(), "train")
    by_speaker: dict[str, list[str]] = {}
    with open(os.path.join(corpus, "metadata.csv"), encoding="utf-8") as f:
        for row in csv.DictReader(f):
            by_speaker.setdefault(row["speaker"], []).append(os.path.join(corpus, row["file_name"]))
    rng = np.random.default_rng(seed)
    train, test = [], []
    for speaker, paths in sorted(by_speaker.items()):
        chosen = [paths[i] for i in rng.permutation(len(paths))[:per_speaker]]
        cut = int(0.8 * len(chosen))
        train += [(p, speaker) for p in chosen[:cut]]
        test += [(p, speaker) for p in chosen[cut:]]
    folder = os.path.join(out, "speaker_id")
    os.makedirs(folder, exist_ok=True)
    write_manifest(os.path.join(folder, "train.csv"), train)
    write_manifest(os.path.join(folder, "test.csv"), test)
    return os.path.join(folder, "train.csv"), os.path.join(folder, "test.csv")


def keyword_task(out: str, per_class_train: int, per_class_test: int, seed: int) -> tuple[str, str]:
    """1 s clips: a word at a random offset in low noise; training voices for train, test voices for test."""
    folder = os.path.join(out, "keywords")
    if os.path.exists(os.path.join(folder, "test.csv")):
        return os.path.join(folder, "train.csv"), os.path.join(folder, "test.csv")
    os.makedirs(folder, exist_ok=True)
    espeak, rng = Espeak(), np.random.default_rng(seed)
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
    from modeling_distilxlsr.export import save_for_hub

    torch.manual_seed(0)
    save_for_hub(DistilXLSRModel(DistilXLSRConfig.from_pretrained(model_dir)), out)
    return out


def probe(model: str, train: str, test: str, out: str, steps: int) -> dict:
    command = [sys.executable, "finetune_classification.py", "--model", model, "--train_data", train]
    command += ["--eval_data", test, "--output_dir", out, "--freeze_encoder", "--learning_rate", "3e-3"]
    command += ["--max_steps", str(steps), "--eval_steps", str(steps // 4), "--save_steps", str(steps)]
    command += ["--per_device_batch_size", "16", "--report_to", "none", "--overwrite_output_dir"]
    started = time.time()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True)
    with open(os.path.join(out, "classification_results.json")) as f:
        results = json.load(f)
    best = results["best_eval"][test]
    return {"accuracy": best["accuracy"], "macro_f1": best["macro_f1"], "seconds": time.time() - started}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", nargs="+", required=True, help="NAME=DIR (or NAME=random:DIR); the first is the teacher."
    )
    parser.add_argument("--out", default="out/probe")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    tasks = {
        "speaker identification (9 voices)": speaker_task(args.out, 50, args.seed),
        "keyword spotting (6 words + unknown + silence, unseen voices)": keyword_task(args.out, 40, 15, args.seed),
    }
    models = {}
    for spec in args.models:
        name, path = spec.split("=", 1)
        models[name] = (
            random_copy(path[7:], os.path.join(args.out, f"{name}_model")) if path.startswith("random:") else path
        )
    results = {}
    for task, (train, test) in tasks.items():
        for name, path in models.items():
            results[(task, name)] = probe(
                path, train, test, os.path.join(args.out, "runs", f"{name}_{task[:7]}"), args.steps
            )
            print(f"{task} / {name}: {results[(task, name)]}", file=sys.stderr, flush=True)
    teacher = next(iter(models))
    header = " | ".join(f"{name} acc (of teacher)" for name in models)
    lines = [f"| task | {header} |", "|---" * (len(models) + 1) + "|"]
    for task in tasks:
        cells = []
        for name in models:
            accuracy = results[(task, name)]["accuracy"]
            cells.append(f"{accuracy:.3f} ({accuracy / max(results[(task, teacher)]['accuracy'], 1e-9):.0%})")
        lines.append(f"| {task} | {' | '.join(cells)} |")
    print("\n".join(lines))
    with open(os.path.join(args.out, "probe_results.json"), "w") as f:
        json.dump({f"{t} / {m}": r for (t, m), r in results.items()}, f, indent=2)


if __name__ == "__main__":
    main()
