"""How well written text's marks and capitals match a reference: F1 for each of `.` `,` `?` `!`, capitals F1 and
the share of sentence-initial words written with a capital.

Reference and hypothesis words are paired by a word alignment (difflib on the lowercase words without marks, the
same key as `inference/text_format.py`), so the same function scores the restorer on clean text (same words) and a
whole transcription end to end (an ASR's words differ; a mark counts only on a word both have)."""

import difflib
from collections.abc import Callable

from .punctuation import MARKS, SENTENCE_ENDS, labelled_words

SCORED_MARKS = MARKS[1:]


def _f1(tp: int, fp: int, fn: int) -> dict:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 3), "recall": round(recall, 3), "f1": round(f1, 3), "support": tp + fn}


def punctuation_scores(references: list[str], hypotheses: list[str] | Callable[[str], str]) -> dict:
    """Scores of `hypotheses` (texts, or a restorer that writes each reference's lowercase unmarked words)."""
    counts = {m: [0, 0, 0] for m in (*SCORED_MARKS, "capital")}
    initial, initial_capital, words_scored = 0, 0, 0
    for k, reference in enumerate(references):
        gold = labelled_words(reference)
        if callable(hypotheses):
            hypothesis = hypotheses(" ".join(w.word for w in gold))
        else:
            hypothesis = hypotheses[k]
        pred = labelled_words(hypothesis)
        matcher = difflib.SequenceMatcher(a=[w.word for w in gold], b=[w.word for w in pred], autojunk=False)
        for block in matcher.get_matching_blocks():
            for i, j in zip(range(block.a, block.a + block.size), range(block.b, block.b + block.size), strict=True):
                g, p = gold[i], pred[j]
                words_scored += 1
                for m in SCORED_MARKS:
                    counts[m][0] += g.mark == m and p.mark == m
                    counts[m][1] += g.mark != m and p.mark == m
                    counts[m][2] += g.mark == m and p.mark != m
                g_cap, p_cap = g.case != "lower", p.case != "lower"
                counts["capital"][0] += g_cap and p_cap
                counts["capital"][1] += p_cap and not g_cap
                counts["capital"][2] += g_cap and not p_cap
                if i == 0 or gold[i - 1].mark in SENTENCE_ENDS:
                    initial += 1
                    initial_capital += p_cap
    scores = {m: _f1(*c) for m, c in counts.items()}
    scores["sentence_initial_capitals"] = round(initial_capital / initial, 3) if initial else None
    scores["words_scored"] = words_scored
    return scores
