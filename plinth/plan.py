"""A plan: every resource the program declares, as recorded by the offline engine.

Plans are plain data (JSON with sorted keys), so they diff cleanly, render
deterministically and can be compared with what the real engine deploys.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PLAN_VERSION = 1
UNKNOWN = "(known after apply)"
"""Placeholder for values only a real deployment knows (cloud IDs, endpoints)."""
SECRET = "(secret)"
"""Placeholder for every secret value: plans and renders never hold secrets."""


@dataclass(frozen=True)
class Resource:
    urn: str
    type: str
    """Pulumi type token, e.g. kubernetes:core/v1:Namespace or plinth:tenancy:Team."""
    name: str
    parent: str | None
    """URN of the parent resource (None for children of the stack)."""
    custom: bool
    """True for real resources, False for components."""
    dependencies: tuple[str, ...] = ()
    provider: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    retained: bool = False
    """`pulumi destroy` leaves it in place (retainOnDelete): it holds data (storage.deleteDataOnDestroy off)."""

    @property
    def component_path(self) -> str:
        return self.urn.split("::")[2]

    @property
    def key(self) -> str:
        """The resource within its platform: the URN without stack and project (see resource_key)."""
        return resource_key(self.urn)


def resource_key(urn: str) -> str:
    """`urn:pulumi:STACK::PROJECT::TYPES::NAME` -> `TYPES::NAME`.

    Every URN names its stack, so keyed by URN two stacks (or a blueprint, planned as stack
    `offline`, and a stack) share no resource at all; keyed by this they compare like with like.
    """
    parts = urn.split("::", 2)
    return parts[2] if len(parts) == 3 and parts[0].startswith("urn:pulumi:") else urn


@dataclass(frozen=True)
class Plan:
    platform: str
    environment: str
    source: str
    """What was planned: a blueprint path or `stack:<name>`."""
    resources: tuple[Resource, ...]

    def to_json(self) -> str:
        # Plain dicts, not dataclasses.asdict: asdict deep-copies every input (most of a large plan's time).
        resources = [{"urn": r.urn, "type": r.type, "name": r.name, "parent": r.parent, "custom": r.custom,
                      "dependencies": list(r.dependencies), "provider": r.provider, "inputs": r.inputs,
                      "retained": r.retained}
                     for r in self.resources]
        doc = {"version": PLAN_VERSION, "platform": self.platform, "environment": self.environment,
               "source": self.source, "resources": resources}
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Plan:
        doc = json.loads(text)
        if doc.get("version") != PLAN_VERSION:
            raise ValueError(f"unsupported plan version {doc.get('version')!r} (expected {PLAN_VERSION})")
        resources = tuple(
            Resource(**{**r, "dependencies": tuple(r["dependencies"])}) for r in doc["resources"]
        )
        return cls(doc["platform"], doc["environment"], doc["source"], resources)

    def by_urn(self) -> dict[str, Resource]:
        return {r.urn: r for r in self.resources}

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.resources:
            counts[r.type] = counts.get(r.type, 0) + 1
        return dict(sorted(counts.items()))

    def write(self, out_dir: Path) -> Path:
        return write_output(out_dir, "plan.json", self.to_json())


class OutputError(ValueError):
    """An output directory Plinth cannot write into (bad input: the CLI exits 2)."""


def write_output(out_dir: Path, name: str, text: str) -> Path:
    """Write DIR/name whole or not at all (a temporary file beside it, then a rename); a link at the name
    is refused, never written through. OutputError when it cannot be written (checked up front by
    check_out_dir; this is what changed since)."""
    path = out_dir / name
    if path.is_symlink():
        raise OutputError(f"{path}: a symbolic link; refusing to write through it (remove it first)")
    tmp = None
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(tmp, 0o666 & ~_UMASK)  # as a plain write would create it (mkstemp makes 0600)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot write {name}: {exc.strerror or exc}") from None
    finally:
        if tmp and os.path.lexists(tmp):
            os.unlink(tmp)
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _umask()


def check_out_dir(out_dir: Path) -> None:
    """Refuse an output directory Plinth could not write, before any planning starts.

    `plan --out` and `render --out` both call it, so a typo fails in a second with a
    message instead of after the whole plan with an OSError. The directory itself is
    not created here (an invalid spec must leave nothing behind).
    """
    if out_dir.is_symlink() and not out_dir.exists():
        raise OutputError(f"{out_dir}: a link to nothing, not a directory")
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: exists and is not a directory")
    existing = out_dir
    while not existing.exists() and not existing.is_symlink() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{out_dir}: {existing} is not a directory, so nothing can be created under it")
    # A real probe, not os.access: root passes every permission check, yet a read-only
    # or pseudo file system still refuses.
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".plinth-probe-", dir=existing))
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot create files in {existing} ({exc.strerror or exc})") from None


def short_type(token: str) -> str:
    """kubernetes:rbac.authorization.k8s.io/v1:RoleBinding -> RoleBinding."""
    return token.rsplit(":", 1)[-1]


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def tree_lines(plan: Plan) -> list[str]:
    """A readable tree: components with their resources and counts."""
    kids: dict[str | None, list[Resource]] = {}
    for res in plan.resources:
        kids.setdefault(res.parent, []).append(res)

    def count(urn: str) -> int:
        return sum(1 if r.custom else count(r.urn) for r in kids.get(urn, ()))

    lines = [f"platform {plan.platform} ({plan.environment}) from {plan.source}: "
             f"{plural(sum(r.custom for r in plan.resources), 'resource')} in "
             f"{plural(sum(not r.custom for r in plan.resources), 'component')}"]

    def walk(parent: str | None, indent: str) -> None:
        children = kids.get(parent, [])
        for index, res in enumerate(children):
            last = index == len(children) - 1
            branch = "└─ " if last else "├─ "
            if res.custom:
                lines.append(f"{indent}{branch}{short_type(res.type)} {object_name(res)}")
            else:
                lines.append(f"{indent}{branch}{res.type} {res.name} ({plural(count(res.urn), 'resource')})")
            walk(res.urn, indent + ("   " if last else "│  "))

    walk(None, "")
    return lines


def object_name(res: Resource) -> str:
    meta = res.inputs.get("metadata")
    if isinstance(meta, dict) and "name" in meta:
        ns = meta.get("namespace")
        return f"{ns}/{meta['name']}" if ns else str(meta["name"])
    return res.name
