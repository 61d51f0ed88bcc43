"""CTC decoding with an n-gram LM at inference: the pyctcdecode decoder a folder ships (`language_model/`) or one built
over an external KenLM file. Building, attaching and tuning LMs is `modeling_distilxlsr.lm`'s work; this is what
transcription needs of it."""

import os

LM_INFO_FILE = "lm_info.json"


class LanguageModelError(ValueError):
    pass


def ctc_labels(tokenizer) -> list[str]:
    """pyctcdecode's alphabet for a character CTC tokenizer: ids in order, the pad token (our CTC blank) as "", the
    word delimiter as " "."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    return [
        " " if token == tokenizer.word_delimiter_token else "" if token == tokenizer.pad_token else token
        for token, _ in vocab
    ]


def _loading(path: str, load):
    """Runs `load` (which reads the KenLM file at `path`), turning a missing or corrupt file into a clear error at
    load time rather than a crash at decode time."""
    if not os.path.isfile(path):
        raise LanguageModelError(f"No KenLM model at {path}.")
    try:
        return load()
    except (OSError, RuntimeError, ValueError) as err:
        raise LanguageModelError(f"{path} is not a valid KenLM model (ARPA or binary): {err}") from err


def build_decoder(tokenizer, lm_path: str, unigrams: list[str] | None = None, alpha: float = 0.5, beta: float = 1.0):
    """A pyctcdecode beam-search decoder over the tokenizer's characters with the KenLM model at `lm_path`."""
    from pyctcdecode import build_ctcdecoder  # lazy: optional dependency

    labels = ctc_labels(tokenizer)
    return _loading(
        lm_path,
        lambda: build_ctcdecoder(labels, kenlm_model_path=lm_path, unigrams=unigrams, alpha=alpha, beta=beta),
    )


def has_lm(model_dir: str) -> bool:
    return os.path.isdir(os.path.join(str(model_dir), "language_model"))


def load_folder_decoder(model_dir: str):
    """The pyctcdecode decoder an ASR folder ships (`language_model/` + `alphabet.json`)."""
    from pyctcdecode import BeamSearchDecoderCTC  # lazy: optional dependency

    folder = os.path.join(model_dir, "language_model")
    models = [os.path.join(folder, n) for n in sorted(os.listdir(folder)) if n.endswith((".arpa", ".bin"))]
    if not models:
        raise LanguageModelError(f"{folder} holds no KenLM model (.arpa or .bin).")
    return _loading(models[0], lambda: BeamSearchDecoderCTC.load_from_dir(model_dir))


DEFAULT_BEAM_WIDTH = 32


def lm_decoder_or_exit(tokenizer=None, lm_path: str | None = None, model_dir: str | None = None):
    """The beam-search decoder for an external KenLM file (`--lm`) or the one a folder ships, or a clear exit."""
    try:
        import kenlm  # noqa: F401
        import pyctcdecode  # noqa: F401
    except ImportError as err:
        raise SystemExit(
            f"LM decoding needs pyctcdecode and kenlm ({err}): `bash install.sh`, or `pip install --no-deps "
            "-r requirements-lm.txt`. --no_lm decodes greedily."
        ) from err
    try:
        return build_decoder(tokenizer, lm_path) if lm_path else load_folder_decoder(model_dir)
    except LanguageModelError as err:
        raise SystemExit(f"error: {err}") from err
