"""The spec reader's fast path (libyaml's events) against the round-trip reader it stands in for: the same values,
types and positions for every document it takes, and every other document left to the round-trip reader."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import ROOT
from plinth.spec import yamltree
from plinth.spec.errors import SpecInvalid

# Plain scalars YAML 1.2 and 1.1 read differently, numbers in every notation, and text that looks like them.
PLAIN = ["fraud", "yes", "no", "on", "off", "true", "False", "TRUE", "null", "~", "Null", "012", "0o17", "0x1F", "0b101",
         "1_000", "+12", "-3", "1.5", "1e3", "-.inf", ".NaN", "1:20", "2001-12-14", "<<", "=", "a b  c", "http://x:1/y",
         "0.0.1", "1.", "'", "a#b", "-x", "", "9" * 30]
QUOTED = ["'yes'", '"012"', "'it''s'", '"tab\\there"', '"\\u00e9"', "''", '"multi\n  line"']
BLOCKS = ["|\n{i}  line one\n{i}  line two\n", ">-\n{i}  folded\n{i}  text\n", "|+\n{i}  kept\n\n"]
KEYS = ["name", "team", "x-ext", "1", "true", "'quoted key'", "on", "cpu", "gpu", "null"]

scalar = st.one_of(st.sampled_from(PLAIN), st.sampled_from(QUOTED))


@st.composite
def node(draw, indent: int, depth: int):
    """(text after `key:` or `- `, whether it starts on the next line)."""
    kind = draw(st.sampled_from(["scalar", "block", "map", "seq", "flow"] if depth < 4 else ["scalar", "flow"]))
    pad = " " * indent
    if kind == "scalar":
        return draw(scalar), False
    if kind == "block":
        return draw(st.sampled_from(BLOCKS)).format(i=pad), None
    if kind == "flow":
        items = draw(st.lists(st.sampled_from([p for p in PLAIN if p not in ("", "'", "-x", "a#b")] + QUOTED[:3]),
                              max_size=3))
        return ("[" + ", ".join(items) + "]") if draw(st.booleans()) else \
            ("{" + ", ".join(f"k{n}: {v}" for n, v in enumerate(items)) + "}"), False
    lines = []
    if kind == "map":
        for key in dict.fromkeys(draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=4))):
            text, nested = draw(node(indent + 2, depth + 1))
            lines.append(_entry(f"{pad}{key}:", text, nested, indent + 2))
    else:
        for _ in range(draw(st.integers(1, 3))):
            text, nested = draw(node(indent + 2, depth + 1))
            lines.append(_entry(f"{pad}-", text, nested, indent + 2))
    return "".join(lines), True


def _entry(head: str, text: str, nested: bool | None, indent: int) -> str:
    if nested is None:  # a block scalar: its indicator on this line
        return f"{head} {text}"
    if nested:
        return f"{head}\n{text}"
    return f"{head} {text}\n".replace("\n  line", "\n" + " " * indent + "line")


@st.composite
def documents(draw):
    text, nested = draw(node(0, 0).filter(lambda n: n[1]))
    comment = draw(st.sampled_from(["", "# a comment\n", "---\n"]))
    return comment + text


def round_trip(text: str, tmp_path) -> object:
    """What the round-trip reader alone makes of `text` (the fast path switched off)."""
    path = tmp_path / "doc.yaml"
    path.write_text(text)
    saved = yamltree._read_fast
    yamltree._read_fast = lambda text, name: yamltree._UNSURE
    try:
        return shape(yamltree.read_yaml(path))
    except SpecInvalid as error:
        return ("refused", str(error))
    finally:
        yamltree._read_fast = saved


def fast(text: str, tmp_path) -> object:
    try:
        got = yamltree._read_fast(text, str(tmp_path / "doc.yaml"))
    except SpecInvalid as error:
        return ("refused", str(error))
    return got if got is yamltree._UNSURE else shape(got)


def shape(value: object) -> object:
    """Values with their exact types and every position, comparable with ==."""
    if isinstance(value, dict):
        return ("map", value.loc, [(type(k).__name__, k, value.locs.get(k), shape(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("seq", value.loc, list(value.locs), [shape(v) for v in value])
    if isinstance(value, float) and math.isnan(value):
        return ("float", "nan")
    return (type(value).__name__, value)


def test_generated_documents_read_the_same_on_both_paths(tmp_path):
    taken = []

    def same(text):
        got = fast(text, tmp_path)
        if got is not yamltree._UNSURE:
            taken.append(text)
            assert got == round_trip(text, tmp_path), text

    settings(max_examples=300, deadline=None, database=None,
             suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])(given(documents())(same))()
    assert len(taken) > 100, f"the fast path took only {len(taken)} of 300 documents"


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT) for p in [*ROOT.glob("blueprints/*.yaml"),
                                                                       *ROOT.glob("stacks/*.yaml")]), ids=str)
def test_every_blueprint_and_stack_takes_the_fast_path_with_the_same_result(path, tmp_path):
    text = (ROOT / path).read_text()
    got = fast(text, tmp_path)
    assert got is not yamltree._UNSURE
    assert got == round_trip(text, tmp_path)


@pytest.mark.parametrize("text", [
    "%YAML 1.1\n---\nenabled: yes\n",  # YAML 1.1 reads `yes` as true: the round-trip reader knows the directive
    "a: 1\na: 2\n",  # a repeated key is refused, at its line, by the round-trip reader
    "x-a: 1\nx-a: 2\n",
    "base: &b {cpu: 1}\nteam: {<<: *b}\n",  # aliases: refused
    "when: 2001-12-14\n",
    "n: !!str 12\n",
    "? [complex]\n: key\n",
    "a: 1\n---\nb: 2\n",
    "",
], ids=["yaml-1.1", "repeated-key", "repeated-extension", "merge-key", "date", "explicit-tag", "complex-key",
         "two-documents", "empty"])
def test_what_the_fast_path_cannot_vouch_for_goes_to_the_round_trip_reader(text, tmp_path):
    assert fast(text, tmp_path) is yamltree._UNSURE or text.startswith("base:")
    path = tmp_path / "doc.yaml"
    path.write_text(text)
    try:
        via_read = shape(yamltree.read_yaml(path))
    except SpecInvalid as error:
        via_read = ("refused", str(error))
    assert via_read == round_trip(text, tmp_path)


def test_the_fast_path_refuses_an_alias_at_its_line(tmp_path):
    with pytest.raises(SpecInvalid, match="YAML aliases"):
        yamltree._read_fast("base: &b {cpu: 1}\nteam: *b\n", "doc.yaml")
