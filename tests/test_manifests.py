"""Render's YAML shortcuts against PyYAML, which they stand in for: the reader gives the values `yaml.load_all` gives
(types, key order, errors), and the writer the bytes `yaml.dump` writes, for every input; what they do not
cover goes to PyYAML whole."""

from __future__ import annotations

import datetime
import math

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import CHARTS_DIR
from plinth.engine import manifests
from plinth.engine.manifests import HEAD, dump_sorted, load_documents, sorted_mappings

# Text YAML 1.1 reads as something else, numbers in every notation, and text that needs quoting.
TRICKY = ["yes", "No", "on", "OFF", "y", "true", "False", "null", "~", "Null", "", "012", "0o17", "0x1F", "0b101",
          "1_000", "+12", "-3", "1.5", "1e3", "6.8523015e+5", "-.inf", ".NaN", "190:20:30", "1:20", "2001-12-14",
          "2001-12-14t21:59:43.10-05:00", "<<", "=", "!", "&a", "*a", "a b  c", "http://x:1/y", "0.0.1", "'", "a#b",
          "a: b", "- x", "-", "#x", " lead", "trail ", "multi\nline\n", "tab\there", "é ü 日本", "\u2028", "9" * 30]


def pyyaml_load(text: str) -> list:
    return [doc for doc in yaml.load_all(text, Loader=manifests._Loader) if isinstance(doc, dict)]


def pyyaml_dump(doc, first=()) -> str:
    return yaml.dump(sorted_mappings(doc, first), Dumper=manifests._DUMPER, default_flow_style=False,
                     sort_keys=False, allow_unicode=True, width=120)


def same(a, b) -> bool:
    """Equal, with NaN equal to itself and types compared too (1 == 1.0 == True would hide a wrong type)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(k, j) and same(a[k], b[j]) for k, j in zip(a, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


scalars = st.one_of(
    st.sampled_from(TRICKY), st.text(max_size=12), st.integers(-10**20, 10**20), st.booleans(), st.none(),
    st.floats(allow_nan=True), st.sampled_from([0.1, 1e20, -0.0, 3.0, 1e-7]))
keys = st.one_of(st.sampled_from(TRICKY + list(HEAD)), st.text(max_size=8), st.integers(-5, 5))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.sampled_from(TRICKY + list(HEAD)) | st.text(max_size=8), inner,
                                                 max_size=5)), max_leaves=40)
documents = st.dictionaries(keys.filter(lambda k: isinstance(k, str)), values, max_size=6)
STYLES = [{}, {"default_flow_style": True}, {"default_style": '"'}, {"default_style": "'"}, {"canonical": True},
          {"width": 20, "indent": 4}, {"explicit_start": True, "explicit_end": True}]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(documents, values), min_size=1, max_size=3), st.sampled_from(STYLES))
def test_reading_gives_what_pyyaml_reads(docs, style):
    text = yaml.dump_all(docs, Dumper=yaml.SafeDumper, allow_unicode=True, **style)
    assert same(load_documents(text), pyyaml_load(text))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(documents, values))
def test_writing_gives_pyyamls_bytes(doc):
    assert dump_sorted(doc, HEAD) == pyyaml_dump(doc, HEAD)
    assert dump_sorted(doc) == pyyaml_dump(doc)


# YAML the reader leaves to PyYAML, or reads in a way that is easy to get wrong.
EDGES = [
    "a: &x {b: 1}\nc: *x\n",                                     # anchors and aliases: the same object twice
    "base: &b {x: 1, y: 2}\nmine:\n  <<: *b\n  y: 3\n",          # a merge key
    "a: !!str 12\nb: !!int '7'\nc: !!binary aGk=\n",             # explicit tags
    "? [a, b]\n: c\n",                                           # a complex key
    "a: 2001-12-14\nb: 2001-12-14 21:59:43.10 -5\n",             # timestamps
    "a: 1\na: 2\n",                                              # a repeated key: the last one wins
    "---\n# Source: only a comment\n---\nkind: A\n---\n- a list\n---\nplain\n",  # empty and non-mapping documents
    "value: =\nkey: {=: x}\n",                                   # YAML 1.1's `value` type, read as text
    "a: !custom 1\n",                                            # a tag the safe loader refuses
    "a: [1, {b: [c, {d: e}]}, [[]], {}]\n",                      # nesting of every kind
    "a: ! 12\n",                                                 # the non-specific tag
]


@pytest.mark.parametrize("text", EDGES)
def test_edge_cases_read_as_pyyaml_reads_them(text):
    try:
        expected = pyyaml_load(text)
    except yaml.YAMLError as exc:
        with pytest.raises(type(exc)):
            load_documents(text)
        return
    assert same(load_documents(text), expected)


@pytest.mark.parametrize("text", ["a: [1, 2\n", "a: b: c\n", "a:\n\t- b\n", "'open\n", "a: *nowhere\n"])
def test_broken_yaml_raises_what_pyyaml_raises(text):
    with pytest.raises(yaml.YAMLError) as expected:
        pyyaml_load(text)
    with pytest.raises(type(expected.value)) as got:
        load_documents(text)
    assert str(got.value) == str(expected.value)


def test_values_pyyaml_writes_with_aliases_or_refuses_are_left_to_it():
    when = datetime.datetime(2001, 12, 14, 21, 59, 43)
    shared = {"x": [1, 2]}
    for doc in ({"a": when, "b": when}, {"a": shared, "b": shared}, {"a": b"bytes", "b": datetime.date(2001, 1, 2)},
                {"a": (1, 2), "b": {3, 4}}):
        assert dump_sorted(doc, HEAD) == pyyaml_dump(doc, HEAD)
    with pytest.raises(yaml.representer.RepresenterError):
        dump_sorted({"a": object()})


def test_the_top_mappings_first_keys_lead_and_the_rest_are_sorted():
    doc = {"spec": {"z": 1, "a": [{"y": 1, "b": 2}]}, "metadata": {"name": "x"}, "kind": "K", "apiVersion": "v1"}
    assert dump_sorted(doc, HEAD) == ("apiVersion: v1\nkind: K\nmetadata:\n  name: x\nspec:\n  a:\n  - b: 2\n"
                                      "    y: 1\n  z: 1\n")


def test_real_crd_bundles_read_and_write_as_pyyaml_does():
    bundles = sorted((CHARTS_DIR / "crds").glob("*/*.yaml"))
    if not bundles:
        pytest.skip(f"no CRD bundles under {CHARTS_DIR}/crds (set PLINTH_CHARTS_DIR to a directory chart source)")
    for path in bundles:
        text = path.read_text(encoding="utf-8")
        docs = load_documents(text)
        assert same(docs, pyyaml_load(text)), path
        assert [dump_sorted(doc, HEAD) for doc in docs] == [pyyaml_dump(doc, HEAD) for doc in docs], path
