"""What `--augment` costs the distillation loop: CPU time to prepare a batch with and without the corruptions,
against the CPU time of the distillation step that consumes it (the real XLSR-53 architecture, random weights).

    python benchmarks/augment_cost.py [--batches 8] [--batch_size 8] [--max_audio_samples 64000] [--skip_step]

The corruptions run in the DataLoader workers; on a GPU machine they overlap with the step and cost nothing while a
worker keeps up. The worst case is a CPU-only machine whose cores are all busy with the step: there, the loop's
throughput with --augment is at least step / (step + extra preparation time). Both are measured here as *process CPU
time* (`time.process_time`, so another load on the machine does not skew them), on corpus clips (default: the
synthetic corpus' train split), same clips and crops with and without augmentation. Prints a table naming the CPU.
"""

import argparse
import os
import time

import numpy as np
from harness import cpu_line

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train_data", default=None)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_audio_samples", type=int, default=64000)
    parser.add_argument("--skip_step", action="store_true", help="Only the preparation costs.")
    args = parser.parse_args()

    import torch

    from modeling_distilxlsr.audio.augment import AugmentArguments, Augmenter
    from modeling_distilxlsr.audio.dataset import AudioCollator, AudioDataset
    from modeling_distilxlsr.audio.sources import SkipCounter, find_utterances

    torch.set_num_threads(1)  # one worker's view: one core
    if args.train_data is None:
        from modeling_distilxlsr.corpus.synthesis import default_corpus_dir, ensure_corpus

        args.train_data = os.path.join(ensure_corpus(default_corpus_dir()), "train")
    utterances = find_utterances(args.train_data, SkipCounter())[: args.batches * args.batch_size]
    augmenter = Augmenter(AugmentArguments(augment=True).augment_settings(), 0, SkipCounter(), utterances)
    collator = AudioCollator()
    rows, batches = {}, {}
    for name, aug in (("plain", None), ("--augment", augmenter)):
        dataset = AudioDataset(utterances, args.max_audio_samples, augmenter=aug, paired=aug is not None)
        started = time.process_time()
        batches[name] = [
            collator([dataset[(i, 0)] for i in range(b * args.batch_size, (b + 1) * args.batch_size)])
            for b in range(args.batches)
        ]
        rows[name] = (time.process_time() - started) / args.batches
    audio_seconds = float(np.mean([b["attention_mask"].sum().item() / 16000 for b in batches["--augment"]]))
    step = None if args.skip_step else step_cpu_seconds(batches["--augment"][: min(2, args.batches)])
    print(cpu_line(f"batches of {args.batch_size} clips, {audio_seconds:.1f} s"))
    print()
    print("| batch preparation | CPU s / batch | extra for --augment |")
    print("|---|---|---|")
    extra = rows["--augment"] - rows["plain"]
    print(f"| plain | {rows['plain']:.3f} | |")
    print(f"| --augment (default transforms) | {rows['--augment']:.3f} | {extra:.3f} |")
    if step is not None:
        print()
        print(f"XLSR-53 -> default student distillation step (ours, 8/16/24) on such a batch: {step:.2f} CPU s")
        print(f"worst-case loop throughput with --augment: {step / (step + extra):.1%} of without")


def step_cpu_seconds(batches) -> float:
    """CPU time of one distillation step (teacher targets, student forward and backward) on the XLSR-53 shapes."""
    import torch

    from modeling_distilxlsr import DistilXLSRConfig, DistilXLSRForDistillation
    from modeling_distilxlsr.distill.losses import student_distillation_loss
    from modeling_distilxlsr.distill.teacher import TeacherTargets, init_student_from_teacher, load_teacher

    torch.set_num_threads(os.cpu_count())
    teacher = load_teacher(os.path.join(REPO, "configs", "xlsr53_config.json"), random_init=True)
    config = DistilXLSRConfig.from_teacher_config(teacher.config, pred_layer_ids=[8, 16, 24])
    student = DistilXLSRForDistillation(config)
    init_student_from_teacher(student, teacher)
    targets_fn = TeacherTargets(teacher, [8, 16, 24], normalize=True)
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-4)
    seconds = []
    for batch in batches:
        started = time.process_time()
        targets = targets_fn(batch["input_values"], batch["attention_mask"])[0]
        outputs = student(batch["student_input_values"], attention_mask=batch["attention_mask"])
        loss = student_distillation_loss(outputs, targets, None, 1.0, 0.0)[0]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        seconds.append(time.process_time() - started)
    return float(np.median(seconds))


if __name__ == "__main__":
    main()
