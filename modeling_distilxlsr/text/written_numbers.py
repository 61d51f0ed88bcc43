"""Numbers written as Brazilians write them, from what a CTC model spells out ("mil e quinhentos reais" -> "R$ 1.500",
"catorze horas e trinta minutos" -> "14h30"): inverse text normalisation (ITN).

The parsing is NeMo's `nemo-text-processing` (the `format` extra): maintained Portuguese WFST grammars for cardinals,
decimals, money, dates, times, ordinals, measures and telephone numbers, which no list of regular expressions of ours
would match in coverage. Its output follows its own conventions, so a few rules bring it to Brazilian newspaper
style (Folha de S.Paulo's and Estadão's manuals, which most BP text follows): thousands grouped with a dot in money,
decimals, measures and numbers of five digits or more (`R$ 1.500`, `2.500,75`, `1.200 km`, `10.000`; a four-digit
number alone stays as it is, since it is most often a year: `em 1999`), `14h30` and `9h` for times, `25%` without
a space, `US$` for dollars, `1º de maio`, `km/h`, `2 L`. Small numbers in words stay words ("cinco pessoas", "o
primeiro lugar"), as those manuals write them. The compiled grammar is cached (`$DISTILXLSR_CACHE/itn`): about
11 s to build once, then a load of under a second; a sentence takes milliseconds.

Most speech holds no number, and NeMo's tagger takes 4-5 ms a call even on a sentence it leaves as it is (10 ms on
an average corpus sentence, AMD EPYC): a text without any word its grammars could start a number from (`TRIGGERS`:
the spoken side of NeMo's own Portuguese data files, plus the words its taggers spell out) is returned without the
call. Articles ("um", "uma"), prepositions, months and parts of the day are not triggers: none is written by NeMo
without a number word beside it. On the 757 corpus sentences the gate skips 565 and NeMo, asked anyway, changes
none of them (`tests/test_written_numbers.py` checks all)."""

import glob
import logging
import os
import re
import threading

from filelock import FileLock

from ..cache import cache_dir

LANGUAGE = "pt"
MONTHS = "janeiro|fevereiro|março|abril|maio|junho|julho|agosto|setembro|outubro|novembro|dezembro"
CURRENCY = r"(?:R\$|US\$|€|£)"
UNITS = r"(?:km|m|cm|mm|kg|g|mg|L|ml|t|ha|m²|m³|km²|km/h|°C)"
EXTRA_HINT = "pip install 'distilxlsr[format]'"


class WrittenNumbersUnavailable(ImportError):
    """nemo-text-processing is not installed (the `format` extra)."""


# Numbers up to ten, which NeMo (as the style manuals) leaves in words; written as digits only where a symbol or
# abbreviation follows them (degrees, "nº").
SMALL_NUMBERS = {"zero": 0, "um": 1, "uma": 1, "dois": 2, "duas": 2, "três": 3, "quatro": 4, "cinco": 5, "seis": 6,
                 "sete": 7, "oito": 8, "nove": 9, "dez": 10}  # fmt: skip
SMALL = "|".join(SMALL_NUMBERS)


def _group_thousands(digits: str) -> str:
    return f"{int(digits):,}".replace(",", ".")


def _grouped(match: re.Match) -> str:
    """A number's integer part grouped when BP writing groups it: money, a decimal, a measure, or five digits and
    more (a four-digit number alone is most often a year)."""
    currency, digits, decimals, unit = match["currency"], match["digits"], match["decimals"], match["unit"]
    if currency or decimals or unit or len(digits) >= 5:
        digits = _group_thousands(digits)
    return f"{currency or ''}{digits}{decimals or ''}{unit or ''}"


# Applied in order to NeMo's output; each says what it writes.
BP_STYLE = (
    (re.compile(r"\s+([.,?!;:])(?=\s|$)"), r"\1"),  # NeMo's "R$ 1.500 ." -> "R$ 1.500."
    (re.compile(r"(?<![\w$])\$ "), "US$ "),  # NeMo's dollars; BP writes US$
    (
        re.compile(rf"\b(menos )?({SMALL}) graus\b"),  # temperatures and angles in digits, small ones too
        lambda m: f"{'-' if m[1] else ''}{SMALL_NUMBERS[m[2]]} graus",
    ),
    (re.compile(rf"\bnúmero ({SMALL}|\d+)\b"), lambda m: f"nº {SMALL_NUMBERS.get(m[1], m[1])}"),  # nº 5
    (re.compile(r"(\d) %"), r"\1%"),  # 25 % -> 25%
    (re.compile(r"\b(\d{1,2}):00\b"), r"\1h"),  # 9:00 -> 9h
    (re.compile(r"\b(\d{1,2}):(\d{2})\b"), r"\1h\2"),  # 14:30 -> 14h30
    (re.compile(r"\b(\d{1,2}) h e (\d{1,2}) min\b"), lambda m: f"{m[1]}h{int(m[2]):02d}"),  # 14 h e 30 min -> 14h30
    (re.compile(r"\b(\d{1,2}) h\b"), r"\1h"),  # 8 h da manhã -> 8h da manhã
    (re.compile(rf"\b0?1 de ({MONTHS})\b"), r"1º de \1"),  # 01 de maio -> 1º de maio
    (re.compile(rf"\b0(\d) de ({MONTHS})\b"), r"\1 de \2"),  # 05 de maio -> 5 de maio
    (re.compile(r"\bkph\b"), "km/h"),
    (re.compile(r"(\d) l\b"), r"\1 L"),  # litres: INMETRO allows L, which no reader takes for a 1
    (
        re.compile(
            rf"(?<![\d.,/:-])(?P<currency>{CURRENCY} )?(?P<digits>\d{{4,}})(?P<decimals>,\d+)?"
            rf"(?P<unit> {UNITS}(?!\w))?(?![\d-])"
        ),
        _grouped,
    ),
)


# Words of NeMo's Portuguese taggers that are written in their Python, not in a data file.
GRAMMAR_LITERALS = frozenset({"mil", "milhão", "milhões", "bilhão", "bilhões", "trilhão", "trilhões", "meia", "meio",
                              "menos", "vírgula", "arroba", "centavo", "centavos", "cento"})  # fmt: skip
# Words of those data files that NeMo writes only beside a number word (which is a trigger itself).
NOT_TRIGGERS = frozenset({"a", "com", "da", "de", "do", "por", "um", "uma", "e", "o", "em", "ao", "as", "os", "tarde",
                          "noite", "manhã", "madrugada", *MONTHS.split("|")})  # fmt: skip
_WORD = re.compile(r"[^\W\d_]+")


def grammar_triggers(nemo_package_dir: str) -> frozenset[str]:
    """The words a text needs one of for NeMo's Portuguese ITN to change it: every word of its data files
    (`inverse_text_normalization/pt/data/**/*.tsv`) and `GRAMMAR_LITERALS`, less `NOT_TRIGGERS`. Empty when no data
    file is found (a NeMo whose layout changed): then every text goes to NeMo."""
    pattern = os.path.join(nemo_package_dir, "inverse_text_normalization", LANGUAGE, "data", "**", "*.tsv")
    words = set()
    for path in glob.glob(pattern, recursive=True):
        with open(path, encoding="utf-8") as f:
            words.update(_WORD.findall(f.read().lower()))
    return frozenset((words | GRAMMAR_LITERALS) - NOT_TRIGGERS) if words else frozenset()


def bp_style(text: str) -> str:
    """NeMo's written forms in Brazilian newspaper style (`BP_STYLE`)."""
    for pattern, replacement in BP_STYLE:
        text = pattern.sub(replacement, text)
    return text


class WrittenNumbers:
    """`written(text)`: the text with its spoken numbers written (`WrittenNumbers()("mil reais")` -> "R$ 1.000").
    Builds (or loads from the cache) NeMo's Portuguese grammar once per instance; raises
    `WrittenNumbersUnavailable` when nemo-text-processing is not installed."""

    def __init__(self, cache: str | None = None):
        try:  # pynini's libraries are 400 MB, and the model needs none of it: an extra
            import nemo_text_processing  # optional: `format` extra
            from nemo_text_processing.inverse_text_normalization import inverse_normalize  # optional: `format`
        except ImportError as err:
            raise WrittenNumbersUnavailable(f"numbers stay spelt out: {EXTRA_HINT} writes them ({err})") from err
        self.triggers = grammar_triggers(os.path.dirname(nemo_text_processing.__file__))
        logging.getLogger("NeMo-text-processing").setLevel(logging.WARNING)  # one INFO line per grammar file
        self._lock = threading.Lock()
        folder = cache or os.path.join(cache_dir(), "itn")
        os.makedirs(folder, exist_ok=True)
        # One process builds and writes the grammar file while the others wait, then read it (several ranks of
        # `accelerate launch transcribe.py`, or test workers, start at once; NeMo writes the file in place).
        with FileLock(os.path.join(folder, "grammar.lock")):
            self._normalizer = inverse_normalize.InverseNormalizer(lang=LANGUAGE, cache_dir=folder,
                                                                   overwrite_cache=False)  # fmt: skip

    def may_hold_numbers(self, text: str) -> bool:
        """Whether `text` has a word NeMo's grammars could write a number from (always, without a gate)."""
        return not self.triggers or not self.triggers.isdisjoint(_WORD.findall(text.lower()))

    def __call__(self, text: str) -> str:
        if not text.strip():
            return text
        if not self.may_hold_numbers(text):
            return bp_style(text)  # no word a number could start from: NeMo would give the text back
        with self._lock:  # pynini's FSTs are not thread-safe, and the server decodes uploads in a thread pool
            written = self._normalizer.inverse_normalize(text, verbose=False)
        return bp_style(written)
