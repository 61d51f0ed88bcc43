"""Where `transcribe.py` writes: one row per input file, in input order, as text, JSONL or CSV.

With `--output`, every process appends its rows to its own JSONL shard as it goes (`OUT.shard-00001-of-00002.jsonl`)
and the main process merges the shards into OUT at the end, in input order. A run that is killed leaves its shards;
`--resume` folds them (and OUT) into the rows already done, drops a last line torn by the kill, and transcribes only
the rest. A resume never drops a row: OUT's rows of files that are not this run's inputs keep their place, and this
run's inputs follow in input order (the rows a killed run wrote among them: a resume of the same inputs ends in input
order). The run's settings are kept beside OUT (`OUT.settings.json`): a
resume with other settings is refused rather than mixing two models' transcripts in one file.
"""

import csv
import glob
import heapq
import json
import os

from .batching import header_seconds

FIELDS = ("path", "text", "status", "error")


def make_row(path: str, result: dict | None, error: str | None) -> dict:
    row = {"path": path, "text": result["text"] if result else "", "status": "failed" if error else "ok"}
    if error:
        row["error"] = error
    if result and "chunks" in result:
        row["chunks"] = [{"text": c["text"], "timestamp": list(c["timestamp"])} for c in result["chunks"]]
    if result and "transcript_score" in result:  # a calibrated folder: P(CER <= 0.2), and whether it passes 0.5
        row["transcript_score"], row["understood"] = result["transcript_score"], result["understood"]
    if result and "raw_text" in result:  # numbers written in `text`: the model's own text, for WER scoring
        row["raw_text"] = result["raw_text"]
    if result and "segments" in result:  # the speech regions that hold words: where a reader finds each sentence
        row["segments"] = [{k: s[k] for k in ("start", "end", "text", "avg_logprob")} for s in result["segments"]]
    return row


class RowWriter:
    """Writes rows to an open text file in one of the three formats (text: transcripts only, failures are reported
    on stderr and in the summary)."""

    def __init__(self, out, fmt: str):
        self.out, self.fmt = out, fmt
        self.csv = csv.writer(out) if fmt == "csv" else None
        if self.csv:
            self.csv.writerow(FIELDS)

    def write(self, row: dict):
        if self.fmt == "jsonl":
            self.out.write(json.dumps(row, ensure_ascii=False) + "\n")
        elif self.csv:
            self.csv.writerow([row["path"], row["text"], row["status"], row.get("error", "")])
        elif row["status"] == "ok":
            self.out.write(f"{row['path']}\t{row['text']}\n")
        self.out.flush()


def shard_path(output: str, rank: int, num_processes: int) -> str:
    return f"{output}.shard-{rank + 1:05d}-of-{num_processes:05d}.jsonl"


def existing_shards(output: str) -> list[str]:
    return sorted(glob.glob(f"{glob.escape(output)}.shard-*-of-*.jsonl"))


def read_jsonl_rows(path: str) -> tuple[dict[str, dict], int]:
    """Rows by path, and the number of lines that are not a whole row (a line torn by a kill): those files are
    simply transcribed again."""
    rows, torn = {}, 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
                rows[row["path"]] = row
            except (ValueError, KeyError, TypeError):
                torn += 1
    return rows, torn


def read_output(path: str, fmt: str) -> dict[str, dict]:
    """The rows of a finished output file, by path (text output holds only the transcribed files)."""
    if not os.path.exists(path):
        return {}
    if fmt == "jsonl":
        return read_jsonl_rows(path)[0]
    with open(path, encoding="utf-8", newline="") as f:
        if fmt == "csv":
            return {r["path"]: {k: v for k, v in r.items() if v or k != "error"} for r in csv.DictReader(f)}
        rows = (line.rstrip("\n").rsplit("\t", 1) for line in f if "\t" in line)
        return {p: {"path": p, "text": t, "status": "ok"} for p, t in rows}


def rows_done(output: str, fmt: str) -> tuple[dict[str, dict], int, list[str]]:
    """What a killed or finished run already wrote: OUT's rows and every shard's, the number of torn lines dropped,
    and the order of OUT's own rows (OUT is read once)."""
    rows, torn = read_output(output, fmt), 0
    out_order = list(rows)
    for shard in existing_shards(output):
        shard_rows, shard_torn = read_jsonl_rows(shard)
        rows.update(shard_rows)
        torn += shard_torn
    return rows, torn, out_order


def resumed_order(out_order: list[str], files: list[str], rows: dict[str, dict]) -> list[str]:
    """The rows a resumed OUT holds, in order: OUT's rows of files that are not this run's inputs first, where they
    were (a resume on more files keeps the earlier ones), then this run's inputs in input order (a killed run's rows
    among them, so a resume of the same inputs ends in input order, as a run that was never killed), then rows only
    a killed run's shards hold. Nothing is dropped."""
    inputs = set(files)
    order = dict.fromkeys(p for p in out_order if p not in inputs)
    order.update(dict.fromkeys(files))
    order.update(dict.fromkeys(rows))
    return list(order)


def write_output(output: str, fmt: str, paths: list[str], rows: dict[str, dict]) -> None:
    """OUT with the rows of `paths`, in that order, written to a temporary file and renamed (a kill leaves the
    previous OUT whole), then the shards it replaces removed."""
    tmp = f"{output}.tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = RowWriter(f, fmt)
        for path in paths:
            if path in rows:
                writer.write(rows[path])
    os.replace(tmp, output)
    for shard in existing_shards(output):
        os.remove(shard)


def check_settings(output: str, settings: dict, resume: bool) -> None:
    """Keeps the run's settings beside OUT; a resume with different ones is refused, naming what changed."""
    path = f"{output}.settings.json"
    if resume and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        changed = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
        if changed:
            details = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changed.items())
            raise ValueError(
                f"--resume: {output} was written with other settings ({details}). Resume with the same settings, "
                "or write to a new --output."
            )
    with open(path, "w", encoding="utf-8") as f:
        json.dump(settings, f, indent=1)


def split_by_length(files: list[str], num_processes: int) -> list[list[str]]:
    """`files` split into `num_processes` lists of about equal audio duration (headers' durations; longest first,
    each to the least loaded list), so that no process waits long for the others at the end."""
    loads = [(0.0, rank) for rank in range(num_processes)]
    parts: list[list[str]] = [[] for _ in range(num_processes)]
    seconds_of = header_seconds(files)
    for seconds, path in sorted(((seconds_of[p], p) for p in files), reverse=True):
        load, rank = heapq.heappop(loads)
        parts[rank].append(path)
        heapq.heappush(loads, (load + max(seconds, 1e-3), rank))
    return parts
