"""benchmarks/whisper_ggml.py: the whisper.cpp file peers.py times whisper.cpp with. Read back here with a reader of
the same format, checked against the tensor names and types whisper.cpp's loader asks for (and, where pywhispercpp
is installed, loaded and run by whisper.cpp itself)."""

import re
import struct

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration

from benchmarks.whisper_ggml import GGML_MAGIC, Q8_BLOCK, quantize_q8_0, write_ggml

TYPE_NAMES = {0: "f32", 1: "f16", 8: "q8_0"}
ENCODER_BLOCK = ["attn_ln.weight", "attn_ln.bias", "attn.query.weight", "attn.query.bias", "attn.key.weight",
                 "attn.value.weight", "attn.value.bias", "attn.out.weight", "attn.out.bias", "mlp_ln.weight",
                 "mlp_ln.bias", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"]  # fmt: skip
CROSS = ["cross_attn_ln.weight", "cross_attn_ln.bias", "cross_attn.query.weight", "cross_attn.query.bias",
         "cross_attn.key.weight", "cross_attn.value.weight", "cross_attn.value.bias", "cross_attn.out.weight",
         "cross_attn.out.bias"]  # fmt: skip


def tiny_whisper(layers: int = 2) -> WhisperForConditionalGeneration:
    config = WhisperConfig(
        vocab_size=51865, num_mel_bins=80, d_model=64, encoder_layers=layers, decoder_layers=layers,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=256, decoder_ffn_dim=256,
        max_source_positions=1500, max_target_positions=448, decoder_start_token_id=50258, pad_token_id=50257,
        bos_token_id=50257, eos_token_id=50257,
    )  # fmt: skip
    torch.manual_seed(0)
    return WhisperForConditionalGeneration(config).eval()


def read_ggml(path: str) -> tuple[tuple, np.ndarray, int, dict]:
    with open(path, "rb") as f:
        data = f.read()
    (magic,), at = struct.unpack_from("<i", data), 4
    assert magic == GGML_MAGIC
    hparams, at = struct.unpack_from("<11i", data, at), at + 44
    n_mel, n_fft = struct.unpack_from("<2i", data, at)
    filters = np.frombuffer(data, "<f4", n_mel * n_fft, at + 8).reshape(n_mel, n_fft)
    at += 8 + 4 * n_mel * n_fft
    (tokens,), at = struct.unpack_from("<i", data, at), at + 4
    for _ in range(tokens):
        (length,) = struct.unpack_from("<i", data, at)
        at += 4 + length
    tensors = {}
    while at < len(data):
        dims, name_length, kind = struct.unpack_from("<3i", data, at)
        shape = struct.unpack_from(f"<{dims}i", data, at + 12)
        at += 12 + 4 * dims
        name = data[at : at + name_length].decode()
        at += name_length
        count = int(np.prod(shape))
        size = {0: 4 * count, 1: 2 * count, 8: count // Q8_BLOCK * (2 + Q8_BLOCK)}[kind]
        tensors[name] = (TYPE_NAMES[kind], shape)
        at += size
    assert at == len(data)
    return hparams, filters, tokens, tensors


@pytest.mark.parametrize("weight_type", ["f16", "q8_0"])
def test_a_whisper_checkpoint_becomes_every_tensor_whisper_cpp_loads_with_its_type(tmp_path, weight_type):
    model = tiny_whisper()
    hparams, filters, tokens, tensors = read_ggml(write_ggml(model, str(tmp_path / "m.bin"), weight_type))

    assert hparams[:10] == (51865, 1500, 64, 2, 2, 448, 64, 2, 2, 80)
    assert hparams[10] == (1 if weight_type == "f16" else 2007)  # mostly-q8_0 with ggml's quantisation version 2
    assert filters.shape == (80, 201) and filters.max() > 0
    assert tokens == 50257  # the text tokens; whisper.cpp names the special and timestamp ids itself
    expected = {"encoder.conv1.weight", "encoder.conv1.bias", "encoder.conv2.weight", "encoder.conv2.bias",
                "encoder.positional_embedding", "encoder.ln_post.weight", "encoder.ln_post.bias",
                "decoder.positional_embedding", "decoder.token_embedding.weight", "decoder.ln.weight",
                "decoder.ln.bias"}  # fmt: skip
    expected |= {f"encoder.blocks.{i}.{n}" for i in range(2) for n in ENCODER_BLOCK}
    expected |= {f"decoder.blocks.{i}.{n}" for i in range(2) for n in ENCODER_BLOCK + CROSS}
    assert set(tensors) == expected
    matrix = "f16" if weight_type == "f16" else "q8_0"
    assert tensors["encoder.conv1.weight"] == ("f16", (3, 80, 64))  # ggml order: innermost dimension first
    assert tensors["encoder.conv1.bias"] == ("f32", (1, 64))
    assert tensors["encoder.positional_embedding"] == ("f32", (64, 1500))
    assert tensors["decoder.token_embedding.weight"] == (matrix, (64, 51865))
    assert tensors["decoder.blocks.1.cross_attn.key.weight"] == (matrix, (64, 64))
    assert tensors["decoder.blocks.1.mlp.0.bias"] == ("f32", (256,))


def test_q8_0_blocks_give_back_every_weight_within_half_a_step_of_its_block():
    weights = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    weights[0, :Q8_BLOCK] = 0  # an all-zero block has scale 0, not a division by zero
    blocks = np.frombuffer(quantize_q8_0(weights), dtype=[("d", "<f2"), ("qs", "i1", Q8_BLOCK)])
    scale = blocks["d"].astype(np.float32)[:, None]
    restored = (blocks["qs"].astype(np.float32) * scale).reshape(weights.shape)

    assert len(blocks) == weights.size // Q8_BLOCK
    step = np.repeat(scale[:, 0], Q8_BLOCK).reshape(weights.shape)
    assert np.all(np.abs(restored - weights) <= step / 2 + 1e-3 * np.abs(weights) + 1e-7)
    assert np.all(restored[0, :Q8_BLOCK] == 0)


@pytest.mark.parametrize("weight_type", ["f16", "q8_0"])
def test_whisper_cpp_loads_the_file_and_decodes_the_tokens_it_is_asked_for(tmp_path, weight_type):
    model_class = pytest.importorskip("pywhispercpp.model", reason="pywhispercpp: benchmarks/requirements-peers.txt")
    model = tiny_whisper(layers=4)  # whisper.cpp sizes its buffers by model type, known by the encoder's depth
    with torch.no_grad():  # as peers.py does: end-of-text's logit 0, so the random model cannot stop early
        model.model.decoder.embed_tokens.weight[50257] = 0
    path = write_ggml(model, str(tmp_path / "m.bin"), weight_type)
    params = dict(language="pt", no_timestamps=True, max_tokens=12, temperature_inc=0.0, suppress_blank=True)
    whisper = model_class.Model(path, redirect_whispercpp_logs_to=None, n_threads=1, print_progress=False, **params)
    audio = (np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32)
    text = "".join(segment.text for segment in whisper.transcribe(audio))

    assert len(re.findall(r"<\d+>| ", text)) >= 11  # text tokens written as "<i>" (and " ")
