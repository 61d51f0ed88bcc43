"""Brazilian Portuguese prose for the punctuation restorer, from what Debian ships (no Hub, no web here).

Training sources (apt packages, each under its own free licence; the text is read, never shipped): the Debian
Reference (`debian-reference-pt-br`), the Debian Edu and Audacity manuals (`debian-edu-doc-pt-br`,
`debian-edu-doc-legacy-pt-br`), Foca Linux (`focalinux-text`), the GIMP and LibreOffice help (`gimp-help-pt-br`,
`libreoffice-help-pt-br`), the messages of the pt-BR translations of installed programs (gettext catalogs: manuals ask
few questions, programs ask many) and the corpus' own train sentences. Held out, never trained on: the Brazilian
fortunes (`fortunes-br`, jokes and dialogue, a register none of the manuals has) and the corpus' test sentences.

Manuals carry code, menus and tables; `prose_sentences` keeps a sentence only if it reads as prose (a capital first,
a mark last, mostly words, no code characters)."""

import glob
import gzip
import html.parser
import os
import re
import subprocess
import zipfile
from collections.abc import Iterator

SENTENCE_END = re.compile(r"(?<=[.?!])\s+(?=[A-ZÁÉÍÓÚÂÊÔÃÕÇÀ\"“«(—-])")
CODE_CHARS = re.compile(r"[{}<>=_\\|#@*\[\]~^`]|https?:|www\.|\.\w{2,4}\b(?<!\.\s)|\$\s*\w+\(|\b\w+\(\)")
ENGLISH = re.compile(r"\b(the|you|is|are|and|of|to|can|this|with|for|it|be|on|an)\b", re.I)
PORTUGUESE = re.compile(r"\b(de|que|não|é|um|uma|para|com|em|do|da|os|as|no|na|se|por|você|mais)\b", re.I)
WORD = re.compile(r"^[A-Za-zÀ-ÿ][a-zà-ÿ]*$")
BLOCK_TAGS = {"p", "li", "dd", "dt", "td", "th", "h1", "h2", "h3", "h4", "div", "br", "tr", "pre", "title"}


class _Paragraphs(html.parser.HTMLParser):
    """The text of an HTML page as paragraphs; code blocks (`pre`, `code`, `kbd`, `tt`, `samp`) dropped."""

    SKIP = {"pre", "code", "kbd", "tt", "samp", "script", "style", "var"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.paragraphs, self.current, self.skipping = [], [], 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        if tag in BLOCK_TAGS:
            self._flush()

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1
            self.current.append(" ⟨code⟩ ")  # a sentence with code in it is not prose
        if tag in BLOCK_TAGS:
            self._flush()

    def handle_data(self, data):
        if not self.skipping:
            self.current.append(data)

    def _flush(self):
        text = " ".join("".join(self.current).split())
        if text:
            self.paragraphs.append(text)
        self.current = []


def html_paragraphs(markup: str) -> list[str]:
    parser = _Paragraphs()
    parser.feed(markup)
    parser.close()
    parser._flush()
    return parser.paragraphs


def prose_sentences(paragraph: str) -> list[str]:
    """The sentences of a paragraph that read as prose."""
    out = []
    for sentence in SENTENCE_END.split(paragraph):
        sentence = sentence.strip()
        words = sentence.split()
        if not 4 <= len(words) <= 60 or sentence[-1] not in ".?!" or not sentence[0].isupper():
            continue
        if "⟨code⟩" in sentence or CODE_CHARS.search(sentence) or sentence.count("/") > 1:
            continue
        plain = [w.strip(".,;:?!\"'()“”«»") for w in words]
        if sum(bool(WORD.match(w)) for w in plain) < 0.85 * len(words):
            continue
        if sum(w.isupper() and len(w) > 1 for w in plain) > 0.2 * len(words):  # menus and acronyms, not prose
            continue
        if len(ENGLISH.findall(sentence)) >= 2 or not PORTUGUESE.search(sentence):  # an untranslated help page
            continue
        out.append(sentence)
    return out


def _documents_from_html(pattern: str, encoding: str = "utf-8") -> Iterator[list[str]]:
    for path in sorted(glob.glob(pattern, recursive=True)):
        with open(path, encoding=encoding, errors="replace") as f:
            yield [s for p in html_paragraphs(f.read()) for s in prose_sentences(p)]


def _documents_from_epub(path: str) -> Iterator[list[str]]:
    with zipfile.ZipFile(path) as z:
        for name in sorted(z.namelist()):
            if name.endswith((".html", ".xhtml", ".htm")):
                yield [s for p in html_paragraphs(z.read(name).decode("utf-8", "replace")) for s in prose_sentences(p)]


def _focalinux() -> Iterator[list[str]]:
    for path in sorted(glob.glob("/usr/share/doc/focalinux/text/*/index.txt.gz")):
        text = gzip.open(path).read().decode("latin-1")
        paragraphs = [" ".join(block.split()) for block in re.split(r"\n\s*\n", text)]
        yield [s for p in paragraphs for s in prose_sentences(p)]


def _gettext_questions() -> Iterator[list[str]]:
    """The sentences of installed programs' pt-BR messages (msgunfmt, gettext's own tool, reads the
    compiled catalogs), one document per catalog."""
    paths = sorted(glob.glob("/usr/share/locale/pt_BR/LC_MESSAGES/*.mo")
                   + glob.glob("/usr/lib/libreoffice/program/resource/pt_BR/LC_MESSAGES/*.mo"))  # fmt: skip
    for path in paths:
        try:
            po = subprocess.run(["msgunfmt", "--no-wrap", path], capture_output=True, timeout=60).stdout
            po = po.decode("utf-8", "replace")  # a catalog that is not UTF-8 costs only its odd characters
        except (OSError, subprocess.TimeoutExpired):
            continue
        messages = [m.encode("latin-1", "backslashreplace").decode("unicode_escape", "replace")
                    for m in re.findall(r'^msgstr "(.*)"$', po, flags=re.M)]  # fmt: skip
        messages = [m.replace("&", "").replace("_", "") for m in messages]
        yield [s for m in messages for s in prose_sentences(m)]


def training_documents() -> dict[str, list[list[str]]]:
    """source name -> documents, each a list of consecutive prose sentences (windows of text come from inside one)."""
    gimp = "/usr/share/gimp/2.0/help/pt_BR/**/*.html"
    libreoffice = "/usr/share/libreoffice/help/pt-BR/text/**/*.html"
    edu = sorted(glob.glob("/usr/share/doc/debian-edu-doc*-pt-br/*.epub"))
    return {
        "debian-reference-pt-br": list(_documents_from_html("/usr/share/debian-reference/*.pt-br.html")),
        "debian-edu-doc-pt-br": [d for path in edu for d in _documents_from_epub(path)],
        "focalinux-text": list(_focalinux()),
        "gimp-help-pt-br": list(_documents_from_html(gimp)),
        "libreoffice-help-pt-br": list(_documents_from_html(libreoffice)),
        "gettext-pt-br": list(_gettext_questions()),
    }


def fortunes_br(path: str = "/usr/share/games/fortunes/brasil") -> list[list[str]]:
    """The held-out text: each fortune a document; attributions (`-- Name`) and dialogue dashes dropped. None
    without the `fortunes-br` package (said by the caller)."""
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8", errors="replace") as f:
        fortunes = f.read().split("\n%\n")
    documents = []
    for fortune in fortunes:
        lines = [re.sub(r"^\s*[-—]\s+", "", line) for line in fortune.splitlines() if not line.strip().startswith("--")]
        paragraphs = [" ".join(block.split()) for block in re.split(r"\n\s*\n", "\n".join(lines))]
        sentences = [s for p in paragraphs for s in prose_sentences(p)]
        if sentences:
            documents.append(sentences)
    return documents
