"""Brazilian Portuguese numbers as a speaker says them, for CTC labels and references: "R$ 1.000,00" -> "mil reais",
"2.500,75 metros" -> "dois mil e quinhentos vírgula setenta e cinco metros", "25%" -> "vinte e cinco por cento",
"2ª" -> "segunda", "14h30" -> "catorze horas e trinta minutos", "1/5/2024" -> "primeiro de maio de dois mil e vinte e
quatro", "US$ 5" -> "cinco dólares", "€ 20" -> "vinte euros", "-5 graus" -> "menos cinco graus", "nº 5" -> "número
cinco", "100 m²" -> "cem metros quadrados".

num2words spells the cardinals and ordinals; what it does not know is the written BP conventions around them (dot for
thousands, comma for decimals, R$/US$/€, º/ª, nº, a minus sign, m²/m³, 14h30, dates), which are read
here. A number whose reading is unclear ("3.5":
a decimal point or a broken thousands group? "1/2", "10:75", "1° lugar" with a degree sign, IP addresses) raises
`AmbiguousNumber`: the caller drops the utterance and counts it, never guesses.
"""

import re

from num2words import num2words

_NUM = r"\d{1,3}(?:\.\d{3})+(?:,\d+)?|\d+(?:,\d+)?"  # 1.000 | 1.000,5 | 1000 | 3,14
_SCALE = r"mil|milhão|milhões|bilhão|bilhões"
# (symbol, singular, plural): the written symbol before the amount ("€" after it too, as in Portugal)
CURRENCIES = {"r$": ("real", "reais"), "us$": ("dólar", "dólares"), "u$": ("dólar", "dólares"), "€": ("euro", "euros")}
_CURRENCY = re.compile(rf"(r\$|us\$|u\$|€)\s*({_NUM})(?:\s+({_SCALE})\b)?|({_NUM})\s*(€)")
_BARE_DOLLAR = re.compile(r"(?<![\w$])\$\s*\d")  # "$ 5": whose dollars, or pesos? no single reading
_MINUS = re.compile(r"(?<![\w.,])[-\u2212](?=\d)")  # "-5", "−3,5": not "covid-19", "10-20"
_NUMERO = re.compile(r"\bn(?:\s?[º°]|\.\s?º|o\.)\s*(?=\d)")  # "nº 5", "n° 12", "n.º 3", "no. 3"; never "no 5º andar"
UNITS = {"km": ("quilômetro", "quilômetros"), "m": ("metro", "metros"), "cm": ("centímetro", "centímetros"),
         "mm": ("milímetro", "milímetros")}  # fmt: skip
_POWER = {"²": ("quadrado", "quadrados"), "³": ("cúbico", "cúbicos")}
_SQUARE_UNIT = re.compile(rf"(?:({_NUM})\s*)?\b(km|cm|mm|m)([²³])")
_PERCENT = re.compile(rf"({_NUM})\s*%")
_ORDINAL = re.compile(r"\b(\d+)\s?([ºª])")
_DEGREES = re.compile(r"\b(\d+(?:,\d+)?)\s?°\s?c\b")
_TIME = re.compile(r"\b(\d{1,2})(?:h(\d{2})?(?:min)?|:(\d{2}))(?![\w:])")
_DATE = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})\b(?!/)")  # without a year, "1/2" may be a fraction
_TOKEN = re.compile(r"\d+(?:[.,:/]\d+)*(\s?°)?")
MONTHS = ("janeiro fevereiro março abril maio junho julho agosto setembro outubro novembro dezembro").split()


class AmbiguousNumber(ValueError):
    """A written number with more than one plausible reading."""


def cardinal(value: int) -> str:
    return num2words(value, lang="pt_BR").replace(",", "")


def _feminine(words: str) -> str:
    return re.sub(r"\bum\b", "uma", re.sub(r"\bdois\b", "duas", words))


def _ordinal(value: int, feminine: bool) -> str:
    words = num2words(value, lang="pt_BR", to="ordinal")
    return re.sub(r"o\b", "a", words) if feminine else words


def _digits(text: str) -> str:
    return " ".join(cardinal(int(d)) for d in text)


def _integer(text: str) -> str:
    """Spoken integer; leading zeros are read digit by digit ("007" -> "zero zero sete")."""
    if len(text) > 1 and text.startswith("0"):
        return _digits(text)
    return cardinal(int(text))


def spell_number(token: str) -> str:
    """1000 / 1.000 (thousands) / 2,5 and 1.000,25 (decimal comma) as words; anything else is ambiguous."""
    if re.fullmatch(r"\d+", token):
        return _integer(token)
    match = re.fullmatch(r"(\d{1,3}(?:\.\d{3})+|\d+)(?:,(\d+))?", token)
    if not match:
        raise AmbiguousNumber(token)
    whole = cardinal(int(match.group(1).replace(".", "")))
    if match.group(2) is None:
        return whole
    fraction = match.group(2)
    zeros = len(fraction) - len(fraction.lstrip("0"))
    rest = fraction.lstrip("0")
    return " ".join([whole, "vírgula", *(["zero"] * zeros), *([cardinal(int(rest))] if rest else [])])


def _money(match: re.Match) -> str:
    if match.group(4):  # "20 €"
        symbol, amount, scale = match.group(5), match.group(4), None
    else:
        symbol, amount, scale = match.group(1), match.group(2), match.group(3)
    one, many = CURRENCIES[symbol]
    if scale:  # "R$ 3 milhões", "R$ 2,5 mil"
        return f"{spell_number(amount)} {scale} {'de ' + many if scale != 'mil' else many}"
    whole_text, _, cents_text = amount.partition(",")
    if cents_text and len(cents_text) > 2:
        raise AmbiguousNumber(match.group(0))
    whole = int(whole_text.replace(".", ""))
    cents = int(cents_text.ljust(2, "0")) if cents_text else 0
    parts = []
    if whole or not cents:
        words = cardinal(whole)
        unit = (
            one if whole == 1 else f"de {many}" if words.endswith(("milhão", "milhões", "bilhão", "bilhões")) else many
        )
        parts.append(f"{words} {unit}")
    if cents:
        parts.append(f"{cardinal(cents)} {'centavo' if cents == 1 else 'centavos'}")
    return " e ".join(parts)


def _time(match: re.Match) -> str:
    hours = int(match.group(1))
    minutes_text = match.group(2) or match.group(3)
    minutes = int(minutes_text) if minutes_text else 0
    if hours > 24 or minutes > 59:
        raise AmbiguousNumber(match.group(0))
    words = f"{_feminine(cardinal(hours))} {'hora' if hours == 1 else 'horas'}"
    if minutes:
        words += f" e {cardinal(minutes)} {'minuto' if minutes == 1 else 'minutos'}"
    return words


def _date(match: re.Match) -> str:
    day, month, year = int(match.group(1)), int(match.group(2)), match.group(3)
    if not (1 <= day <= 31 and 1 <= month <= 12):
        raise AmbiguousNumber(match.group(0))
    return f"{'primeiro' if day == 1 else cardinal(day)} de {MONTHS[month - 1]} de {cardinal(int(year))}"


def _unit_power(match: re.Match) -> str:
    amount, unit, power = match.groups()
    plural = amount is not None and amount not in ("1", "1,0", "1,00")
    words = f"{UNITS[unit][plural]} {_POWER[power][plural]}"
    return f"{spell_number(amount)} {words}" if amount else words


def spell_unit_powers(text: str) -> str:
    """ "por m²" -> "por metro quadrado": a squared or cubed unit with no number before it (`spell_numbers` reads
    those with one)."""
    return _SQUARE_UNIT.sub(lambda m: f" {_unit_power(m)} ", text)


def spell_numbers(text: str) -> str:
    """`text` (lowercase) with every written number in words; raises `AmbiguousNumber` naming the first number
    that has no single reading."""
    if bare := _BARE_DOLLAR.search(text):
        raise AmbiguousNumber(bare.group(0))
    text = _NUMERO.sub(" número ", text)
    text = _MINUS.sub(" menos ", text)
    text = _CURRENCY.sub(lambda m: f" {_money(m)} ", text)
    text = _SQUARE_UNIT.sub(lambda m: f" {_unit_power(m)} ", text)
    text = _PERCENT.sub(lambda m: f" {spell_number(m.group(1))} por cento ", text)
    text = _DEGREES.sub(lambda m: f" {spell_number(m.group(1))} graus celsius ", text)
    text = _ORDINAL.sub(lambda m: f" {_ordinal(int(m.group(1)), m.group(2) == 'ª')} ", text)
    text = _DATE.sub(lambda m: f" {_date(m)} ", text)
    text = _TIME.sub(lambda m: f" {_time(m)} ", text)
    return _TOKEN.sub(lambda m: f" {_plain(m)} ", text)


def _plain(match: re.Match) -> str:
    if match.group(1):  # "1° lugar" (a degree sign for an ordinal) or "30°" (degrees): no single reading
        raise AmbiguousNumber(match.group(0))
    return spell_number(match.group(0))
