"""The README stays true: its generated numbers are what the code makes today."""

from __future__ import annotations

import difflib

import readme_numbers


def test_the_readme_numbers_are_what_the_plans_say():
    text = readme_numbers.README.read_text(encoding="utf-8")
    assert readme_numbers._EXAMPLE.search(text), "the README lost its `plinth plan` example"
    assert readme_numbers._STACK_COUNT.search(text), "the README lost its stack resource counts"
    drift = list(difflib.unified_diff(text.splitlines(), readme_numbers.expected(text).splitlines(), lineterm="", n=0))
    assert not drift, "README numbers drifted; run `python tests/readme_numbers.py`:\n" + "\n".join(drift)
