"""One object per inference path: torch fp32 and bf16 autocast (eager), ONNX Runtime fp32 and int8. Each turns a
list of waveforms into the CTC logits of each one's real frames, one padded batch at a time, the same way: so that
`--backend auto` times exactly what the run then executes, and `transcription.transcribe` needs no branch per path.

    backend = load_backend(model_dir, "onnx-int8")
    logits = backend.logits([wave_a, wave_b])   # [frames_a x vocab, frames_b x vocab], float32 numpy
"""

import math
import os

import numpy as np
import torch
from transformers import AutoModelForCTC, AutoTokenizer

from ..audio.decode import normalize
from ..models.audio_format import SAMPLING_RATE, default_feature_extractor
from ..models.configuration_distilxlsr import cnn_output_frames, cnn_receptive_field
from ..models.folder import ONNX_FILES, WEIGHTS_FILE, load_config
from ..models.modeling_distilxlsr import DistilXLSRForCTC
from .cpu_features import native_bf16
from .onnx_runtime import onnx_available, onnx_session, run_onnx

# (runtime, dtype) of every path; the first is the reference the others are compared with.
BACKENDS = {
    "torch-fp32": ("torch", "fp32"),
    "torch-bf16": ("torch", "bf16"),
    "onnx-fp32": ("onnx", "fp32"),
    "onnx-int8": ("onnx", "int8"),
}
REFERENCE = "torch-fp32"


def backend_name(runtime: str, dtype: str | None) -> str:
    """`runtime` + `dtype` as a path name, as `--backend`/`--dtype` name it: "auto" with a dtype is that dtype's
    runtime (int8 is ONNX's, the others torch's); ONNX without a dtype is "onnx", which `load_backend` resolves to the
    folder's int8 graph if it has one, else fp32; torch without one is fp32."""
    if runtime == "auto":
        runtime = "onnx" if dtype == "int8" else "torch"
    if runtime == "onnx" and not dtype:
        return "onnx"
    return f"{runtime}-{dtype or 'fp32'}"


class Backend:
    """A loaded inference path. `logits(waves)` normalises each wave (as the feature extractor does), pads the batch
    with an attention mask, runs it, and returns each wave's logits cut to the frames its own samples make;
    `batchable` is False for models whose padded frames leak into real ones (only ours blank them), which then run
    one file at a time."""

    name: str
    config = None
    tokenizer = None
    batchable: bool = True

    def _run(self, waves: list[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def logits(self, waves: list[np.ndarray]) -> list[np.ndarray]:
        batch = self._run([normalize(wave) for wave in waves])
        return [item[: cnn_output_frames(self.config, len(wave))] for item, wave in zip(batch, waves, strict=True)]

    @property
    def min_samples(self) -> int:
        """The shortest input that yields a frame (the CNN's receptive field)."""
        return cnn_receptive_field(self.config)

    @property
    def frame_seconds(self) -> float:
        """Seconds between two logit frames (20 ms for wav2vec2's CNN)."""
        return math.prod(self.config.conv_stride) / SAMPLING_RATE


def check_ctc_tokenizer(tokenizer, config, model_dir: str) -> None:
    """Raises `ValueError` when the folder's tokenizer cannot decode the model's CTC output: its pad token is the CTC
    blank, so it must be a token of the vocabulary file, with the id the model blanks with (`pad_token_id`), and the
    vocabulary must fit the logits. A tokenizer without one quietly invents `<pad>` past the end of the vocabulary,
    and every transcript is then letters and `[UNK]`s between blanks that are never removed."""
    vocab = getattr(tokenizer, "encoder", None) or tokenizer.get_vocab()
    pad = tokenizer.pad_token
    if pad is None or pad not in vocab:
        raise ValueError(
            f"{model_dir}: the tokenizer's pad token (the CTC blank) {pad!r} is not in its vocabulary (vocab.json): "
            f'add it (e.g. "[PAD]": {config.pad_token_id}) and name it as pad_token in tokenizer_config.json.'
        )
    if config.pad_token_id is not None and vocab[pad] != config.pad_token_id:
        raise ValueError(
            f"{model_dir}: the tokenizer's pad token {pad!r} has id {vocab[pad]}, but the model's CTC blank "
            f"(config pad_token_id) is {config.pad_token_id}."
        )
    vocab_size = getattr(config, "vocab_size", None)
    if vocab_size is not None and max(vocab.values()) >= vocab_size:
        raise ValueError(
            f"{model_dir}: the tokenizer has ids up to {max(vocab.values())}, the model only {vocab_size} outputs."
        )


class TorchBackend(Backend):
    """The model's own torch forward, in fp32 or under bf16 autocast (matmuls and convolutions in bf16, reductions in
    fp32). DistilXLSR folders load with this package's classes, other custom code only with `trust_remote_code`."""

    def __init__(self, model_dir: str, dtype: str = "fp32", device: str = "cpu", trust_remote_code: bool = False):
        self.name = backend_name("torch", dtype)
        self.device, self.bf16 = torch.device(device), dtype == "bf16"
        # float32 weights whatever the checkpoint stores (transformers 5 would keep fp16 weights fp16): bf16 is autocast
        model = AutoModelForCTC.from_pretrained(model_dir, trust_remote_code=trust_remote_code, dtype=torch.float32)
        self.model = model.to(self.device).eval()
        self.config = self.model.config
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        check_ctc_tokenizer(self.tokenizer, self.config, model_dir)
        self.batchable = isinstance(self.model, DistilXLSRForCTC)
        self.feature_extractor = default_feature_extractor()

    def _run(self, waves: list[np.ndarray]) -> np.ndarray:
        batch = self.feature_extractor.pad(
            {"input_values": waves}, padding=True, return_attention_mask=True, return_tensors="pt"
        )
        with torch.no_grad(), torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
            logits = self.model(
                batch["input_values"].to(self.device), attention_mask=batch["attention_mask"].to(self.device)
            ).logits
        return logits.float().cpu().numpy()


class OnnxBackend(Backend):
    """An ONNX Runtime session over the folder's `model.onnx` (fp32) or `model_int8.onnx` (int8), as
    `export.onnx_export` writes them (dynamic batch and length, attention mask)."""

    def __init__(self, model_dir: str, dtype: str | None = None, trust_remote_code: bool = False):
        if dtype is None:  # the folder's int8 graph when it has one
            dtype = "int8" if os.path.exists(os.path.join(model_dir, ONNX_FILES["int8"])) else "fp32"
        self.name = backend_name("onnx", dtype)
        graph = os.path.join(model_dir, ONNX_FILES[dtype])
        if not os.path.exists(graph):
            raise FileNotFoundError(f"no {graph}: export it with `distilxlsr-onnx {model_dir} {model_dir}`")
        self.session = onnx_session(graph)
        self.config = load_config(model_dir)
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        check_ctc_tokenizer(self.tokenizer, self.config, model_dir)

    def _run(self, waves: list[np.ndarray]) -> np.ndarray:
        return run_onnx(self.session, waves)


def load_backend(model_dir: str, name: str, device: str = "cpu", trust_remote_code: bool = False) -> Backend:
    """The path `name` ("torch-fp32", "torch-bf16", "onnx-fp32", "onnx-int8"; "onnx" alone: the folder's int8 graph
    if present, else fp32) for the model folder."""
    if name == "onnx":
        return OnnxBackend(model_dir, None, trust_remote_code)
    runtime, dtype = BACKENDS[name]
    if runtime == "torch":
        return TorchBackend(model_dir, dtype, device, trust_remote_code)
    return OnnxBackend(model_dir, dtype, trust_remote_code)


def candidate_backends(model_dir: str, device: str = "cpu", flags: set[str] | None = None) -> list[str]:
    """The paths this folder and this machine offer: torch needs the safetensors weights, bf16 a CPU (or GPU) that
    runs it natively, ONNX the graphs `export.onnx_export` writes (into the model folder itself, for auto) and
    onnxruntime."""
    candidates = []
    if os.path.exists(os.path.join(model_dir, WEIGHTS_FILE)):
        candidates.append("torch-fp32")
        if device.startswith("cuda") or native_bf16(flags):
            candidates.append("torch-bf16")
    if device == "cpu" and onnx_available():
        candidates += [f"onnx-{d}" for d, name in ONNX_FILES.items() if os.path.exists(os.path.join(model_dir, name))]
    return candidates
