"""ONNX Runtime, an optional dependency (the `onnx` extra): a CPU session and one padded batch through it. The graphs
come from `modeling_distilxlsr.export.onnx_export`; `backends.OnnxBackend` runs them."""

import importlib.util

import numpy as np
import torch

from ..models.audio_format import default_feature_extractor


def onnx_available() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def onnx_version() -> str | None:
    """onnxruntime's version (part of `--backend auto`'s cache key), None when it is not installed."""
    if not onnx_available():
        return None
    import onnxruntime  # lazy: optional dependency (the onnx extra)

    return onnxruntime.__version__


def onnx_session(path: str, threads: int | None = None):
    """An ONNX Runtime CPU session with as many intra-op threads as torch uses (`threads` to choose). ONNX Runtime's
    own default is the number of *physical* cores: on a 2-vCPU machine with 2 threads per core it runs on one
    thread while torch runs on two, which made ONNX (int8 above all) look slower than eager torch there."""
    import onnxruntime as ort  # lazy: optional dependency (the onnx extra)

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def run_onnx(session, waves: list[np.ndarray]) -> np.ndarray:
    """One padded batch of (normalised) waves through an ONNX session: the graph's output, (batch, frames, ...). A
    graph without an `attention_mask` input (`distilxlsr-onnx --no_attention_mask`) cannot mask padding, so waves of
    different lengths go through it one at a time, each output zero-padded to the longest."""
    if "attention_mask" not in {i.name for i in session.get_inputs()}:
        if len({len(w) for w in waves}) > 1:
            outputs = [run_onnx(session, [w])[0] for w in waves]
            padded = np.zeros((len(outputs), max(len(o) for o in outputs), *outputs[0].shape[1:]), outputs[0].dtype)
            for row, output in zip(padded, outputs, strict=True):
                row[: len(output)] = output
            return padded
        return session.run(None, {"input_values": np.stack(waves).astype(np.float32)})[0]
    batch = default_feature_extractor().pad(
        {"input_values": waves}, padding=True, return_attention_mask=True, return_tensors="np"
    )
    feeds = {
        "input_values": batch["input_values"].astype(np.float32),
        "attention_mask": batch["attention_mask"].astype(np.int64),
    }
    return session.run(None, feeds)[0]
