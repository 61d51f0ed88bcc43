"""A transformers Whisper checkpoint written as a whisper.cpp model file (ggml, f16 or q8_0), for `peers.py`.

Written here, not taken from a library, because nothing installable here converts one: pywhispercpp ships no converter,
and whisper.cpp's own `convert-h5-to-ggml.py` needs a whisper.cpp checkout and openai-whisper's `mel_filters.npz`
(no Hub or GitHub here). The format is small: a header of hyper-parameters, the 80-bin mel filterbank (librosa's
slaney mel filters at 16 kHz, n_fft 400: what that .npz holds), the token strings, then each tensor under its
openai-whisper name, typed as whisper.cpp's loader expects (matrices in the weight type; biases, norms, positional
embeddings and the conv biases in f32; the two convolutions in f16). q8_0 is ggml's block format (32 weights, one f16
scale, round to nearest), what whisper.cpp's `quantize` tool writes for q8_0; only 2-D matrices are quantised, as
there.
"""

import struct

import numpy as np

GGML_MAGIC = 0x67676D6C
GGML_QNT_VERSION, GGML_QNT_VERSION_FACTOR = 2, 1000
GGML_TYPE = {"f32": 0, "f16": 1, "q8_0": 8}
FILE_TYPE = {"f16": 1, "q8_0": 7}  # ggml_ftype: mostly f16 / mostly q8_0
Q8_BLOCK = 32
BLANK_TOKEN = 220
KEEP_F32 = {"encoder.conv1.bias", "encoder.conv2.bias", "encoder.positional_embedding", "decoder.positional_embedding"}
# transformers' Whisper parameter names -> openai-whisper's (whisper.cpp loads the latter)
RENAMES = (
    ("model.", ""),
    (".layers.", ".blocks."),
    ("self_attn.k_proj", "attn.key"),
    ("self_attn.q_proj", "attn.query"),
    ("self_attn.v_proj", "attn.value"),
    ("self_attn.out_proj", "attn.out"),
    ("self_attn_layer_norm", "attn_ln"),
    ("encoder_attn.k_proj", "cross_attn.key"),
    ("encoder_attn.q_proj", "cross_attn.query"),
    ("encoder_attn.v_proj", "cross_attn.value"),
    ("encoder_attn.out_proj", "cross_attn.out"),
    ("encoder_attn_layer_norm", "cross_attn_ln"),
    ("fc1", "mlp.0"),
    ("fc2", "mlp.2"),
    ("final_layer_norm", "mlp_ln"),
    ("encoder.layer_norm", "encoder.ln_post"),
    ("decoder.layer_norm", "decoder.ln"),
    ("encoder.embed_positions.weight", "encoder.positional_embedding"),
    ("decoder.embed_positions.weight", "decoder.positional_embedding"),
    ("decoder.embed_tokens", "decoder.token_embedding"),
)


def openai_name(name: str) -> str:
    for old, new in RENAMES:
        name = name.replace(old, new)
    return name


def quantize_q8_0(matrix: np.ndarray) -> bytes:
    """Rows of blocks of 32: an f16 scale (max |w| / 127) then 32 int8 weights (round to nearest)."""
    blocks = matrix.astype(np.float32).reshape(-1, Q8_BLOCK)
    scale = np.abs(blocks).max(axis=1, keepdims=True) / 127.0
    quants = np.round(np.divide(blocks, scale, out=np.zeros_like(blocks), where=scale > 0)).astype(np.int8)
    out = np.empty(len(blocks), dtype=[("d", "<f2"), ("qs", "i1", Q8_BLOCK)])
    out["d"], out["qs"] = scale[:, 0].astype(np.float16), quants
    return out.tobytes()


def tensor_bytes(name: str, data: np.ndarray, weight_type: str) -> tuple[np.ndarray, str, bytes]:
    if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
        data = data.reshape(-1, 1)
    if data.ndim < 2 or name in KEEP_F32:
        return data, "f32", data.astype("<f4").tobytes()
    if data.ndim == 3 or weight_type == "f16":  # the convolutions stay f16 in a quantised model too
        return data, "f16", data.astype("<f2").tobytes()
    return data, "q8_0", quantize_q8_0(data)


def write_ggml(model, out_path: str, weight_type: str = "f16") -> str:
    """Writes `model` (a transformers `WhisperForConditionalGeneration`) to `out_path` in whisper.cpp's format.
    Tokens: whisper.cpp reads the text tokens from the file and names the special and timestamp ids itself (a
    multilingual model: 51,865 ids), so only the first `eos_token_id` ids are written: "<i>" for id i, and " " for
    id 220 as in whisper's vocabulary."""
    import librosa

    if weight_type not in FILE_TYPE:
        raise ValueError(f"weight_type must be one of {sorted(FILE_TYPE)}, got {weight_type!r}")
    config = model.config
    for side in ("encoder", "decoder"):  # whisper.cpp has no field for it: it takes 4 x d_model
        if getattr(config, f"{side}_ffn_dim") != 4 * config.d_model:
            raise ValueError(f"whisper.cpp needs {side}_ffn_dim = 4 x d_model ({4 * config.d_model})")
    text_tokens = config.eos_token_id  # <|endoftext|> is the first special id
    filters = librosa.filters.mel(sr=16000, n_fft=400, n_mels=config.num_mel_bins).astype("<f4")
    file_type = FILE_TYPE[weight_type] + (GGML_QNT_VERSION_FACTOR * GGML_QNT_VERSION if weight_type != "f16" else 0)
    with open(out_path, "wb") as f:
        f.write(struct.pack("<i", GGML_MAGIC))
        hparams = (
            config.vocab_size, config.max_source_positions, config.d_model, config.encoder_attention_heads,
            config.encoder_layers, config.max_target_positions, config.d_model, config.decoder_attention_heads,
            config.decoder_layers, config.num_mel_bins, file_type,
        )  # fmt: skip
        f.write(struct.pack("<11i", *hparams))
        f.write(struct.pack("<2i", *filters.shape))
        f.write(filters.tobytes())
        f.write(struct.pack("<i", text_tokens))
        for i in range(text_tokens):  # whisper.cpp looks " " up (suppress_blank): whisper's id for it, 220
            token = b" " if i == BLANK_TOKEN else f"<{i}>".encode()
            f.write(struct.pack("<i", len(token)) + token)
        for name, tensor in model.state_dict().items():
            if name == "proj_out.weight":  # tied to the token embedding; whisper.cpp has no such tensor
                continue
            name = openai_name(name)
            data, kind, payload = tensor_bytes(name, tensor.detach().float().numpy(), weight_type)
            encoded = name.encode()
            f.write(struct.pack("<3i", data.ndim, len(encoded), GGML_TYPE[kind]))
            f.write(struct.pack(f"<{data.ndim}i", *reversed(data.shape)))
            f.write(encoded)
            f.write(payload)
    return out_path
