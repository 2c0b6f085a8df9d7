"""Property: whatever a user (or an attacker) puts in spec files, the CLI exits 0, or 2 with
located messages, and never shows a traceback.

Inputs: mutated blueprints, YAML aliases, deep nesting, huge scalars, arbitrary unicode
and bytes, and `extends:` graphs (chains, cycles, directories, missing files).
Each property runs a few dozen examples by default (seconds); the heavy tier runs each
with 10,000: `pytest -m heavy tests/test_fuzz.py` (or PLINTH_FUZZ_HEAVY=1).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from support import ROOT
from plinth.cli import main
from plinth.spec.yamltree import MAX_BYTES, MAX_DEPTH

MINIMAL_TEXT = (ROOT / "blueprints" / "minimal.yaml").read_text()
BASE = YAML(typ="safe").load(MINIMAL_TEXT)
HEAVY_EXAMPLES = 10_000


@pytest.fixture(autouse=True)
def _heavy_only_when_asked(request):
    """The heavy tier runs only when selected (`-m heavy`) or asked for (PLINTH_FUZZ_HEAVY=1)."""
    if request.node.get_closest_marker("heavy") is None:
        return
    selected = "heavy" in (request.config.getoption("markexpr") or "").replace("not heavy", "")
    if not (selected or os.environ.get("PLINTH_FUZZ_HEAVY")):
        pytest.skip("heavy fuzz tier: run with -m heavy or PLINTH_FUZZ_HEAVY=1")


def tiers(default: int) -> list:
    return [pytest.param(default, id="default"),
            pytest.param(HEAVY_EXAMPLES, id="heavy", marks=pytest.mark.heavy)]


def check(strategy, examples: int, prop) -> None:
    """Run `prop` on `examples` draws of `strategy` (hypothesis; shrinks any failure)."""
    settings(max_examples=examples, deadline=None, database=None,
             suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])(given(strategy)(prop))()


# --- running the CLI in-process -------------------------------------------------------


def run_cli(*args) -> tuple[int, str]:
    err = io.StringIO()
    argv = sys.argv
    sys.argv = ["plinth", *args]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = argv
    return code, err.getvalue()


def assert_clean(code: int, err: str, files: tuple[str, ...]) -> None:
    """Exit 0, or 2 where every error names one of `files` first; never a traceback."""
    assert code in (0, 2), err
    assert "Traceback" not in err and "internal error" not in err, err
    if code == 2:
        *errors, summary = err.strip().splitlines()
        assert summary.endswith(("error", "errors")) and errors, err
        for line in errors:
            assert line.split(":", 1)[0].endswith(files), f"not located: {line!r}"


def cli_on_files(files: dict[str, bytes | str], entry: str, verb: str = "validate") -> None:
    """Write `files` into a fresh directory and run `plinth VERB entry` there."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, content in files.items():
            path = Path(tmp) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                content = content.encode("utf-8")
            path.write_bytes(content)
        code, err = run_cli(verb, str(Path(tmp) / entry))
    assert_clean(code, err, tuple(Path(n).name for n in files))


# --- mutated blueprints (planned: the whole program runs) ----------------------------

junk = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from paths(value, (*prefix, index))


ALL_PATHS = [p for p in paths(BASE) if p]


@st.composite
def mutated(draw):
    doc = YAML(typ="safe").load(MINIMAL_TEXT)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent = doc
        try:
            for part in path[:-1]:
                parent = parent[part]
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                parent[path[-1]] = draw(junk)
            elif action == "delete" and isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif isinstance(parent, dict):
                parent[draw(st.text(min_size=1, max_size=10))] = draw(junk)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or reshaped this path
    return doc


def dump(doc) -> str:
    stream = io.StringIO()
    YAML(typ="safe").dump(doc, stream)
    return stream.getvalue()


@pytest.mark.parametrize("examples", tiers(20))  # a plan takes a third of a second: few by default
def test_mutated_blueprints_plan_or_exit_2(examples):
    check(mutated(), examples, lambda doc: cli_on_files({"fuzz.yaml": dump(doc)}, "fuzz.yaml", verb="plan"))


# --- hostile YAML (validated: the reader and loader are what is under test) ----------

# A place in the minimal blueprint to put something: (text before, text after).
SPOTS = [("x-junk: ", "\n"), ("metadata:\n  costCenter: ", "\n"), ("teams:\n  - name: fraud\n    quota:\n      cpu: ",
                                                                   "\n"), ("rbac:\n  platformAdminGroup: ", "\n")]


def at_spot(spot: int, value: str) -> str:
    before, after = SPOTS[spot]
    return f"extends: minimal.yaml\n{before}{value}{after}"


@st.composite
def aliased(draw):
    """Anchors and aliases (plain, in flow lists, behind `<<:` merge keys), anywhere."""
    anchor = draw(st.sampled_from(["a", "base", "x"]))
    use = draw(st.sampled_from([f"*{anchor}", f"[*{anchor}, *{anchor}]", f"{{<<: *{anchor}}}"]))
    value = draw(st.sampled_from(["{cpu: '1'}", "[lol, lol]", "fraud", "1"]))
    spot = draw(st.integers(0, len(SPOTS) - 1))
    return f"x-anchor: &{anchor} {value}\n" + at_spot(spot, use)


@st.composite
def deep(draw):
    """Flow or block nesting around the limit, in a spec field or an extension."""
    depth, spot = draw(st.integers(1, MAX_DEPTH + 40)), draw(st.integers(0, len(SPOTS) - 1))
    if draw(st.booleans()):
        opening, closing = draw(st.sampled_from([("[", "]"), ("{a: ", "}")]))
        value = opening * depth + "1" + closing * depth
    else:
        line = SPOTS[spot][0].rsplit("\n", 1)[-1]
        indent = len(line) - len(line.lstrip()) + 2  # each level under the key it nests in
        value = "".join(f"\n{' ' * (indent + 2 * i)}k{i}:" for i in range(depth)) + " 1"
    return at_spot(spot, value)


@st.composite
def huge(draw):
    """Long scalars and numbers: quoted and plain, under and over the file size limit."""
    size = draw(st.sampled_from([1, 50, 101, 5_000, MAX_BYTES + 1]))
    kind = draw(st.sampled_from(["digits", "quoted", "text", "hex", "float"]))
    body = {"digits": "9" * size, "quoted": f"'{'9' * size}'", "text": "a" * size,
            "hex": "0x" + "f" * size, "float": "1." + "9" * size + "e400"}[kind]
    return at_spot(draw(st.integers(0, len(SPOTS) - 1)), body)


unicode_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@st.composite
def unicode_docs(draw):
    """Arbitrary unicode keys and values, or bytes that are not UTF-8 at all."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=64))
    doc = YAML(typ="safe").load(MINIMAL_TEXT)
    for _ in range(draw(st.integers(1, 3))):
        target = draw(st.sampled_from([doc, doc["metadata"], doc["teams"][0], doc["rbac"]]))
        target[draw(st.sampled_from([draw(unicode_text), "name", "costCenter", "platformAdminGroup"]))] = \
            draw(unicode_text)
    return dump(doc)


@pytest.mark.parametrize("examples", tiers(25))
@pytest.mark.parametrize("strategy", [aliased, deep, huge], ids=["aliases", "nesting", "huge-scalars"])
def test_hostile_yaml_exits_0_or_2(strategy, examples):
    check(strategy(), examples, lambda text: cli_on_files({"minimal.yaml": MINIMAL_TEXT, "fuzz.yaml": text},
                                                          "fuzz.yaml"))


@pytest.mark.parametrize("examples", tiers(40))
def test_unicode_exits_0_or_2(examples):
    check(unicode_docs(), examples, lambda content: cli_on_files({"fuzz.yaml": content}, "fuzz.yaml"))


# --- extends graphs -------------------------------------------------------------------

NAMES = ["a.yaml", "b.yaml", "sub/c.yaml", "sub/d.yaml", "sub/deeper/e.yaml"]


@st.composite
def extends_graphs(draw):
    """Up to five blueprints, in nested directories, each extending another, itself, a directory, a
    missing file, nothing, or not a path at all: chains, cycles and dead ends."""
    files: dict[str, str] = {"base.yaml": MINIMAL_TEXT}
    count = draw(st.integers(1, len(NAMES)))
    for name in NAMES[:count]:
        here = Path(name).parent
        target = draw(st.sampled_from([*NAMES[:count], "base.yaml", "sub", ".", "missing.yaml", None, 7, ""]))
        if isinstance(target, str) and target.endswith(".yaml"):
            target = os.path.relpath(target, here)  # paths are relative to the extending file
        body = draw(st.sampled_from(["", "metadata:\n  environment: prod\n", "teams:\n  - name: fraud\n"
                                     "    $delete: true\n", "teams:\n  - name: new\n"]))
        head = "" if target is None else f"extends: {target!r}\n" if isinstance(target, str) else f"extends: {target}\n"
        files[name] = head + body
    return files, draw(st.sampled_from(NAMES[:count]))


@pytest.mark.parametrize("examples", tiers(40))
def test_extends_graphs_exit_0_or_2(examples):
    check(extends_graphs(), examples, lambda graph: cli_on_files(*graph))


def test_a_long_extends_chain_is_refused_at_its_line(tmp_path, monkeypatch):
    # Beyond the fuzzed sizes: a chain of 200 would recurse once per link.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b0.yaml").write_text(MINIMAL_TEXT)
    for i in range(1, 200):
        (tmp_path / f"b{i}.yaml").write_text(f"extends: b{i - 1}.yaml\n")
    code, err = run_cli("validate", "b199.yaml")
    assert (code, err) == (2, "b184.yaml:1:1: extends: more than 16 blueprints in one `extends:` chain; merge some "
                              "of them into one file\n1 error\n")
