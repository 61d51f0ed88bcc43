"""Transcription with the transformers ASR pipeline (torch) or ONNX Runtime: what `transcribe.py` runs, and what
the benchmarks score models with.

Every file is read and checked on its own before batching (unreadable, empty, NaN, shorter than the CNN's receptive
field), batched by length (`batching.py`), and a batch that fails is retried file by file: each file gets its own
result or its own error, never another file's.
"""

import os

import numpy as np
import torch
from transformers import AutoFeatureExtractor, AutoModelForCTC, AutoTokenizer, Wav2Vec2CTCTokenizer, pipeline

from ..audio.decode import AudioDecodeError, read_for_transcription
from ..audio.sources import list_audio_files
from ..models.audio_format import SAMPLING_RATE
from ..models.configuration_distilxlsr import cnn_receptive_field
from ..models.folder import load_config
from ..models.modeling_distilxlsr import DistilXLSRForCTC
from .batching import length_sorted_batches, memory_budget
from .decoding import has_lm, lm_decoder_or_exit
from .onnx_runtime import onnx_batch_logits, onnx_session


def load_asr_pipeline(model, lm=None, device=None, trust_remote_code=False, use_lm=True):
    """The transformers ASR pipeline for `model`. DistilXLSR folders load with this package's own classes (registered
    with the Auto classes on import), so their Python files are never run; other custom code only with
    `trust_remote_code`. A folder that ships an LM (`lm attach`) decodes with it (beam search); `lm` is an external
    KenLM file instead; `use_lm=False` decodes greedily either way."""

    # Objects rather than the folder's name, with the decoder loaded here: the pipeline would fall back to greedy
    # decoding with only a warning when pyctcdecode is missing, and load a corrupt LM without a clear error.
    tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
    decoder = None
    if use_lm and (lm or has_lm(model)):
        decoder = lm_decoder_or_exit(tokenizer, lm, model)
    return pipeline(
        "automatic-speech-recognition",
        model=AutoModelForCTC.from_pretrained(model, trust_remote_code=trust_remote_code),
        tokenizer=tokenizer,
        feature_extractor=AutoFeatureExtractor.from_pretrained(model, trust_remote_code=trust_remote_code),
        decoder=decoder,
        device=device,
    )


def transcribe(
    asr,
    inputs,
    batch_size=None,
    chunk_length_s=20.0,
    return_timestamps=None,
    decoder_kwargs=None,
    dtype="fp32",
    throughput=None,
):
    """Yields (path, result, None) for every audio file under `inputs`, or (path, None, error) for one that cannot be
    transcribed, in input order. Files are decoded a batch at a time (a folder of long recordings is never all in
    memory), batched by length (`batching.length_sorted_batches`: `batch_size` files, or as many as the memory
    allows when it is None). Each batch is sent to the pipeline as a list, whose results come back as a list of the
    same length; a batch that fails is retried file by file, so one bad file costs only its own result."""

    config = asr.model.config
    min_samples = cnn_receptive_field(config)
    # The pipeline decodes every frame of a padded batch: only our CTC model turns padded frames into blanks, so any
    # other model (a plain Wav2Vec2ForCTC, an export of ours included) runs one file at a time, or a short file's
    # transcript would gain characters made up from the padding.
    batched = isinstance(asr.model, DistilXLSRForCTC)
    options = dict(chunk_length_s=chunk_length_s)
    if return_timestamps:
        options["return_timestamps"] = return_timestamps
    if getattr(asr, "decoder", None) is not None and decoder_kwargs:
        options["decoder_kwargs"] = decoder_kwargs
    chunk_samples = int(chunk_length_s * SAMPLING_RATE) if chunk_length_s else None
    budget = memory_budget(str(asr.device)) if batch_size is None else None
    # bf16 autocast: matmuls and convolutions in bf16, reductions and the CTC decode in fp32.
    bf16 = dtype == "bf16"
    files = list_audio_files(inputs)
    for window, batches in length_sorted_batches(files, batch_size if batched else 1, config, chunk_samples, budget):
        outcomes: dict[str, tuple] = {}
        for group in batches:
            decoded = read_batch(group, min_samples, outcomes)
            options["batch_size"] = max(1, len(decoded)) if batched else 1
            with torch.autocast(asr.device.type, dtype=torch.bfloat16, enabled=bf16):
                for path, result, error in _run_pipeline(asr, decoded, options):
                    outcomes[path] = (result, error)
                    if throughput is not None and result is not None:
                        throughput.add(len(decoded[path]))
        for path in window:
            yield path, *outcomes[path]


def read_batch(paths: list[str], min_samples: int, outcomes: dict) -> dict[str, np.ndarray]:
    """The audio of each file of a batch that can be transcribed; the others get their error in `outcomes`."""
    decoded = {}
    for path in paths:
        try:
            decoded[path] = read_for_transcription(path, min_samples)
        except AudioDecodeError as err:
            outcomes[path] = (None, str(err))
    return decoded


def _run_pipeline(asr, decoded: dict, options: dict):
    paths = list(decoded)
    if not paths:
        return
    try:
        results = asr([{"raw": decoded[p], "sampling_rate": SAMPLING_RATE} for p in paths], **options)
        if len(results) != len(paths):  # never pair a result with the wrong file
            raise RuntimeError(f"the pipeline returned {len(results)} results for {len(paths)} files")
        yield from ((path, result, None) for path, result in zip(paths, results, strict=True))
    except Exception as err:  # isolate the file that fails
        if len(paths) == 1:
            yield paths[0], None, f"inference failed: {type(err).__name__}: {err}"
            return
        for path in paths:
            yield from _run_pipeline(asr, {path: decoded[path]}, options)


def transcribe_onnx(
    model_dir,
    inputs,
    chunk_length_s=20.0,
    decoder=None,
    decoder_kwargs=None,
    onnx_file=None,
    batch_size=None,
    throughput=None,
):
    """The same as `transcribe`, with ONNX Runtime running `onnx_file` (default: model_int8.onnx if present, else
    model.onnx); greedy CTC, or beam search with `decoder` (pyctcdecode)."""

    if onnx_file is None:
        onnx_file = "model_int8.onnx" if os.path.exists(os.path.join(model_dir, "model_int8.onnx")) else "model.onnx"
    session = onnx_session(os.path.join(model_dir, onnx_file))
    tokenizer = Wav2Vec2CTCTokenizer.from_pretrained(model_dir)
    chunk_samples = int(chunk_length_s * SAMPLING_RATE) if chunk_length_s else None
    config = load_config(model_dir)
    min_samples = cnn_receptive_field(config)
    budget = memory_budget() if batch_size is None else None
    for window, batches in length_sorted_batches(list_audio_files(inputs), batch_size, config, chunk_samples, budget):
        outcomes: dict[str, tuple] = {}
        for group in batches:
            decoded = read_batch(group, min_samples, outcomes)
            for path, logits, error in onnx_batch_logits(session, decoded, chunk_samples, config):
                if error is None:
                    try:
                        kwargs = decoder_kwargs or {}
                        text = decoder.decode(logits, **kwargs) if decoder else tokenizer.decode(logits.argmax(-1))
                    except Exception as err:  # one file's failure is that file's result
                        error = f"decoding failed: {type(err).__name__}: {err}"
                outcomes[path] = (None, error) if error else ({"text": text}, None)
                if throughput is not None and error is None:
                    throughput.add(len(decoded[path]))
        for path in window:
            yield path, *outcomes[path]
