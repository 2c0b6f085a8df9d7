"""The README's numbers, from the plans themselves: `python tests/readme_numbers.py` rewrites them, and
tests/test_readme.py fails when the README drifts from what this would write.

Generated: the `plinth plan` example (the minimal blueprint's tree, its first lines), every
"(N resources)" that names a stack next to it (`plinth plan --stack S ... (N resources)`), and the resource
and component counts of the benchmark table's `plinth plan blueprints/...` rows.
Timings stay the benchmarks' (bench/*.py print them): they are measurements, not facts of the code.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
EXAMPLE_LINES = 15
"""How much of the minimal blueprint's plan tree the README shows (then `...`)."""
_EXAMPLE = re.compile(r"(## What `plinth plan` shows\n\n```text\n)(.*?)(```\n)", re.S)
_BLUEPRINT_ROW = re.compile(r"(\| `plinth plan (?P<path>blueprints/[\w.-]+\.yaml)` \| [\d.]+ \| )(?P<n>\d[\d,]*) resources in "
                            r"(?P<c>\d+) components( \|)")
_STACK_COUNT = re.compile(r"(`plinth plan --stack (?P<stack>[\w.-]+)`[^()]*?\()(?P<n>\d[\d,]*)( resources\))", re.S)


def _plan(blueprint: Path | None = None, stack: str | None = None):
    from plinth.engine.offline import plan
    from plinth.provenance import Provenance
    from plinth.spec.load import load_spec, load_stack_spec, read_stack

    if stack:
        path, _ = read_stack(ROOT, stack)
        return plan(load_stack_spec(ROOT, stack), f"stack:{stack}", stack=stack,
                    provenance=Provenance.of(path, ROOT / "stacks" / f"Pulumi.{stack}.yaml"))
    assert blueprint is not None
    return plan(load_spec(blueprint), str(blueprint.relative_to(ROOT)), provenance=Provenance.of(blueprint))


def expected(text: str) -> str:
    """The README text with every generated number as the code makes it today."""
    from plinth.plan import tree_lines

    tree = tree_lines(_plan(ROOT / "blueprints" / "minimal.yaml"))
    text = _EXAMPLE.sub(lambda m: m[1] + "\n".join([*tree[:EXAMPLE_LINES], "..."]) + "\n" + m[3], text, count=1)

    def count(match: re.Match) -> str:
        resources = sum(r.custom for r in _plan(stack=match["stack"]).resources)
        return f"{match[1]}{resources:,}{match[4]}"

    def row(match: re.Match) -> str:
        planned = _plan(ROOT / match["path"])
        resources, components = sum(r.custom for r in planned.resources), sum(not r.custom for r in planned.resources)
        return f"{match[1]}{resources:,} resources in {components} components{match[5]}"

    return _BLUEPRINT_ROW.sub(row, _STACK_COUNT.sub(count, text))


def main() -> int:
    text = README.read_text(encoding="utf-8")
    new = expected(text)
    if new != text:
        README.write_text(new, encoding="utf-8")
        print(f"{README.name}: numbers updated")
    else:
        print(f"{README.name}: numbers are current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
