"""ONNX export for ONNX Runtime, with optional int8 quantisation, and the drift it causes, measured.

    distilxlsr-onnx MODEL_DIR OUT_DIR [--quantize dynamic|static] [--calibration_data D]

OUT_DIR may be MODEL_DIR itself: the graphs are then added beside the torch weights, and `transcribe.py` (whose
default `--backend auto` times every path the folder offers) picks whichever runs fastest on the machine.

The graph takes `input_values` and `attention_mask` (int64), both (batch, samples) with dynamic batch and length, and
returns `logits` (CTC models) or `last_hidden_state`. The processor files are copied beside `model.onnx`, so
`transcribe.py --backend onnx OUT_DIR ...` can use the folder directly.

`--no_attention_mask` writes the layout most ONNX wav2vec2 tools read (ctc-forced-aligner's `generate_emissions`,
hand-written ONNX Runtime loops, optimum's wav2vec2 exports): one input, `input_values` (batch, samples) of normalised
audio, and `logits` (batch, frames, vocabulary) out, with `vocab.json` beside it (label id -> character, `|` the word
delimiter, the pad token the CTC blank). Without a mask, padded samples would take part in attention, so that graph
is exact for unpadded input only (one utterance, or a batch of equal lengths); `run_onnx` runs such a graph one wave
at a time.

Quantisation uses onnxruntime.quantization: "dynamic" quantises weights to int8 and activations on the fly;
"static" also quantises activations, with ranges calibrated on a few utterances of `--calibration_data` (default:
the project's synthetic pt-BR corpus, made on first use). Dynamic quantisation needs no data: without
`--calibration_data`, the drift it causes is measured on a few seeded test signals, and no corpus is made.
"""

import argparse
import json
import os
import shutil

import numpy as np
import torch

from ..audio.decode import load_audio, normalize
from ..audio.sources import SkipCounter, find_utterances
from ..audio.stand_in import stand_in_signals
from ..corpus.synthesis import default_corpus_split
from ..inference.decoding import LM_INFO_FILE, has_lm
from ..inference.onnx_runtime import onnx_session, run_onnx
from ..models.audio_format import SAMPLING_RATE, default_feature_extractor
from ..models.folder import CONFIG_FILE, ONNX_FILES, PROCESSOR_FILES
from ..models.modeling_distilxlsr import DistilXLSRForCTC, DistilXLSRModel


class _OnnxGraph(torch.nn.Module):
    """The tensors in (the wave, and its mask unless left out), one tensor out: what the exporter traces."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_values, attention_mask=None):
        outputs = self.model(input_values, attention_mask=attention_mask)
        return outputs.logits if hasattr(outputs, "logits") else outputs.last_hidden_state


def load_for_export(model_dir: str):
    """Our CTC model or backbone from a DistilXLSR folder (a distillation checkpoint exports its backbone)."""
    with open(os.path.join(model_dir, CONFIG_FILE)) as f:
        architectures = json.load(f).get("architectures") or []
    model_class = DistilXLSRForCTC if "DistilXLSRForCTC" in architectures else DistilXLSRModel
    return model_class.from_pretrained(model_dir).eval()


def calibration_waves(data: str | None, count: int = 8, max_seconds: float = 8.0) -> list[np.ndarray]:
    """A few normalised utterances (the first `count` of `data`), for static quantisation and drift checks."""

    if data is None:
        data = default_corpus_split("dev")
    utterances = find_utterances(data, SkipCounter())[:count]
    return [normalize(load_audio(u.source)[: int(max_seconds * SAMPLING_RATE)]) for u in utterances]


# Opset 23 is the first with ONNX's own `Attention` op, which the exporter emits for torch's
# scaled_dot_product_attention, and ONNX Runtime (1.23 and newer) runs as one CPU kernel. At the exporter's default
# opset (18) attention is decomposed into MatMul, Where, Softmax, IsNaN, Where and MatMul, which ONNX Runtime's
# transformer optimizer does not fuse either (its BERT patterns do not match that graph: 0 Attention nodes found),
# and which writes the whole (heads x frames x frames) score tensor several times over: 576 MB each time for 16
# heads and 60 s at 50 frames a second.
# `benchmarks/onnx_attention.py` measures both.
ONNX_OPSET = 23


def export_graph(
    model: torch.nn.Module, path: str, output_name: str, attention_mask: bool = True, opset: int = ONNX_OPSET
) -> str:
    """`model` (ours, or any transformers wav2vec2 model) as an ONNX graph with dynamic batch and length, taking
    `input_values` and `attention_mask`, or `input_values` alone. The example batch is 2: torch.export would fix a
    batch axis traced at size 1."""
    batch, samples = torch.export.Dim("batch", min=1), torch.export.Dim("samples", min=400)
    example, names = (torch.randn(2, SAMPLING_RATE),), ["input_values"]
    if attention_mask:
        example, names = (*example, torch.ones(2, SAMPLING_RATE, dtype=torch.long)), [*names, "attention_mask"]
    torch.onnx.export(
        _OnnxGraph(model).eval(),
        example,
        path,
        input_names=names,
        output_names=[output_name],
        dynamic_shapes={name: {0: batch, 1: samples} for name in names},
        dynamo=True,
        external_data=False,
        opset_version=opset,
    )
    return path


def export_onnx(
    model_dir: str,
    out_dir: str,
    quantize: str | None = None,
    calibration_data: str | None = None,
    skip_cnn: bool = False,
    attention_mask: bool = True,
) -> str:
    """Writes OUT_DIR/model.onnx (fp32) and, with `quantize`, OUT_DIR/model_int8.onnx; returns the path to use.
    `attention_mask=False`: graphs with the one input other ONNX tools feed (see the module's docstring)."""
    os.makedirs(out_dir, exist_ok=True)
    model = load_for_export(model_dir)
    output_name = "logits" if isinstance(model, DistilXLSRForCTC) else "last_hidden_state"
    fp32_path = export_graph(model, os.path.join(out_dir, ONNX_FILES["fp32"]), output_name, attention_mask)
    if os.path.realpath(out_dir) != os.path.realpath(model_dir):
        copy_model_files(model_dir, out_dir)
    if quantize is None:
        return fp32_path
    return quantize_onnx(fp32_path, os.path.join(out_dir, ONNX_FILES["int8"]), quantize, calibration_data, skip_cnn)


def copy_model_files(model_dir: str, out_dir: str) -> None:
    """What `transcribe.py --backend onnx OUT_DIR` needs besides the graph: config, processor and LM. (Exporting into
    the model folder itself keeps everything in one place, where `--backend auto` can time both runtimes.)"""
    for name in (*PROCESSOR_FILES, CONFIG_FILE):
        if os.path.exists(os.path.join(model_dir, name)):
            shutil.copy(os.path.join(model_dir, name), os.path.join(out_dir, name))
    if has_lm(model_dir):  # the n-gram decoder travels with the graph (transcribe.py --backend onnx uses it)
        shutil.copytree(os.path.join(model_dir, "language_model"), os.path.join(out_dir, "language_model"))
        for name in ("alphabet.json", LM_INFO_FILE):
            shutil.copy(os.path.join(model_dir, name), os.path.join(out_dir, name))
    if not os.path.exists(os.path.join(out_dir, "preprocessor_config.json")) and not os.path.exists(
        os.path.join(out_dir, "processor_config.json")
    ):
        default_feature_extractor().save_pretrained(out_dir)


def cnn_nodes(onnx_path: str) -> list[str]:
    """Names of the graph's nodes that compute the CNN (the exporter records each node's source stack): the layers
    whose activations are longest (a fifth of the sample rate for the first), so the costliest to quantise on the
    fly."""
    import onnx  # lazy: optional dependency

    names = []
    for node in onnx.load(onnx_path, load_external_data=False).graph.node:
        trace = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.stack_trace"), "")
        if "conv_features" in trace or "feature_extractor" in trace:
            names.append(node.name)
    return names


def quantize_onnx(
    fp32_path: str,
    int8_path: str,
    mode: str,
    calibration_data: str | None = None,
    skip_cnn: bool = False,
    per_channel: bool = False,
) -> str:
    """int8 weights (`mode` "dynamic": activations quantised on the fly; "static": with calibrated ranges, QDQ,
    per-channel weights). `skip_cnn` keeps the CNN in fp32, `per_channel` gives dynamic int8 per-channel weights."""
    import onnx  # lazy: optional dependency
    from onnxruntime.quantization import (  # lazy: optional dependency
        CalibrationDataReader,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process  # lazy: optional dependency

    prepared = fp32_path.replace(".onnx", ".prep.onnx")
    quant_pre_process(fp32_path, prepared, skip_symbolic_shape=True)
    excluded = cnn_nodes(fp32_path) if skip_cnn else []
    if mode == "dynamic":
        # MatMuls only: the positional convolution (kernel 128, 16 groups) as a dynamic ConvInteger took 125 ms of a
        # 10 s clip on an AVX512-VNNI EPYC against 23 ms as an fp32 Conv, and made the whole int8 graph slower than
        # fp32 (benchmarks/onnx_profile.py).
        quantize_dynamic(
            prepared,
            int8_path,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            nodes_to_exclude=excluded,
            op_types_to_quantize=["MatMul"],
        )
    elif mode == "static":
        waves = calibration_waves(calibration_data)

        class Reader(CalibrationDataReader):
            def __init__(self):
                inputs = {i.name for i in onnx.load(prepared, load_external_data=False).graph.input}
                feeds = ({"input_values": w[None].astype(np.float32), "attention_mask": np.ones((1, len(w)), np.int64)}
                         for w in waves)  # fmt: skip
                self.items = iter({k: v for k, v in feed.items() if k in inputs} for feed in feeds)

            def get_next(self):
                return next(self.items, None)

        quantize_static(
            prepared,
            int8_path,
            Reader(),
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            per_channel=True,
            nodes_to_exclude=excluded,
        )
    else:
        raise ValueError(f"quantize must be None, 'dynamic' or 'static', got {mode!r}.")
    os.remove(prepared)
    return int8_path


def drift(model_dir: str, onnx_path: str, data: str | None = None, speech: bool = True) -> dict:
    """Mean cosine similarity, per frame, between the ONNX model's outputs and the fp32 torch model's, on real
    utterances (`data`, or the corpus' dev split), or on `stand_in_signals` when `speech` is False and no `data` is
    given; and the largest absolute difference."""
    model = load_for_export(model_dir)
    session = onnx_session(onnx_path)
    cosines, max_diff = [], 0.0
    for wave in calibration_waves(data) if data or speech else stand_in_signals():
        with torch.no_grad():
            outputs = model(torch.from_numpy(wave)[None])
        reference = (outputs.logits if hasattr(outputs, "logits") else outputs.last_hidden_state)[0].numpy()
        got = run_onnx(session, [wave])[0]
        cos = (reference * got).sum(-1) / (np.linalg.norm(reference, axis=-1) * np.linalg.norm(got, axis=-1) + 1e-9)
        cosines.append(float(cos.mean()))
        max_diff = max(max_diff, float(np.abs(reference - got).max()))
    return {"cosine": float(np.mean(cosines)), "max_abs_diff": max_diff}


def main(argv=None):
    parser = argparse.ArgumentParser(description="Export a DistilXLSR folder to ONNX (optionally int8).")
    parser.add_argument("model_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--quantize", choices=["dynamic", "static"], default=None)
    parser.add_argument("--calibration_data", default=None, help="Audio for static calibration and the drift check.")
    parser.add_argument("--skip_cnn", action="store_true", help="Keep the CNN in fp32 (int8 for the rest).")
    parser.add_argument(
        "--no_attention_mask",
        action="store_true",
        help="One input, input_values -> logits: the layout ctc-forced-aligner and other ONNX tools feed.",
    )
    args = parser.parse_args(argv)
    path = export_onnx(
        args.model_dir, args.out_dir, args.quantize, args.calibration_data, args.skip_cnn, not args.no_attention_mask
    )
    speech = args.calibration_data is not None or args.quantize == "static"  # static made the corpus already
    report = drift(args.model_dir, path, args.calibration_data, speech=speech)
    on = "" if speech else " (on seeded test signals; --calibration_data DIR measures it on speech)"
    print(f"{path}: cosine to fp32 torch {report['cosine']:.5f}, max |diff| {report['max_abs_diff']:.2e}{on}")


if __name__ == "__main__":
    main()
