"""Forced alignment of known transcripts with a CTC model: word and character times with scores.

    python align.py MODEL_DIR AUDIO "o texto dito" [--chars]             one file (or TEXT as @file.txt)
    python align.py MODEL_DIR --manifest pairs.csv [--output out.jsonl]   path,text rows (a metadata.csv works)

The transcript is normalised as the labels were (numbers spelled out, punctuation dropped: `TextNormalizer`), the
audio decoded as transcribe.py decodes it (any format, long audio in the same chunks), and each word gets the span
of the CTC Viterbi path over its characters (`inference/alignment.py`). One JSON line per file: `words` as the user
wrote them, {text, start, end, score, spoken} (and with --chars, `chars`), `unaligned` (words and characters the model
cannot spell, with why), `match_score` (0 when the text is what the model hears; `mismatch: true` and a line on
stderr under the threshold), `error` when the file or transcript cannot be aligned at all (no speech in the audio,
nothing to align). Usable where whisperX wants a Portuguese alignment model.
"""

import argparse
import json
import sys

from modeling_distilxlsr.audio.sources import ManifestError, list_sources
from modeling_distilxlsr.inference.alignment import MISMATCH_BELOW, align_audio_file
from modeling_distilxlsr.inference.backends import load_backend
from modeling_distilxlsr.inference.transcription import DEFAULT_CHUNK_SECONDS
from modeling_distilxlsr.models.audio_format import SAMPLING_RATE
from modeling_distilxlsr.text.normalizer import TextNormalizer


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="A fine-tuned CTC folder (characters: the BP tokenizer of finetune_ctc.py).")
    parser.add_argument("audio", nargs="?", help="One audio file (with TEXT).")
    parser.add_argument("text", nargs="?", help="Its transcript, or @file.txt.")
    parser.add_argument("--manifest", help="CSV/TSV/JSONL (or an audio folder with metadata.csv): path + text rows.")
    parser.add_argument("--output", help="JSONL file (default: stdout).")
    parser.add_argument("--chars", action="store_true", help="Character times too.")
    parser.add_argument("--backend", default="torch-fp32", help="torch-fp32, torch-bf16, onnx-fp32, onnx-int8.")
    parser.add_argument("--chunk_length_s", type=float, default=DEFAULT_CHUNK_SECONDS)
    return parser


def pairs(args, parser) -> list[tuple[str, str]]:
    if args.manifest:
        try:
            return [(source, text or "") for source, text, _ in list_sources(args.manifest)]
        except ManifestError as err:
            parser.error(str(err))
    if args.audio is None or args.text is None:  # "" is a transcript (one with nothing to align), not a missing one
        parser.error("give AUDIO and TEXT, or --manifest")
    text = args.text
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as err:
            parser.error(f"cannot read the transcript {text[1:]!r}: {err}")
    return [(args.audio, text)]


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    items = pairs(args, parser)
    try:
        backend = load_backend(args.model, args.backend)
    except (OSError, ValueError, KeyError) as err:
        raise SystemExit(f"error: cannot load {args.model!r} for {args.backend}: {err}") from err
    normalizer, chunk = TextNormalizer(), int(args.chunk_length_s * SAMPLING_RATE) if args.chunk_length_s else None
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    failed = unaligned = mismatched = 0
    for path, text in items:
        row = align_audio_file(backend, normalizer, path, text, chunk, args.chars)
        failed += "error" in row
        unaligned += len(row.get("unaligned", []))
        if row.get("mismatch"):
            mismatched += 1
            print(f"{path}: match score {row['match_score']}: the text is probably not what is said", file=sys.stderr)
        if "error" in row:
            print(f"{path}: {row['error']}", file=sys.stderr)
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
    if args.output:
        out.close()
    print(
        f"aligned {len(items) - failed} of {len(items)} files ({mismatched} probably against the wrong text: "
        f"match score under {MISMATCH_BELOW}); {unaligned} word(s) or character(s) left unaligned",
        file=sys.stderr,
    )
    return 1 if items and failed == len(items) else 0


def cli() -> None:
    """`distilxlsr-align` and `python align.py`."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
