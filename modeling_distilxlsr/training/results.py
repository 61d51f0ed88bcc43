"""JSON files a run writes (results, loop state, settings): always valid JSON.

Python's `json.dump` writes NaN and Infinity as bare `NaN`/`Infinity` tokens, which are not JSON: `jq`, JavaScript,
pandas' strict readers and the Hub's metadata parser reject the file. A non-finite number (a diverged loss, a metric
of an empty set) is written as `null` instead, and `allow_nan=False` makes any one that slips through an error here
rather than a broken file later."""

import json
import math
import os


def finite_or_none(value):
    """`value` with every non-finite float (nested in dicts, lists, tuples) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_or_none(item) for item in value]
    return value


def write_json(path: str, data, indent: int | None = 2) -> None:
    """`data` as strict JSON (non-finite numbers as null), written to a temporary file and renamed into place."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(finite_or_none(data), f, indent=indent, ensure_ascii=False, allow_nan=False)
    os.replace(tmp, path)
