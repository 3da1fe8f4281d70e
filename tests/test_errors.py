"""edge.errors.first_line: the one helper for "the first line of an error message"."""

from __future__ import annotations

import pytest

from edge.errors import first_line


@pytest.mark.parametrize(
    ("text", "default", "expected"),
    [
        ("one line", "", "one line"),
        ("first\nsecond", "", "first"),
        ("\n\n  indented first  \nsecond", "", "indented first"),
        ("", "fallback", "fallback"),  # an empty message must not raise IndexError
        ("   \n \t\n", "fallback", "fallback"),
        (ValueError("bad value\ntraceback detail"), "", "bad value"),
        (ValueError(), "ValueError", "ValueError"),
    ],
)
def test_first_line(text: object, default: str, expected: str) -> None:
    assert first_line(text, default) == expected
