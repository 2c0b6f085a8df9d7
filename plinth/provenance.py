"""Where a spec came from: its files (blueprint chain and stack file) with their hashes, and the commit.

Recorded in the platform ledger (modules/governance) and the compliance report, so what runs can
be traced to the exact files that produced it. Paths are relative to the project (the directory
holding Pulumi.yaml), so the record does not depend on where a command was started.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from plinth.spec.yamltree import read_extends


@dataclass(frozen=True)
class Provenance:
    files: tuple[tuple[str, str], ...] = ()
    """(path relative to the project, sha256) of every file the spec was read from, the stack file last."""
    commit: str | None = None
    """The last commit that touched those files (None outside a git checkout, or for files it does not track)."""

    @classmethod
    def of(cls, blueprint: Path, stack_file: Path | None = None) -> Provenance:
        paths = [*blueprint_chain(blueprint), *([stack_file] if stack_file else [])]
        root = project_root(blueprint)
        files = tuple((_relative(p, root), hashlib.sha256(p.read_bytes()).hexdigest()) for p in paths)
        return cls(files, _last_commit(root, paths))

    def as_dict(self) -> dict:
        return {"files": [{"path": p, "sha256": h} for p, h in self.files], "commit": self.commit}


def blueprint_chain(blueprint: Path) -> list[Path]:
    """The blueprint and every blueprint it extends, most basic first (the loader has refused cycles)."""
    chain: list[Path] = []
    path: Path | None = blueprint.resolve()
    while path is not None and path not in chain:
        chain.append(path)
        parent = read_extends(path)
        path = (path.parent / parent).resolve() if isinstance(parent, str) else None
    return chain[::-1]


def project_root(path: Path) -> Path:
    for candidate in path.resolve().parents:
        if (candidate / "Pulumi.yaml").is_file():
            return candidate
    return path.resolve().parent


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        return path.name


def _last_commit(root: Path, paths: list[Path]) -> str | None:
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%H", "--", *map(str, paths)], cwd=root,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
