"""Render a plan to a directory: Kubernetes manifests per component, Helm releases' values.

The output is deterministic (same spec, byte-identical files) so it can be
reviewed or committed for GitOps. Secret values are never written.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from plinth.plan import Plan, Resource

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
MANIFEST = ".plinth-rendered"
"""Lists the files the last render wrote, so a re-render removes stale ones."""

# Apply order for readers: cluster-scoped foundations first.
KIND_ORDER = ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "ServiceAccount",
              "Secret", "ConfigMap", "Role", "RoleBinding", "ResourceQuota", "LimitRange", "NetworkPolicy")


def kubernetes_objects(plan: Plan) -> list[tuple[Resource, dict]]:
    """(resource, object) for every Kubernetes object in the plan (not providers or Helm releases)."""
    out = []
    for res in plan.resources:
        if res.custom and res.type.startswith("kubernetes:") and res.type != HELM_RELEASE:
            out.append((res, redact(res.inputs)))
    return out


def redact(obj: dict) -> dict:
    """A Kubernetes object safe to print: Secret payloads removed and the removal annotated."""
    if obj.get("kind") != "Secret":
        return obj
    payload = sorted(k for k in ("data", "stringData") if k in obj)
    if not payload:
        return obj
    out = {k: v for k, v in obj.items() if k not in payload}
    meta = dict(out.get("metadata", {}))
    meta["annotations"] = {**meta.get("annotations", {}), "plinth.dev/redacted": ",".join(payload)}
    out["metadata"] = meta
    return out


def top_component(by_urn: dict[str, Resource], res: Resource) -> str:
    """Name of the resource's outermost component (one rendered file per component)."""
    node = res
    while node.parent and node.parent in by_urn:
        node = by_urn[node.parent]
    return node.name


def render(plan: Plan, out_dir: Path) -> list[Path]:
    """Write manifests and Helm values; returns the files written (sorted)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_previous(out_dir)
    files: dict[str, list[str]] = {}
    by_urn = plan.by_urn()
    for res, obj in kubernetes_objects(plan):
        files.setdefault(f"{top_component(by_urn, res)}.yaml", []).append(_sort_key(obj) + _dump(_ordered(obj)))
    for res in plan.resources:
        if res.type == HELM_RELEASE:
            release = {k: res.inputs.get(k) for k in ("name", "namespace", "chart", "version", "repositoryOpts")}
            release["values"] = res.inputs.get("values", {})
            files[f"helm/{top_component(by_urn, res)}-{res.name}.yaml"] = [_dump(_sorted(release))]
    written = []
    for name, docs in sorted(files.items()):
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "---\n".join(doc.split("\x00", 1)[-1] for doc in sorted(docs))
        path.write_text(body, encoding="utf-8")
        written.append(path)
    (out_dir / MANIFEST).write_text("".join(f"{p.relative_to(out_dir)}\n" for p in written), encoding="utf-8")
    return written


def _remove_previous(out_dir: Path) -> None:
    manifest = out_dir / MANIFEST
    if manifest.is_file():
        for line in manifest.read_text(encoding="utf-8").splitlines():
            (out_dir / line).unlink(missing_ok=True)


def _sort_key(obj: dict) -> str:
    """Prefix that orders documents: kind order, namespace, name (stripped before writing)."""
    kind = obj.get("kind", "")
    rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
    meta = obj.get("metadata", {})
    return f"{rank:03d}/{kind}/{meta.get('namespace', '')}/{meta.get('name', '')}\x00"


def _ordered(obj: dict) -> dict:
    """apiVersion, kind, metadata first; every other mapping in sorted key order."""
    obj = _sorted(obj)
    head = {k: obj[k] for k in ("apiVersion", "kind", "metadata") if k in obj}
    return {**head, **{k: v for k, v in obj.items() if k not in head}}


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _dump(doc: Any) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False
    buf = io.StringIO()
    yaml.dump(doc, buf)
    return buf.getvalue()
