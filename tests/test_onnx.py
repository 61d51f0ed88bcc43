import sys

import numpy as np
import onnx
import pytest
import torch
from conftest import run_script, tiny_student_config

from modeling_distilxlsr import DistilXLSRForDistillation
from modeling_distilxlsr.export.onnx_export import export_onnx
from modeling_distilxlsr.inference.onnx_runtime import onnx_session, run_onnx
from modeling_distilxlsr.models.folder import save_for_hub

pytestmark = pytest.mark.slow  # every test here is an end-to-end run


def test_the_exported_graph_computes_attention_with_onnxs_fused_attention_op(tiny_ctc_dir, tmp_path):
    """Opset 23's `Attention`, one per layer, instead of the MatMul/Where/Softmax/IsNaN/Where/MatMul decomposition
    of the exporter's default opset (`benchmarks/onnx_attention.py` times both)."""
    model_dir, model = tiny_ctc_dir
    graph = onnx.load(export_onnx(str(model_dir), str(tmp_path / "onnx")))
    ops = [node.op_type for node in graph.graph.node]
    assert ops.count("Attention") == model.config.num_hidden_layers and "Softmax" not in ops
    assert {o.domain: o.version for o in graph.opset_import}[""] == 23


def test_onnx_fp32_matches_torch_with_dynamic_batch_length_and_padding(tiny_ctc_dir, tmp_path):
    model_dir, model = tiny_ctc_dir
    path = export_onnx(str(model_dir), str(tmp_path / "onnx"))
    session = onnx_session(path)
    assert [i.name for i in session.get_inputs()] == ["input_values", "attention_mask"]
    rng = np.random.default_rng(0)
    for lengths in ([16000], [12000, 7001, 20000]):
        waves = [rng.standard_normal(n).astype(np.float32) for n in lengths]
        got = run_onnx(session, waves)
        for i, wave in enumerate(waves):
            with torch.no_grad():
                expected = model(torch.from_numpy(wave)[None]).logits[0].numpy()
            np.testing.assert_allclose(got[i, : len(expected)], expected, atol=1e-4, rtol=0)
    assert (tmp_path / "onnx" / "vocab.json").exists() and (tmp_path / "onnx" / "config.json").exists()


def test_backbone_export_and_dynamic_int8(tmp_path):
    from modeling_distilxlsr.export.onnx_export import drift

    torch.manual_seed(0)
    save_for_hub(DistilXLSRForDistillation(tiny_student_config()), str(tmp_path / "distilled"))
    path = export_onnx(str(tmp_path / "distilled"), str(tmp_path / "onnx"), quantize="dynamic")
    assert path.endswith("model_int8.onnx")
    assert [o.name for o in onnx_session(path).get_outputs()] == ["last_hidden_state"]
    fp32 = drift(str(tmp_path / "distilled"), str(tmp_path / "onnx" / "model.onnx"), data=_speech(tmp_path))
    assert fp32["cosine"] > 0.99999 and fp32["max_abs_diff"] < 1e-4
    # The int8 graph is quantised (integer kernels, measured drift) and stays inside the 0.99 cosine budget.
    import onnx

    added = {n.op_type for n in onnx.load(path).graph.node} - {
        n.op_type for n in onnx.load(str(tmp_path / "onnx" / "model.onnx")).graph.node
    }
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= added
    int8 = drift(str(tmp_path / "distilled"), path, data=_speech(tmp_path))
    assert 0.99 < int8["cosine"] < 0.99999 and int8["max_abs_diff"] > 1e-3  # measured: 0.9987, 0.44


def _speech(tmp_path):
    import soundfile as sf

    folder = tmp_path / "speech"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(3):
        sf.write(folder / f"{i}.wav", (rng.standard_normal(16000 + 3000 * i) * 0.1).astype(np.float32), 16000)
    return str(folder)


def test_transcribe_onnx_backend_matches_torch_greedy(tiny_ctc_dir, tmp_path):
    model_dir, _ = tiny_ctc_dir
    export_onnx(str(model_dir), str(tmp_path / "onnx"))
    audio = _speech(tmp_path)
    torch_out = run_script([sys.executable, "transcribe.py", str(model_dir), audio, "--backend", "torch"]).stdout
    onnx_out = run_script([sys.executable, "transcribe.py", str(tmp_path / "onnx"), audio, "--backend", "onnx"]).stdout
    assert len(onnx_out.strip().splitlines()) == 3
    assert onnx_out == torch_out


def test_onnx_chunked_logits_match_the_whole_utterance(tiny_ctc_dir, tmp_path):
    """transcribe.py's long audio (every backend, here ONNX): overlapping chunks whose overlaps are dropped give one
    frame per frame of the whole utterance, and nearly the same logits (a chunk sees less context near its edges)."""
    from modeling_distilxlsr.inference.backends import load_backend
    from modeling_distilxlsr.inference.transcription import chunked_logits

    model_dir, _ = tiny_ctc_dir
    export_onnx(str(model_dir), str(tmp_path / "onnx"))
    backend = load_backend(str(tmp_path / "onnx"), "onnx-fp32")
    audio = (np.random.default_rng(2).standard_normal(5 * 16000) * 0.1).astype(np.float32)
    whole = chunked_logits(backend, audio, None)
    chunked = chunked_logits(backend, audio, chunk_samples=24000)  # 1.5 s chunks with 0.25 s of overlap each side
    assert chunked.shape == whole.shape == (249, whole.shape[1])
    cosine = (whole.ravel() @ chunked.ravel()) / np.linalg.norm(whole) / np.linalg.norm(chunked)
    assert cosine > 0.999 and (whole.argmax(-1) == chunked.argmax(-1)).mean() > 0.95  # measured: 0.9998, 0.976
    assert not np.allclose(whole, chunked)  # the chunks did run apart


def test_dynamic_quantisation_makes_no_corpus(tiny_ctc_dir, tmp_path):
    """Dynamic int8 needs no data: with an empty cache, `distilxlsr-onnx --quantize dynamic` exports, reports its
    drift on seeded test signals, and builds no corpus (about 100 MB and a minute of CPU)."""
    model_dir, _ = tiny_ctc_dir
    cache = tmp_path / "cache"
    result = run_script(
        [sys.executable, "-m", "modeling_distilxlsr.export.onnx_export", str(model_dir), str(tmp_path / "onnx")]
        + ["--quantize", "dynamic"],
        env_extra={"DISTILXLSR_CACHE": str(cache)},
    )
    assert "model_int8.onnx: cosine to fp32 torch" in result.stdout and "on seeded test signals" in result.stdout
    assert not cache.exists() or not any(cache.iterdir())
