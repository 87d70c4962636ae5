"""Secrets never survive into stored or shown text: whole, cut at an edge, or split across streamed pieces."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from core.redaction import REDACTED, Redactor, StreamRedactor, cut

KEY = "sk-live-0123456789abcdef"


def test_a_key_anywhere_in_text_or_structured_values_is_redacted():
    r = Redactor([KEY, None, "", "abc"])  # empty and too-short values are not secrets to hunt
    assert r.text(f"key={KEY}; again {KEY}") == f"key={REDACTED}; again {REDACTED}"
    assert r.value({"a": [KEY, {KEY: 1}], "n": 3}) == {"a": [REDACTED, {REDACTED: 1}], "n": 3}
    assert r.text("abc stays") == "abc stays"


def test_a_key_cut_at_either_edge_by_someone_elses_truncation_is_removed():
    r = Redactor([KEY])
    assert r.text("error: " + KEY[:14]) == "error: " + REDACTED
    assert r.text(KEY[-12:] + " was echoed") == REDACTED + " was echoed"
    assert r.text("error: sk-l") == "error: sk-l"  # too short a piece to mean anything


def test_redact_then_cut_never_leaves_a_piece_of_the_key():
    text = "x" * 290 + KEY + " tail"
    shown = cut(Redactor([KEY]).text(text), 300)
    assert not any(KEY[i : i + 8] in shown for i in range(len(KEY) - 7))
    assert shown.endswith("more chars]")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30), st.text(max_size=30), st.lists(st.integers(min_value=0, max_value=80), max_size=6))
def test_streamed_pieces_are_redacted_however_the_key_is_split(before, after, cuts):
    text = before + KEY + after + KEY
    points = sorted({min(c, len(text)) for c in cuts} | {0, len(text)})
    pieces = [text[a:b] for a, b in itertools.pairwise(points)]
    out: list[str] = []
    stream = StreamRedactor(Redactor([KEY]), out.append)
    for piece in pieces:
        stream.add(piece)
    stream.flush()
    joined = "".join(out)
    assert KEY not in joined and joined == Redactor([KEY]).text(text)
