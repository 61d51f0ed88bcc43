"""The project's cache folder: the synthetic corpus, the audio header cache and the `--backend auto` choices."""

import os


def cache_dir() -> str:
    """`$DISTILXLSR_CACHE`, defaulting to ~/.cache/distilxlsr: the corpus and the `--backend auto` choices."""
    return os.environ.get("DISTILXLSR_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "distilxlsr"))
