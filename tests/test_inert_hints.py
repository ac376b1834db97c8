"""The shortcuts of card text (issue 26): a slow pattern runs only on text holding what it cannot match without, so
each hint must be a necessary condition of its pattern (else hostile text would skip an escape), and one_line's
str.split() must split where the regular expression \\s+ did."""

from __future__ import annotations

import re
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from cds_service.cards.render import BRACKETED_CODE, REF, _plain
from cds_service.fhir import inert as i

# the characters the patterns turn on, case-folding look-alikes (Kelvin sign, long s, dotless i, dotted I), spaces
ALPHABET = st.sampled_from(
    list("abwWxyzHTPS019:/.@|;,()[]-_+ \t\n\u00a0\u2003\u200b\u202e\u212a\u017f\u0131\u0130")
    + ["http", "www.", "javascript:", "Observation/", "sct|", "(sct|266721009)", "x@y.org", "://"]
)
TEXTS = st.lists(ALPHABET, max_size=40).map("".join)


@settings(max_examples=3000, deadline=None)
@given(TEXTS)
def test_each_hint_is_needed_by_its_pattern(text: str) -> None:
    if i._SCHEME.search(text):
        assert i._SCHEME_HINT.search(text)
    if i._WWW.search(text):
        assert i._WWW_HINT.search(text)
    if i._EMAIL.search(text):
        assert "@" in text
    if BRACKETED_CODE.search(text):
        assert "|" in text
    if REF.search(text):
        assert "/" in text


@settings(max_examples=2000, deadline=None)
@given(TEXTS)
def test_inert_escapes_as_every_pattern_run_on_everything(text: str) -> None:
    """inert() equals the same steps with no hint consulted."""
    plain = i.html.escape(i.one_line(text), quote=False)
    for pattern, fix in (
        (i._MARKDOWN, r"\\\1"),
        (i._LEADING_BLOCK, r"\\\1"),
        (i._LEADING_NUMBER, r"\1\\\2"),
        (i._SCHEME, r"\1\\[:\\]"),
        (i._WWW, r"www\\[.\\]"),
        (i._EMAIL, r"\\[@\\]"),
    ):
        plain = pattern.sub(fix, plain)
    assert i.inert(text) == plain


@settings(max_examples=2000, deadline=None)
@given(TEXTS)
def test_plain_finds_what_findall_finds(text: str) -> None:
    _, refs, codes = _plain.__wrapped__(text)
    assert codes == tuple(BRACKETED_CODE.findall(text))
    assert refs == tuple(REF.findall(BRACKETED_CODE.sub("", text)))


def test_split_is_the_whitespace_of_backslash_s_for_every_code_point() -> None:
    spaces = re.compile(r"\s")
    differ = [hex(cp) for cp in range(sys.maxunicode + 1) if chr(cp).isspace() != bool(spaces.fullmatch(chr(cp)))]
    assert differ == []
    text = "\u00a0 a\u2003\u2003b\t\x0bc \u3000"
    assert " ".join(text.split()) == re.sub(r"\s+", " ", text).strip() == "a b c"
