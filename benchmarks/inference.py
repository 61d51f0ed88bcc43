"""Inference speed: the XLSR-53 architecture vs the default and the slim DistilXLSR student, eager / torch.compile /
ONNX Runtime.

    python benchmarks/inference.py [--durations 1 10 30] [--batch_sizes 1 8] [--backends eager compile onnx onnx-int8]
                                   [--device cuda --dtype bf16] [--isa avx2]

Random weights, real shapes (configs/xlsr53_config.json and `DistilXLSRConfig()`). Every (model, backend) runs in its
own process, so its peak memory (RSS on CPU, allocator peak on GPU) is its own; each cell is the median of
`--repeats` timed forwards after a warm-up. Prints one table with real-time factor (compute seconds per audio second)
and the speed-up against the teacher's eager forward of the same input.
"""

import argparse
import json
import os
import resource
import sys
import tempfile

from harness import ISA_CAPS, cap_isa, cpu_line, median_seconds, write_results
from workers import run_worker

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = {
    "XLSR-53 (teacher arch)": "teacher",
    "student backbone, transformers CNN": "student_slow_cnn",
    "student backbone": "student",
    "student CTC": "student_ctc",
    "slim student backbone (CNN 256)": "slim_student",
    "slim student CTC (CNN 256)": "slim_student_ctc",
    "log-mel student CTC": "mel_student_ctc",
}
# The int8 variants of issue 14's investigation: dynamic (weights int8, activations quantised on the fly) of every
# MatMul, of all but the CNN, with per-channel weights; static QDQ (calibrated on the corpus' dev split) likewise.
INT8_VARIANTS = {
    "onnx-int8": ("dynamic", {}),
    "onnx-int8-nocnn": ("dynamic", {"skip_cnn": True}),
    "onnx-int8-perchannel": ("dynamic", {"per_channel": True}),
    "onnx-int8-static": ("static", {}),
    "onnx-int8-static-nocnn": ("static", {"skip_cnn": True}),
}


def build(kind: str):
    from shapes import student_config, teacher_config
    from transformers import Wav2Vec2Model

    from modeling_distilxlsr import DistilXLSRForCTC, DistilXLSRModel

    if kind == "teacher":
        return Wav2Vec2Model(teacher_config())
    slim = kind.startswith("slim_")
    frontend = "log_mel" if kind.startswith("mel_") else "cnn"
    if kind.endswith("student_ctc"):
        return DistilXLSRForCTC(student_config(slim, vocab_size=43, pad_token_id=0, feature_frontend=frontend))
    return DistilXLSRModel(student_config(slim, fast_feature_encoder=kind != "student_slow_cnn"))


def worker(spec: dict) -> dict:
    import numpy as np
    import torch

    torch.manual_seed(0)
    model = build(spec["model"]).eval()
    device = torch.device(spec["device"])
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[spec["dtype"]]
    backend = spec["backend"]
    run = None
    # On a CPU, bf16 is autocast over fp32 weights, as transcribe.py --dtype bf16 runs it; on a GPU, weights are cast.
    cpu_autocast = device.type == "cpu" and dtype == torch.bfloat16
    if backend in ("eager", "compile"):
        model.to(device, torch.float32 if cpu_autocast else dtype)
        forward = torch.compile(model, dynamic=True) if backend == "compile" else model
        input_dtype = torch.float32 if cpu_autocast else dtype

        def run(x, mask):
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=cpu_autocast):
                forward(torch.from_numpy(x).to(device, input_dtype), attention_mask=torch.from_numpy(mask).to(device))
            if device.type == "cuda":
                torch.cuda.synchronize()

    else:
        from modeling_distilxlsr.export.onnx_export import export_graph, quantize_onnx
        from modeling_distilxlsr.inference.onnx_runtime import onnx_session

        folder = tempfile.mkdtemp()
        path = export_graph(model, os.path.join(folder, "model.onnx"), "out")
        if backend in INT8_VARIANTS:
            mode, options = INT8_VARIANTS[backend]
            path = quantize_onnx(path, os.path.join(folder, "model_int8.onnx"), mode, **options)
        session = onnx_session(path, spec.get("threads"))

        def run(x, mask):
            session.run(None, {"input_values": x, "attention_mask": mask})

    results = {}
    for seconds in spec["durations"]:
        for batch_size in spec["batch_sizes"]:
            x = np.random.default_rng(0).standard_normal((batch_size, int(seconds * 16000))).astype(np.float32)
            mask = np.ones_like(x, dtype=np.int64)
            # the warm-up run also compiles (torch.compile) and plans (ONNX Runtime)
            results[f"{seconds}x{batch_size}"] = median_seconds(lambda x=x, mask=mask: run(x, mask), spec["repeats"])
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # the kernels torch dispatched to (AVX2 under --isa avx2 even on an AVX-512 machine)
    return {"times": results, "peak_memory_mb": peak, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def onnxruntime_version() -> str:
    try:  # not in the CUDA image gpu_check.sh runs in
        import onnxruntime
    except ImportError:
        return "not installed"
    return onnxruntime.__version__


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--durations", type=float, nargs="+", default=[1, 10, 30])
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--backends", nargs="+", default=["eager", "compile", "onnx", "onnx-int8"])
    parser.add_argument("--models", nargs="+", default=list(MODELS.values()))
    parser.add_argument("--teacher_backends", nargs="+", default=["eager"], help="Backends also run for XLSR-53.")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: torch's count).")
    parser.add_argument("--json", default=None)
    parser.add_argument("--isa", choices=sorted(ISA_CAPS), help="Cap the ISA of every engine that can be capped.")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    cap_isa(args.isa)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    rows = {}
    for label, kind in MODELS.items():
        if kind not in args.models:
            continue
        for backend in args.backends:
            if kind == "teacher" and backend not in args.teacher_backends:
                continue
            if backend.startswith("onnx") and args.device != "cpu":
                continue
            spec = dict(
                model=kind,
                backend=backend,
                durations=args.durations,
                batch_sizes=args.batch_sizes,
                repeats=args.repeats,
                device=args.device,
                dtype=args.dtype,
                threads=args.threads,
            )
            result, error = run_worker(__file__, worker, spec)
            if result is None:
                print(f"{label} / {backend} failed: {error[-1500:]}", file=sys.stderr)
                continue
            rows[(label, backend)] = result
            print(f"{label} / {backend}: {rows[(label, backend)]}", file=sys.stderr, flush=True)
    baseline = rows.get(("XLSR-53 (teacher arch)", "eager"))
    cells = [f"{d:g}x{b}" for d in args.durations for b in args.batch_sizes]
    keys = [f"{d}x{b}" for d in args.durations for b in args.batch_sizes]
    header = " | ".join(f"{c} s: latency s (RTF, speed-up)" for c in cells)
    autocast = " (autocast)" if args.device == "cpu" and args.dtype == "bf16" else ""
    lines = [
        cpu_line(f"onnxruntime {onnxruntime_version()}", f"device: {args.device} {args.dtype}{autocast}"),
        f"cells are input seconds x batch size; median of {args.repeats}",
        "",
        f"| model | backend | {header} | peak memory (MiB) |",
        "|---" * (3 + len(cells)) + "|",
    ]
    for (label, backend), result in rows.items():
        parts = []
        for cell, key in zip(cells, keys, strict=True):
            seconds = result["times"][key]
            duration, batch_size = (float(v) for v in cell.split("x"))
            rtf = seconds / (duration * batch_size)
            speedup = f", {baseline['times'][key] / seconds:.2f}x" if baseline else ""
            parts.append(f"{seconds:.3f} ({rtf:.3f}{speedup})")
        name = backend if backend in INT8_VARIANTS else f"{backend} {args.dtype}"
        lines.append(f"| {label} | {name} | {' | '.join(parts)} | {result['peak_memory_mb']:.0f} |")
    print("\n".join(lines))
    if args.json:
        write_results(args.json, {"rows": {f"{k[0]} / {k[1]}": v for k, v in rows.items()}})


if __name__ == "__main__":
    main()
