"""Where ONNX Runtime spends its time, by operator type: why one int8 variant beats another on this CPU.

    python benchmarks/onnx_profile.py [--model slim_student_ctc] [--variants onnx onnx-int8 ...] [--seconds 10]

Random weights, real shapes (as benchmarks/inference.py builds them); each variant is run 5 times on one clip with
ONNX Runtime's profiler on, and the table gives milliseconds per run for the operator types that take most of it.
"""

import argparse
import collections
import json
import os
import tempfile

import numpy as np
from harness import cpu_line
from inference import INT8_VARIANTS, build

from modeling_distilxlsr.export.onnx_export import export_graph, quantize_onnx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RUNS = 5


def profile(path: str, x: np.ndarray) -> dict[str, float]:
    """Milliseconds per run by operator type."""
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feeds = {"input_values": x, "attention_mask": np.ones_like(x, dtype=np.int64)}
    session.run(None, feeds)  # warm-up, not profiled
    session.end_profiling()
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tempfile.mkdtemp(), "ort")
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    session.run(None, feeds)
    for _ in range(RUNS):
        session.run(None, feeds)
    with open(session.end_profiling()) as f:
        events = json.load(f)
    by_op = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"] / 1000
    return {op: ms / (RUNS + 1) for op, ms in by_op.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="slim_student_ctc")
    parser.add_argument("--variants", nargs="+", default=["onnx", "onnx-int8", "onnx-int8-static"])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args()
    import torch

    torch.manual_seed(0)
    model = build(args.model).eval()
    folder = tempfile.mkdtemp()
    fp32 = export_graph(model, os.path.join(folder, "model.onnx"), "out")
    x = np.random.default_rng(0).standard_normal((1, int(args.seconds * 16000))).astype(np.float32)
    print(cpu_line(args.model, f"{args.seconds:g} s x 1, ms per run by operator type") + "\n")
    for variant in args.variants:
        path = fp32
        if variant in INT8_VARIANTS:
            mode, options = INT8_VARIANTS[variant]
            path = quantize_onnx(fp32, os.path.join(folder, f"{variant}.onnx"), mode, **options)
        times = profile(path, x)
        top = sorted(times.items(), key=lambda item: -item[1])[: args.top]
        print(
            f"**{variant}**: {sum(times.values()):.0f} ms in kernels; " + ", ".join(f"{op} {ms:.0f}" for op, ms in top)
        )
        print()


if __name__ == "__main__":
    main()
