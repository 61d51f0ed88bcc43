"""Punctuation and capitals for a CTC model's words: "você já almoçou ou prefere esperar" -> "Você já almoçou ou
prefere esperar?".

A CTC model writes lowercase words without marks; people, subtitle readers and apps used to Whisper expect sentences.
The restorer is a small word-level BERT token classifier (transformers' `BertForTokenClassification`, a few MB in
fp16) trained by `tools/train_punctuation.py` on Brazilian Portuguese prose that Debian ships (its card,
`punctuation_pt_br/README.md`, says which and how it scores on text none of its training used). Each word gets one of
15 labels, its case (lower, Capital, UPPER) and the mark after it (none . , ? !); a word outside its vocabulary (a
rare name, a number NeMo wrote as digits) reads as `[UNK]` and is labelled from its neighbours. Words, not
characters: a character model of the same size learnt no commas in the half hour of CPU this project trains it in,
a word model sees six times fewer positions per sentence.
The folder loads with plain transformers (`BertForTokenClassification` + `PreTrainedTokenizerFast`, a `tokenizers`
word-level vocabulary); nothing in it runs code.

Compared with rules (a capital after each region, a period at its end) it puts question marks and commas where the
words call for them; compared with a punctuation model of the size of the ASR model itself (a 100M+ BERT from the Hub,
which this machine cannot reach anyway) it costs about a millisecond a sentence."""

import re
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import BertForTokenClassification, PreTrainedTokenizerFast

SHIPPED_MODEL = Path(__file__).with_name("punctuation_pt_br")
MARKS = ("", ".", ",", "?", "!")
CASES = ("lower", "cap", "upper")
LABELS = tuple(f"{case}{mark}" for case in CASES for mark in MARKS)  # "lower", "lower.", ..., "upper!"
# Marks in written text as the restorer writes them: a semicolon is a comma, an ellipsis a period; a colon (lists in
# manuals) and quotes, brackets and dashes are not restored.
SENTENCE_ENDS = (".", "?", "!")
MARK_OF = {"?": "?", "!": "!", ".": ".", "…": ".", ",": ",", ";": ","}
_EDGE = re.compile(r"^[^\w$€£]+|[^\w%$€£°²³ºª]+$")
WINDOW_WORDS = 96  # the longest text the model was trained on; longer text goes through in overlapping windows


@dataclass(frozen=True)
class WordLabel:
    word: str  # as a CTC model (and NeMo's ITN) writes it: lowercase, no marks around it
    case: str  # one of CASES
    mark: str  # one of MARKS: the mark written after the word

    @property
    def label(self) -> str:
        return f"{self.case}{self.mark}"


def _case_of(core: str) -> str:
    letters = [c for c in core if c.isalpha()]
    if not letters or not letters[0].isupper() and not core[0].isupper():
        return "lower"
    return "upper" if len(letters) > 1 and all(c.isupper() for c in letters) else "cap"


def labelled_words(text: str) -> list[WordLabel]:
    """Written text as the restorer sees and labels it: each word lowercase without the marks around it (a hyphen
    splits words, as the CTC vocabulary does), with its case and the mark that follows it. The training targets and
    the scoring both come from here, so the two can never disagree."""
    words = []
    for token in text.replace("-", " ").replace("—", " ").split():
        core = _EDGE.sub("", token)
        if not core:  # a lone mark ("?" after a space, "..."): it belongs to the word before
            mark = next((MARK_OF[c] for c in token if c in MARK_OF), "")
            if words and mark and not words[-1].mark:
                words[-1] = WordLabel(words[-1].word, words[-1].case, mark)
            continue
        trailing = token[token.rfind(core) + len(core) :]
        marks = [MARK_OF[c] for c in trailing if c in MARK_OF]
        mark = next((m for m in ("?", "!", ".", ",") if m in marks), "")
        words.append(WordLabel(core.lower(), _case_of(core), mark))
    return words


def written_word(word: str, case: str, mark: str) -> str:
    """One word as the restorer writes it. A word that already has a capital (NeMo's `R$`, `US$`) keeps it."""
    if word == word.lower():
        word = word.upper() if case == "upper" else word[0].upper() + word[1:] if case == "cap" else word
    return word if not mark or word.endswith(mark) else word + mark


class PunctuationRestorer:
    """Restores marks and capitals in a CTC model's text; a formatter (text -> text) for `inference/text_format.py`.

    `model_dir` is a folder written by `tools/train_punctuation.py` (default: the one shipped in the package)."""

    def __init__(self, model_dir: str | Path = SHIPPED_MODEL, device: str = "cpu"):
        self.tokenizer = PreTrainedTokenizerFast.from_pretrained(str(model_dir))
        self.model = BertForTokenClassification.from_pretrained(str(model_dir), dtype=torch.float32).eval().to(device)
        labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        if tuple(labels) != LABELS:
            raise ValueError(f"{model_dir} is not a punctuation model of this version: its labels are {labels}")

    def word_labels(self, words: list[str]) -> list[tuple[str, str]]:
        """(case, mark) for each word."""
        if not words:
            return []
        lowercase = [w.lower() for w in words]
        ids = self.tokenizer(lowercase, is_split_into_words=True, add_special_tokens=False)["input_ids"]
        if len(ids) != len(words):  # a word-level vocabulary gives one id a word; anything else is a bug
            raise RuntimeError(f"the punctuation tokenizer gave {len(ids)} ids for {len(words)} words")
        best = self._word_logits(torch.tensor(ids)).argmax(-1).tolist()
        out = []
        for i in best:
            case, mark = CASES[i // len(MARKS)], MARKS[i % len(MARKS)]  # LABELS is CASES x MARKS, in that order
            # A sentence starts with a capital: orthography, not a guess, so the model's own marks decide it (the
            # model alone left a third of the words after its periods lowercase on held-out text).
            if (not out or out[-1][1] in SENTENCE_ENDS) and case == "lower":
                case = "cap"
            out.append((case, mark))
        return out

    @torch.inference_mode()
    def _word_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Logits for each word; text longer than the training windows goes through windows that overlap by half,
        each word taking the logits of the window where it sits farthest from an edge."""
        device = self.model.device
        if len(ids) <= WINDOW_WORDS:
            return self.model(input_ids=ids[None].to(device)).logits[0].float().cpu()
        step = WINDOW_WORDS // 2
        starts = list(range(0, len(ids) - WINDOW_WORDS, step)) + [len(ids) - WINDOW_WORDS]
        batch = torch.stack([ids[s : s + WINDOW_WORDS] for s in starts]).to(device)
        window_logits = self.model(input_ids=batch).logits.float().cpu()
        out = torch.empty(len(ids), window_logits.shape[-1])
        best_margin = torch.full((len(ids),), -1)
        for k, s in enumerate(starts):
            positions = torch.arange(s, s + WINDOW_WORDS)
            margin = torch.minimum(positions - s, s + WINDOW_WORDS - 1 - positions)
            better = margin > best_margin[positions]
            out[positions[better]] = window_logits[k][better]
            best_margin[positions[better]] = margin[better]
        return out

    def __call__(self, text: str) -> str:
        words = text.split()
        labels = self.word_labels(words)
        return " ".join(written_word(w, case, mark) for w, (case, mark) in zip(words, labels, strict=True))
