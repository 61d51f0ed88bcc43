"""ONNX Runtime inference: a CPU session, padded batches, long audio in chunks. The graphs come from
`modeling_distilxlsr.export.onnx_export`."""

import numpy as np
import torch

from ..audio.decode import normalize
from ..models.audio_format import default_feature_extractor
from ..models.configuration_distilxlsr import cnn_output_frames


def onnx_session(path: str, threads: int | None = None):
    """An ONNX Runtime CPU session with as many intra-op threads as torch uses (`threads` to choose). ONNX Runtime's
    own default is the number of *physical* cores: on a 2-vCPU machine with 2 threads per core it runs on one
    thread while torch runs on two, which made ONNX (int8 above all) look slower than eager torch there."""
    import onnxruntime as ort  # lazy: optional dependency

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or torch.get_num_threads()
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def run_onnx(session, waves: list[np.ndarray]) -> np.ndarray:
    """One padded batch through an ONNX session."""
    batch = default_feature_extractor().pad(
        {"input_values": waves}, padding=True, return_attention_mask=True, return_tensors="np"
    )
    feeds = {
        "input_values": batch["input_values"].astype(np.float32),
        "attention_mask": batch["attention_mask"].astype(np.int64),
    }
    return session.run(None, feeds)[0]


def onnx_logits(session, audio, chunk_samples: int | None, ratio: int = 320) -> np.ndarray:
    """CTC logits of one utterance; long audio in overlapping chunks whose overlaps (a sixth of a chunk on each
    side) are dropped before the logits are joined, as the transformers pipeline does."""

    if not chunk_samples or len(audio) <= chunk_samples:
        return run_onnx(session, [normalize(audio)])[0]
    stride = (chunk_samples // 6) // ratio * ratio
    step = chunk_samples - 2 * stride
    pieces = []
    for start in range(0, len(audio), step):
        chunk = audio[max(0, start - stride) : start + step + stride]
        if len(chunk) < 400:
            break
        logits = run_onnx(session, [normalize(chunk)])[0]
        left = (start - max(0, start - stride)) // ratio
        keep = logits[left : left + max(1, step // ratio)] if start + step < len(audio) else logits[left:]
        pieces.append(keep)
    return np.concatenate(pieces)


def onnx_batch_logits(session, decoded: dict, chunk_samples: int | None, config):
    """(path, logits, error) for each file of a batch: files up to one chunk long in one padded batch, each cut to
    its own frames; longer ones alone, in chunks. A batch that fails is retried file by file."""

    short = [p for p, audio in decoded.items() if not chunk_samples or len(audio) <= chunk_samples]
    groups = ([short] if short else []) + [[p] for p in decoded if p not in short]
    while groups:
        group = groups.pop(0)
        try:
            if len(group) == 1:
                logits = [onnx_logits(session, decoded[group[0]], chunk_samples)]
            else:
                logits = run_onnx(session, [normalize(decoded[p]) for p in group])
        except Exception as err:
            if len(group) > 1:
                groups[:0] = [[p] for p in group]
                continue
            yield group[0], None, f"inference failed: {type(err).__name__}: {err}"
            continue
        for path, file_logits in zip(group, logits, strict=True):
            yield path, file_logits[: cnn_output_frames(config, len(decoded[path]))], None
