"""Record text made inert before it reaches a card (DESIGN §3, "Records are data, never markup"): EHRs render a
card's detail as GitHub-flavoured Markdown, raw HTML included, so text copied from records (codes' words, notes,
report conclusions, ids) must not be able to open a link or an image, run script, or start a heading, a list or
emphasis. Kept as our own code, not a sanitiser library: we escape to plain text (nothing is allowed through),
which no HTML sanitiser does for Markdown."""

from __future__ import annotations

import html
import re

# control characters (a newline would open a heading or a fake "Evidence used" block), bidi overrides and
# isolates, zero-width and other invisible format characters
_INVISIBLE = re.compile(
    "[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff9-\ufffb]"
)
_MARKDOWN = re.compile(r"([\\`*_\[\]~#|{}])")  # emphasis, code, links, images, strikethrough, headings, tables
_LEADING_BLOCK = re.compile(r"^([-+=>])")  # a list item, setext rule or quote opened by the text
_LEADING_NUMBER = re.compile(r"^(\d{1,9})([.)])")  # an ordered list item
_SCHEME = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{1,20}):(?=//|[a-z0-9])")  # https:, javascript:, data:
_WWW = re.compile(r"(?i)\bwww\.")
_EMAIL = re.compile(r"(?<=[A-Za-z0-9._+-])@(?=[A-Za-z0-9-]+\.)")
FIELD_CAP = 500  # characters of one line of record-derived text on a card
_SEPARATORS = {c: " " for c in range(0x110) if chr(c).isspace() and _INVISIBLE.match(chr(c))}


def one_line(text: str, cap: int = FIELD_CAP) -> str:
    """Record text as one plain line for a terminal, a CSV cell or an HTML page that escapes it: no control
    (a terminal's escape sequences, a newline that fakes a line), invisible or bidi characters, at most `cap`
    characters."""
    # a control character that separates words (tab, newline, form feed, NEL...) becomes a space, not nothing:
    # "ER<tab>positive" reads "ER positive"; str.split() then collapses runs of whitespace as \s+ would
    text = " ".join(_INVISIBLE.sub("", text.translate(_SEPARATORS)).split())
    return text[: cap - 1].rstrip() + "…" if len(text) > cap else text


_FORMULA = re.compile(r"^[=+\-@\t\r]")
_HARMLESS = re.compile(r"^(?:-|-?\d+(?:\.\d+)?%?)$")  # a dash for "none", a negative number: no formula


def csv_cell(value: object, cap: int = FIELD_CAP) -> object:
    """A CSV cell a spreadsheet will not run: text that would start a formula (=, +, -, @, tab, CR) gets a
    leading apostrophe (OWASP); numbers pass as numbers. At most `cap` characters."""
    if not isinstance(value, str):
        return value
    text = one_line(value, cap)
    if _HARMLESS.match(value):
        return value
    return "'" + text if _FORMULA.match(value) or _FORMULA.match(text) else text


# what each slow pattern cannot match without (a test holds each hint to that): text without it is left as is
_SCHEME_HINT = re.compile(r"(?i):(?=//|[a-z0-9])")  # the colon and what follows it, as _SCHEME reads them
_WWW_HINT = re.compile(r"[wW][wW][wW]\.")


def inert(text: str, cap: int = FIELD_CAP) -> str:
    """Text that renders as exactly its characters in CommonMark/GFM with raw HTML on: one line, no invisible or
    bidi characters, HTML and Markdown escaped, no scheme or www. an autolinker would take, at most `cap`
    characters."""
    text = html.escape(one_line(text, cap), quote=False)
    text = _MARKDOWN.sub(r"\\\1", text)
    text = _LEADING_BLOCK.sub(r"\\\1", text)
    text = _LEADING_NUMBER.sub(r"\1\\\2", text)
    if _SCHEME_HINT.search(text):
        text = _SCHEME.sub(r"\1\\[:\\]", text)
    if _WWW_HINT.search(text):
        text = _WWW.sub(r"www\\[.\\]", text)
    return _EMAIL.sub(r"\\[@\\]", text) if "@" in text else text
