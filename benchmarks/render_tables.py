"""benchmarks/README.md's tables from the raw files in benchmarks/results/, so that a table can never drift from its
figures: each table sits between `<!-- table: results/NAME.json -->` and `<!-- /table -->`, and this script rewrites
what is between them from the file (`--check`: exit 1, naming the tables that differ, instead of writing).

    python benchmarks/render_tables.py [--check]

A results file is rendered by the renderer its name starts with (`RENDERERS`); tables written before this script
are still hand-written (their raw files are linked in the text).
"""

import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(HERE, "README.md")
BLOCK = re.compile(r"(<!-- table: (?P<name>[^ ]+) -->\n)(?P<body>.*?)(<!-- /table -->)", re.S)
SILENCE_MODES = (("before", "before (whole files, words ended by the delimiter only)"), ("whole", "`--no_vad`"),
                 ("regions", "speech regions (default)"))  # fmt: skip


def _row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def silence_table(report: dict) -> str:
    """CER/WER by condition and mode, then what the long file's words and cues do at its pauses."""
    floor = "digital silence" if report.get("floor_db") is None else f"a {report['floor_db']:g} dBFS noise floor"
    lines = [
        f"{report['clips']} test clips, padding and pauses of {floor}; CPU: {report['cpu']}.",
        "",
        _row(["CER / WER", "trimmed clips", "1 s before + 2 s after", f"one {report['long_file_seconds']:g} s file"]),
        _row(["---"] * 4),
    ]
    for mode, label in SILENCE_MODES:
        cells = [f"{report[f'{mode}/{c}']['cer']:.3f} / {report[f'{mode}/{c}']['wer']:.3f}"
                 for c in ("trimmed", "padded_1s_2s", "long_file")]  # fmt: skip
        lines.append(_row([label, *cells]))
    checks = ("words_across_0.3s_pause", "cues_across_0.5s_pause", "cues_under_min", "lines_over_42", "cues_over_7s")
    lines += ["", _row(["on the long file", "words", *checks, "cues"]), _row(["---"] * (len(checks) + 3))]
    for mode, label in SILENCE_MODES:
        long_file = report[f"{mode}/long_file"]
        lines.append(_row([label, long_file["words"], *(long_file[c] for c in checks), long_file["cues"]]))
    seconds = {mode: report[f"{mode}/long_file"]["seconds"] for mode, _ in SILENCE_MODES}
    padded = {mode: report[f"{mode}/padded_1s_2s"]["seconds"] for mode, _ in SILENCE_MODES}
    lines += [
        "",
        f"Seconds (one run): the long file {seconds['whole']} whole, {seconds['regions']} by regions, of which "
        f"finding the regions {report['vad_seconds_long_file']}; the padded clips {padded['whole']} whole, "
        f"{padded['regions']} by regions, finding them {report['vad_seconds_padded_clips']}.",
    ]
    return "\n".join(lines) + "\n"


def mismatch_table(reports: list[dict]) -> str:
    """One row per model: AUROC of right vs shuffled transcripts, and what the threshold marks."""
    lines = [
        _row(
            [
                "model",
                "clips",
                "AUROC right vs shuffled",
                "median score right / shuffled",
                "lowest right",
                "highest shuffled",
                "marked: right / shuffled",
            ]
        ),  # fmt: skip
        _row(["---"] * 7),
    ]
    for r in reports:
        lines.append(_row([r["model"], r["clips"], f"{r['auroc']:.3f}", f"{r['right_median']} / {r['wrong_median']}",
                           r["right_min"], r["wrong_max"],
                           f"{r['right_marked']:.0%} / {r['wrong_marked']:.0%} (under {r['threshold']})"]))  # fmt: skip
    return "\n".join(lines) + f"\n\nCPU: {reports[0]['cpu']}.\n"


def mismatch_tables(report) -> str:
    return mismatch_table(report if isinstance(report, list) else [report])


def confidence_table(r: dict) -> str:
    """Raw against calibrated confidences on the test split's three conditions, and the targets."""

    def shown(value):
        return "n/a" if value is None else f"{value:.3f}"

    lines = [
        f"{r['clips']} test clips per condition; test CER clean {r['cer']['clean']:.3f}, corrupted "
        f"{r['cer']['corrupted']:.3f}, foreign-accented {r['cer']['foreign']:.3f}; {r['words']} words; "
        f"{r['utterances_apart']['understood']} utterances with CER <= 0.2 and {r['utterances_apart']['not']} with "
        f"CER >= 0.5. CPU: {r['cpu']}.",
        "",
        _row(["", "raw (mean probability of the word's frames)", "calibrated", "target"]),
        _row(["---"] * 4),
        _row(
            [
                "transcript score, AUROC CER <= 0.2 vs >= 0.5",
                shown(r["transcript_auroc_raw_mean_confidence"]),
                shown(r["transcript_auroc"]),
                ">= 0.90",
            ]
        ),  # fmt: skip
        _row(["word confidence, AUROC right vs wrong", shown(r["word_auroc_raw"]), shown(r["word_auroc"]), ">= 0.85"]),
        _row(
            [
                "expected calibration error, clean (in-domain)",
                shown(r["ece_clean_raw"]),
                shown(r["ece_clean"]),
                "<= 0.05",
            ]
        ),  # fmt: skip
        _row(["expected calibration error, all three", shown(r["ece_all_raw"]), shown(r["ece_all"]), ""]),
        "",
        "Transcripts marked not understood (score under 0.5): "
        + ", ".join(f"{name} {share:.0%}" for name, share in r["flagged_not_understood"].items())
        + ".",
    ]
    return "\n".join(lines) + "\n"


RENDERERS = {"silence": silence_table, "alignment_mismatch": mismatch_tables, "confidence": confidence_table}


def render(name: str) -> str:
    """The table of `results/NAME.json` (`name` as the README's marker gives it)."""
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        report = json.load(f)
    stem = os.path.basename(name).removesuffix(".json")
    for prefix, renderer in RENDERERS.items():
        if stem.startswith(prefix):
            return renderer(report)
    raise SystemExit(f"error: no renderer for {name} (RENDERERS: {', '.join(RENDERERS)})")


def rendered_readme(text: str) -> tuple[str, list[str]]:
    """README text with every marked table rendered, and the names of those that changed."""
    changed = []

    def replace(match):
        body = render(match["name"])
        if body != match["body"]:
            changed.append(match["name"])
        return match[1] + body + match[4]

    return BLOCK.sub(replace, text), changed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="Exit 1 if a table differs from its file.")
    args = parser.parse_args(argv)
    with open(README, encoding="utf-8") as f:
        text, changed = rendered_readme(f.read())
    if args.check:
        if changed:
            print(f"tables that differ from their results: {', '.join(changed)}", file=sys.stderr)
        return 1 if changed else 0
    with open(README, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"rendered; changed: {', '.join(changed) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
