"""Imports run one way: core <- modules <- governance's policies <- the commands and the program.

- core: what every service builds on (the spec's models, the catalog, the context, PlatformService, the shared
  vocabulary and object builders); it imports core only.
- modules: one package per service (plinth.modules); core and other modules.
- policies: plinth.governance.policies, the one policy implementation; core and modules.
- the composition: the program (SERVICES), the spec's loader and rules (they ask each service), the commands
  and engines, `plinth check` and `plinth report`; anything.

Every import counts, function-local ones too: a layer that needs something above it has a name in the wrong
place (move it down to core, usually plinth.vocabulary)."""

from __future__ import annotations

import ast
from pathlib import Path

from support import ROOT

COMPOSITION = {
    "plinth.program", "plinth.cli", "plinth.engine", "plinth.mirror", "plinth.render", "plinth.verify",
    "plinth.canary", "plinth.gate", "plinth.lineage", "plinth.promote", "plinth.diff", "plinth.stackconfig",
    "plinth.spec.load", "plinth.spec.rules", "plinth.spec.schema", "plinth.governance.check", "plinth.governance.report",
}
ORDER = ("core", "modules", "policies", "composition")


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[0] == "modules":
        parts = ["plinth", *parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    if module.startswith("plinth.modules"):
        return "modules"
    if module.startswith("plinth.governance.policies"):
        return "policies"
    if any(module == c or module.startswith(c + ".") for c in COMPOSITION):
        return "composition"
    return "core"


def imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in [*(ROOT / "plinth").rglob("*.py"), *(ROOT / "modules").rglob("*.py")]:
        if (ROOT / "plinth" / "modules") in path.parents:
            continue  # the installed alias of modules/
        names = found.setdefault(_name(path), set())
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("plinth"):
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(a.name for a in node.names if a.name.startswith("plinth"))
    return found


def test_every_import_points_down_or_across():
    upward = sorted((module, target) for module, targets in imports().items() for target in targets
                    if ORDER.index(layer(target)) > ORDER.index(layer(module)))
    assert upward == []


def test_each_layer_has_members():
    # The classification above names real modules: a renamed file cannot silently leave its layer.
    layers = {layer(module) for module in imports()}
    assert layers == set(ORDER)
    assert {c for c in COMPOSITION if not any(m == c or m.startswith(c + ".") for m in imports())} == set()
