"""Render a plan to a directory: Kubernetes manifests per component, Helm releases' values.

The output is deterministic (same spec, byte-identical files) so it can be
reviewed or committed for GitOps. Secret values are never written.
"""

from __future__ import annotations

from pathlib import Path

from plinth.engine.charts import CONFIG_GROUP, HELM_RELEASE, Rendered
from plinth.engine.manifests import as_written, dump, dump_sorted, redact, sorted_mappings
from plinth.plan import OutputError, Plan, Resource

MANIFEST = ".plinth-rendered"
"""Lists the files the last render wrote, so a re-render removes stale ones."""


def kubernetes_objects(plan: Plan) -> list[tuple[Resource, dict]]:
    """(resource, object) for every Kubernetes object in the plan (not providers or Helm releases)."""
    out = []
    for res in plan.resources:
        if res.custom and res.type.startswith("kubernetes:") and res.type not in (HELM_RELEASE, CONFIG_GROUP):
            out.append((res, redact(res.inputs)))
    return out


CLOUD_PACKAGES = ("aws", "gcp")


def cloud_resources(plan: Plan) -> list[Resource]:
    """The cloud target's resources (and its cloud provider), in plan order: what `cloud.yaml` shows."""
    return [r for r in plan.resources
            if r.type.split(":", 1)[0] in CLOUD_PACKAGES or r.type in {f"pulumi:providers:{p}" for p in CLOUD_PACKAGES}]


def top_component(by_urn: dict[str, Resource], res: Resource) -> str:
    """Name of the resource's outermost component (one rendered file per component)."""
    node = res
    while node.parent and node.parent in by_urn:
        node = by_urn[node.parent]
    return node.name


def render(plan: Plan, out_dir: Path, charts: list[Rendered] | None = None) -> list[Path]:
    """Write manifests, Helm values and (given `charts`) every object of the real charts; the files written.

    Per component `<component>.yaml` holds the objects Plinth authors; `cloud.yaml` the cloud target's
    resources with their inputs (eks, gke; unknown cloud IDs as placeholders); `helm/<component>-<release>.yaml`
    each release's chart, version and values; `charts/<component>-<release>.yaml` what the chart itself
    renders with those values (or, in the helm/ file, a `note` saying why it could not be rendered).
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # the CLI checks first (check_out_dir); direct callers get the same error
        raise RenderError(f"{out_dir}: cannot create the directory: {exc.strerror or exc}") from None
    _remove_previous(out_dir)
    files: dict[str, list[str]] = {}
    by_urn = plan.by_urn()
    for res, obj in kubernetes_objects(plan):
        files.setdefault(f"{top_component(by_urn, res)}.yaml", []).append(as_written(obj))
    notes = {r.resource.urn: r.note for r in charts or () if r.note}
    for res in plan.resources:
        if res.type == HELM_RELEASE:
            release = {k: res.inputs.get(k) for k in ("name", "namespace", "chart", "version", "repositoryOpts")}
            release["values"] = res.inputs.get("values", {})
            if res.urn in notes:
                release["note"] = f"not rendered: {notes[res.urn]}"
            files[f"helm/{top_component(by_urn, res)}-{res.name}.yaml"] = [dump_sorted(release)]
    cloud = cloud_resources(plan)
    if cloud:
        files["cloud.yaml"] = [dump([{"type": r.type, "name": r.name, "inputs": sorted_mappings(r.inputs)}
                                     for r in cloud])]
    for rendered in charts or ():
        if rendered.objects:
            name = f"charts/{top_component(by_urn, rendered.resource)}-{rendered.resource.name}.yaml"
            files[name] = list(rendered.documents) or [as_written(obj) for obj in rendered.objects]
    written = []
    for name, docs in sorted(files.items()):
        path = out_dir / name
        _write_inside(out_dir, path, "---\n".join(doc.split("\x00", 1)[-1] for doc in sorted(docs)))
        written.append(path)
    _write_inside(out_dir, out_dir / MANIFEST, "".join(f"{p.relative_to(out_dir)}\n" for p in written))
    return written


def _inside(out_dir: Path, path: Path) -> bool:
    """True when `path`'s directory really is `out_dir` or below it (no `..`, no link leading out)."""
    return path.parent.resolve().is_relative_to(out_dir.resolve())


def _write_inside(out_dir: Path, path: Path, text: str) -> None:
    """Write a file of the render; never through a link, never outside the render directory."""
    if not _inside(out_dir, path):
        raise RenderError(f"{path}: its directory leads outside {out_dir}; refusing to write there")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()  # a link placed where Plinth writes is replaced, never followed
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise RenderError(f"{path}: cannot write: {exc.strerror or exc}") from None


class RenderError(OutputError):
    """The render directory holds something Plinth must not write through, or cannot be written."""


def _remove_previous(out_dir: Path) -> None:
    """Remove what the last render wrote: only plain files inside `out_dir` that the list names."""
    manifest = out_dir / MANIFEST
    if not manifest.is_file() or manifest.is_symlink():
        return
    for line in manifest.read_text(encoding="utf-8").splitlines():
        rel = Path(line)
        if not line or rel.is_absolute() or ".." in rel.parts:
            continue  # never Plinth's: a render lists relative paths below its directory only
        path = out_dir / rel
        if _inside(out_dir, path) and (path.is_symlink() or path.is_file()):
            path.unlink()
