"""benchmarks/README.md's tables from the raw files in benchmarks/results/, so that a table can never drift from its
figures: each table sits between `<!-- table: results/NAME.json -->` and `<!-- /table -->`, and this script rewrites
what is between them from the file (`--check`: exit 1, naming the tables that differ, instead of writing).

    python benchmarks/render_tables.py [--check]

A results file is rendered by the renderer its name starts with (`RENDERERS`); the scripts that write those files
print their tables with the same renderers. Tables whose raw figures were never kept as one file (older GPU and
engine comparisons: their raw folders are linked in the text) stay as they were measured.
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
    check = r.get("lexicon_check")
    if check:  # the same fit with a word list that never read the corpus in place of the shipped lexicon
        lines += ["", f"With `{check['words_file']}` ({check['words']} words, no ranks) as the lexicon instead: "
                      f"word AUROC {shown(check['word_auroc'])}, expected calibration error clean "
                      f"{shown(check['ece_clean'])}."]  # fmt: skip
    return "\n".join(lines) + "\n"


def minilab_table(report: dict) -> str:
    """The mini-lab's rows (test/dev CER and WER, size, steps, wall time), then each distillation's held-out loss."""
    lines = [
        _row(["model", "test CER", "test WER", "dev CER", "params", "layers", "fine-tune steps", "wall time (s)"]),
        _row(["---"] * 8),
    ]
    for r in report["rows"]:
        scores = (f"{r[k]:.3f}" for k in ("test_cer", "test_wer", "dev_cer"))
        lines.append(_row([r["model"], *scores, f"{r['params'] / 1e6:.2f}M", r["hidden_layers"], r["steps"],
                           f"{r['stage_seconds']:.0f}"]))  # fmt: skip
    lines.append("")
    for name, result in report["distillation"].items():
        final = result["final_eval"]
        lines.append(
            f"Distillation ({name}): {result['steps']} steps, {result['audio_hours']:.2f} h of audio, held-out loss "
            f"{result['initial_eval']['eval/loss']:.3f} -> {final['eval/loss']:.3f}; cosine: "
            + ", ".join(f"{k.split('_')[-1]}: {v:.3f}" for k, v in final.items() if "cosine" in k)
        )
    return "\n".join(lines) + "\n"


def corrupted_mean(by_condition: dict) -> float:
    """Mean CER over every condition but the clean one."""
    values = [r["cer"] for name, r in by_condition.items() if name != "clean"]
    return sum(values) / len(values)


def robustness_table(report: dict) -> str:
    """CER per model: clean, each noise level (its noise types averaged), reverb, telephone, low-pass, the mean."""
    levels = sorted({c.rsplit("_", 1)[1] for c in report["conditions"] if c.endswith("dB")}, key=lambda v: -int(v[:-2]))
    others = [c for c in report["conditions"] if c != "clean" and not c.endswith("dB")]
    columns = ["clean", *(f"noise {level[:-2]} dB" for level in levels), *others, "corrupted mean"]
    lines = [_row(["model", *columns]), _row(["---"] * (len(columns) + 1))]
    for model, by_condition in report["results"].items():
        cells = [by_condition["clean"]["cer"]]
        for level in levels:
            noisy = [r["cer"] for c, r in by_condition.items() if c.endswith(f"_{level}")]
            cells.append(sum(noisy) / len(noisy))
        cells += [by_condition[c]["cer"] for c in others]
        cells.append(corrupted_mean(by_condition))
        lines.append(_row([model, *(f"{c:.3f}" for c in cells)]))
    return "\n".join(lines) + "\n"


def lm_decoding_table(report: dict) -> str:
    """Greedy against LM WER/CER and real-time factors per model and LM text."""
    lines = [
        _row(
            [
                "model",
                "LM text",
                "LM sentences",
                "greedy WER",
                "LM WER",
                "WER change",
                "greedy CER",
                "LM CER",
                "RTF greedy",
                "RTF LM",
                "RTF ratio",
            ]
        ),  # fmt: skip
        _row(["---"] * 11),
    ]
    for r in report["rows"]:
        change = (r["lm_wer"] - r["greedy_wer"]) / max(r["greedy_wer"], 1e-9)
        lines.append(_row([r["model"], r["lm_text"], r["lm_sentences"], f"{r['greedy_wer']:.3f}", f"{r['lm_wer']:.3f}",
                           f"{change:+.1%}", f"{r['greedy_cer']:.3f}", f"{r['lm_cer']:.3f}", f"{r['rtf_greedy']:.4f}",
                           f"{r['rtf_lm']:.4f}", f"{r['rtf_lm'] / r['rtf_greedy']:.2f}x"]))  # fmt: skip
    return "\n".join(lines) + "\n"


def inference_table(r: dict) -> str:
    """inference.py's rows: latency (RTF, speed-up against XLSR-53 eager) per input, and peak memory."""
    rows = r["rows"]
    baseline = rows.get("XLSR-53 (teacher arch) / eager")
    keys = list(next(iter(rows.values()))["times"])
    cells = [f"{float(k.split('x')[0]):g} s x {k.split('x')[1]}" for k in keys]
    lines = [f"CPU: {r['cpu']}; {r['run']['command']}.", "",
             _row(["model", "backend", *(f"{c}: s (RTF, speed-up)" for c in cells), "peak memory (MiB)"]),
             _row(["---"] * (3 + len(keys)))]  # fmt: skip
    for name, row in rows.items():
        model, backend = name.rsplit(" / ", 1)
        parts = []
        for key in keys:
            seconds, audio = row["times"][key], float(key.split("x")[0]) * int(key.split("x")[1])
            speedup = f", {baseline['times'][key] / seconds:.2f}x" if baseline else ""
            parts.append(f"{seconds:.3f} ({seconds / audio:.3f}{speedup})")
        lines.append(_row([model, backend, *parts, f"{row['peak_memory_mb']:.0f}"]))
    return "\n".join(lines) + "\n"


def serve_soak_table(r: dict) -> str:
    """The server's resident memory after each round of the soak, and the summary against the first round."""
    lines = [
        f"{r['wall_minutes']} min wall, {r['audio_minutes_streamed']:g} min of audio streamed; model {r['model']}; "
        f"CPU: {r['cpu']}.",
        "",
        _row(["round", "ends at (s)", "RSS (MB)", "vs round 1", "stream results", "50 MB frame", "uploads 200"]),
        _row(["---"] * 7),
    ]
    first = r["rounds"][0]["rss_mb"]
    for i, rnd in enumerate(r["rounds"], 1):
        lines.append(_row([i, rnd["after_s"], rnd["rss_mb"], f"{rnd['rss_mb'] / first - 1:+.1%}", rnd["stream_finals"],
                           rnd["oversized_frame"], f"{rnd['uploads_ok']}/8"]))  # fmt: skip
    lines += [
        "",
        f"At start {r['rss_mb_at_start']} MB; after round 1 {first} MB; highest reading after it (every 2 s) "
        f"{r['rss_mb_max_after_first_round']} MB (**{r['growth_after_first_round']:+.1%}**); last {r['rss_mb_last']} "
        f"MB; least-squares trend {r['trend_mb_per_hour']:+.1f} MB per hour.",
    ]
    return "\n".join(lines) + "\n"


def formatting_table(r: dict) -> str:
    """What regions + written numbers + punctuation cost against the transcription, then the corpus test end to end."""
    lines = [
        _row(
            [
                "input",
                "audio",
                "transcription (default)",
                "regions (VAD)",
                "written numbers",
                "punctuation",
                "share of the transcription",
            ]
        ),  # fmt: skip
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, label in (("clips_10s", "10 s files, 0.5 s pauses"), ("long_file", "the clips as one file, 1 s pauses")):
        x = r[name]
        lines.append(_row([f"{label} ({x['files']} files, {x['regions']} regions)", f"{x['audio_s']} s",
                           f"{x['transcription_s']} s", f"{x['vad_s']} s", f"{x['itn_s']} s",
                           f"{x['punctuation_s']} s", f"**{x['share']:.1%}**"]))  # fmt: skip
    shares = [(label, r[name]) for name, label in (("clips_10s", "10 s files"), ("long_file", "the long file"))
              if "default_student_share" in r[name]]  # fmt: skip
    if shares:
        lines += ["", "Against the default student's shape (38M, ONNX int8, random weights: speed only) on the same "
                  "files: " + "; ".join(f"{label} {x['default_student_transcription_s']} s of transcription, the "
                                        f"three steps **{x['default_student_share']:.1%}**" for label, x in shares)
                  + "."]  # fmt: skip
    e2e = r["corpus_test"]
    p = e2e["punctuation"]
    lines += [
        "",
        _row(["corpus test split (written references)", "CER", "WER", "F1 .", "F1 ,", "F1 ?", "capitals F1",
              "sentence-initial capitals"]),  # fmt: skip
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        _row(["default output, case and marks counted", e2e["written"]["cer"], e2e["written"]["wer"], p["."]["f1"],
              p[","]["f1"], p["?"]["f1"], p["capital"]["f1"], p["sentence_initial_capitals"]]),
        _row(["the same, both sides normalised", e2e["normalised"]["cer"], e2e["normalised"]["wer"], "", "", "", "",
              ""]),
        "",
        f"{r['clips']} test clips of {r['model']}; {r['cpu']}.",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


RENDERERS = {"silence": silence_table, "alignment_mismatch": mismatch_tables, "confidence": confidence_table,
             "minilab": minilab_table, "robustness": robustness_table, "lm_decoding": lm_decoding_table,
             "serve_soak": serve_soak_table, "inference": inference_table,
             "formatting": formatting_table}  # fmt: skip


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
