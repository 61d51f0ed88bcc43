"""Distillation throughput: audio seconds distilled per second and peak memory, our loop vs an s3prl-style baseline.

    python benchmarks/distill_throughput.py [--steps 3] [--batch_seconds 4 2.5] [--device cpu|cuda]

The real XLSR-53 architecture (configs/xlsr53_config.json, random weights) teaches the default 2-layer student.
Each row runs in its own process (so peak memory is that row's) doing warm-up + `--steps` optimizer steps on one
padded batch of random audio:

- s3prl-style baseline: the full fp32 teacher (all 24 layers, transformers' CNN), a separate student CNN, and the loss
  averaged over every frame, padding included;
- ours: the teacher truncated at the deepest predicted layer, the time-major CNN path in teacher and student, the
  loss over real frames only (and, with --freeze_cnn, the teacher's CNN features reused by the student);
- ours with the slim student (`--student_cnn_width 256`), whose CNN also learns the teacher's CNN output;
- ours with output distillation: the same teacher with a CTC head (a fine-tuned XLSR-53's shape, 40 characters) and
  the KL of the CTC posteriors on top of the layer loss (the student gets a CTC head), at the same teacher depth;
- ours with the log-mel front-end (`--student_frontend log_mel`), which learns the teacher's CNN output.

`--sweep N...`: instead of the table, the batch that fills the device: for each `--rows` row, batches of N clips of
`--batch_seconds`' first length (e.g. 16 32 64 128 x 15 s), each in its own process, until one runs out of memory;
each with its step time, audio-hours distilled per device-hour and peak memory against the device's total. Teacher
and student attention is SDPA (transformers' default where torch has it; the row says which ran), the frozen teacher
runs under `torch.no_grad` (`TeacherTargets`), and the audio is already on the device: the figure is the loop's,
and the data pipeline must keep up with it (see benchmarks/README.md).

`--rows NAME...` runs a subset (the baseline, first, always runs: the ratios need it).

Prints a table with ratios against the baseline of the same run.
"""

import argparse
import json
import os
import resource
import sys
import time

from harness import cpu_line, write_results
from workers import run_worker

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = {
    "s3prl-style baseline (8/16/24)": {"ours": False, "pred": [8, 16, 24], "freeze_cnn": False},
    "ours (8/16/24)": {"ours": True, "pred": [8, 16, 24], "freeze_cnn": False},
    "ours, --freeze_cnn (8/16/24)": {"ours": True, "pred": [8, 16, 24], "freeze_cnn": True},
    "ours (4/8/12: teacher cut at 12)": {"ours": True, "pred": [4, 8, 12], "freeze_cnn": False},
    "ours, slim CNN 256 (8/16/24)": {"ours": True, "pred": [8, 16, 24], "freeze_cnn": False, "cnn_width": 256},
    "ours + logit KD, CTC teacher (8/16/24)": {"ours": True, "pred": [8, 16, 24], "freeze_cnn": False, "logits": True},
    "ours, log-mel front-end (8/16/24)": {"ours": True, "pred": [8, 16, 24], "freeze_cnn": False, "log_mel": True},
}


def worker(spec: dict) -> dict:
    import torch
    from transformers import Wav2Vec2ForCTC

    from modeling_distilxlsr import DistilXLSRConfig, DistilXLSRForDistillation
    from modeling_distilxlsr.distill.losses import (
        distillation_loss,
        logit_distillation_loss,
        student_distillation_loss,
    )
    from modeling_distilxlsr.distill.teacher import TeacherTargets, init_student_from_teacher, load_teacher

    torch.manual_seed(0)
    device = torch.device(spec["device"])
    from shapes import layer_ids, teacher_config_path

    teacher = load_teacher(teacher_config_path(), random_init=True)
    ctc_fields = {}
    if spec.get("logits"):  # a fine-tuned teacher: the same network with a CTC head over 40 characters
        teacher.config.vocab_size, teacher.config.pad_token_id = 40, 0
        teacher = Wav2Vec2ForCTC(teacher.config).eval().requires_grad_(False)
        ctc_fields = dict(distill_ctc_head=True, vocab_size=40, pad_token_id=0)
    spec["pred"] = layer_ids(spec["pred"], teacher.config.num_hidden_layers)
    cnn_width = spec.get("cnn_width") and teacher.config.conv_dim[0] // 2  # 256 for XLSR-53
    config = DistilXLSRConfig.from_teacher_config(
        teacher.config,
        pred_layer_ids=spec["pred"],
        fast_feature_encoder=spec["ours"],
        cnn_width=cnn_width,
        feature_frontend="log_mel" if spec.get("log_mel") else "cnn",
        **ctc_fields,
    )
    cnn_loss_weight = 1.0 if spec.get("cnn_width") or spec.get("log_mel") else 0.0
    student = DistilXLSRForDistillation(config)
    init_student_from_teacher(student, teacher)
    if spec["freeze_cnn"]:
        student.freeze_feature_encoder()
    student.to(device).train()
    teacher.to(device)
    if spec["ours"]:
        targets_fn = TeacherTargets(teacher, spec["pred"], normalize=True)
    else:

        @torch.no_grad()
        def targets_fn(input_values, attention_mask):  # s3prl: every layer, then pick
            states = teacher(input_values, attention_mask=attention_mask, output_hidden_states=True).hidden_states
            targets = torch.stack([states[i] for i in spec["pred"]], 1)
            return torch.nn.functional.layer_norm(targets, targets.shape[-1:]), None, None

    optimizer = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=2e-4)
    lengths = [int(s * 16_000) for s in spec["batch_seconds"]]
    waves = torch.randn(len(lengths), max(lengths), device=device)
    mask = torch.zeros_like(waves, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
        waves[i, n:] = 0
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec["bf16"])

    def step():
        with autocast:
            targets, teacher_cnn, teacher_logits = targets_fn(waves, mask)
            out = student(waves, attention_mask=mask, cnn_features=teacher_cnn if spec["freeze_cnn"] else None)
        if spec["ours"]:
            loss = student_distillation_loss(out, targets, teacher_cnn, cnn_loss_weight=cnn_loss_weight)[0]
            if teacher_logits is not None:
                loss = loss + logit_distillation_loss(out.logits, teacher_logits, out.frame_attention_mask, 2.0)
        else:  # padding averaged in
            loss = distillation_loss(out.predictions, targets).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if device.type == "cuda":
            torch.cuda.synchronize()

    try:
        step()  # warm-up
        started = time.perf_counter()
        for _ in range(spec["steps"]):
            step()
    except torch.OutOfMemoryError:  # what a sweep looks for: the batch that no longer fits
        return {"out_of_memory": True}
    seconds = (time.perf_counter() - started) / spec["steps"]
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
        total_mb = torch.cuda.get_device_properties(device).total_memory / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    return {
        "step_seconds": seconds,
        "audio_seconds_per_second": sum(spec["batch_seconds"]) / seconds,
        "peak_memory_mb": peak_mb,
        "device_memory_mb": total_mb,
        "attention": f"teacher {teacher.config._attn_implementation}, student {student.config._attn_implementation}",
    }


def run_row(name: str, spec: dict) -> dict:
    result, error = run_worker(__file__, worker, spec)
    if result is None:
        raise SystemExit(f"{name} failed:\n{error}")
    print(f"{name} ({len(spec['batch_seconds'])} clips): {result}", file=sys.stderr, flush=True)
    return result


def sweep(args, rows: dict) -> None:
    """For each row, batches of each `--sweep` size until one runs out of memory: the batch that fills the device."""
    clip = args.batch_seconds[0]
    lines = [
        f"device: {args.device}{' bf16' if args.bf16 else ' fp32'}; clips of {clip:g} s; {args.steps} steps after "
        "1 warm-up",
        "",
        "| loop | clips per step | audio per step (s) | s/step | audio-hours per device-hour | peak memory (MiB) | "
        "of the device | attention |",
        "|---|---|---|---|---|---|---|---|",
    ]
    results = {}
    for name, row in rows.items():
        for clips in args.sweep:
            spec = {**row, "steps": args.steps, "batch_seconds": [clip] * clips, "device": args.device,
                    "bf16": args.bf16}  # fmt: skip
            r = results[f"{name} x {clips}"] = run_row(name, spec)
            if r.get("out_of_memory"):
                lines.append(f"| {name} | {clips} | {clip * clips:g} | out of memory | - | - | - | - |")
                break
            lines.append(
                f"| {name} | {clips} | {clip * clips:g} | {r['step_seconds']:.3f} | "
                f"{r['audio_seconds_per_second']:.0f} | {r['peak_memory_mb']:.0f} | "
                f"{r['peak_memory_mb'] / r['device_memory_mb']:.0%} | {r['attention']} |"
            )  # audio s per s = audio-hours per hour
    print("\n".join(lines))
    if args.json:
        write_results(args.json, {"rows": results})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch_seconds", type=float, nargs="+", default=[4.0, 2.5])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--json", default=None, help="Also write the table here.")
    parser.add_argument("--rows", nargs="+", default=None, help="Only these rows (and the baseline).")
    parser.add_argument("--sweep", type=int, nargs="+", default=None, help="Clips per step to try (see above).")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    unknown = sorted(set(args.rows or ()) - set(ROWS))
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; rows are {list(ROWS)}")
    if args.sweep:
        return sweep(args, {n: r for n, r in ROWS.items() if n in (args.rows or ["ours (8/16/24)"])})
    results = {}
    rows = {n: r for i, (n, r) in enumerate(ROWS.items()) if i == 0 or args.rows is None or n in args.rows}
    for name, row in rows.items():
        spec = {
            **row,
            "steps": args.steps,
            "batch_seconds": args.batch_seconds,
            "device": args.device,
            "bf16": args.bf16,
        }
        results[name] = run_row(name, spec)
    base = results[next(iter(ROWS))]
    memory = "peak GPU memory (MiB)" if args.device.startswith("cuda") else "peak RSS (MiB)"
    lines = [
        cpu_line(),
        f"device: {args.device}{' bf16' if args.bf16 else ' fp32'}; batch: {args.batch_seconds} s padded to the "
        f"longest; {args.steps} steps after 1 warm-up",
        "",
        f"| loop | s/step | audio s / s | speed-up | {memory} | memory ratio |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['step_seconds']:.2f} | {r['audio_seconds_per_second']:.2f} | "
            f"{r['audio_seconds_per_second'] / base['audio_seconds_per_second']:.2f}x | {r['peak_memory_mb']:.0f} | "
            f"{r['peak_memory_mb'] / base['peak_memory_mb']:.2f} |"
        )
    print("\n".join(lines))
    if args.json:
        write_results(args.json, {"rows": results})


if __name__ == "__main__":
    main()
