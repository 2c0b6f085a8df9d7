"""Render the plan's Helm releases with the real charts (`helm template`), offline.

A release's chart is looked up in a directory chart source (`DIR/charts/<name>-<version>.tgz`):
the spec's own `charts.source` when it is a directory, or the one given with
`plinth render --charts DIR`. CRD bundles (e.g. Gateway API) are read from
`DIR/crds/<bundle>/`. Nothing is fetched from the network: a chart that is not
there is reported with a note, never a failure of the whole render.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from plinth.engine.manifests import as_written, load_documents
from plinth.plan import Plan, Resource

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"

# Custom resource APIs the platform installs before the releases that use them:
# `helm template` has no cluster to ask, so charts that check .Capabilities are told.
PLATFORM_APIS = (
    "cert-manager.io/v1",
    "gateway.networking.k8s.io/v1",
    "monitoring.coreos.com/v1",
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
    "monitoring.coreos.com/v1/PodMonitor",
)


@dataclass(frozen=True)
class Rendered:
    """One release or bundle rendered to objects, or a note saying why it could not be."""

    resource: Resource
    objects: tuple[dict, ...] = ()
    note: str | None = None
    documents: tuple[str, ...] = ()
    """Each object as a render writes it (plinth.engine.manifests.as_written), where asked for."""


class ChartRejected(ValueError):
    """`helm template` refused a release's values (bad input: the CLI names the spec's values key, exits 2)."""

    def __init__(self, archive: Path, release: str, key: str, detail: str):
        super().__init__(f"helm template {release} ({archive.name}) rejects the values: {detail}")
        self.archive, self.release, self.key, self.detail = archive, release, key, detail
        """`key`: the values key helm names (dotted, '' when it names none)."""

    def __reduce__(self):  # raised in a worker process, re-raised here
        return ChartRejected, (self.archive, self.release, self.key, self.detail)


_HELM_KEY = re.compile(r"at '/([^']*)'|<\.Values\.([A-Za-z0-9_.]+)>|- ([A-Za-z0-9_.]+): ")


def helm_error(archive: Path, release: str, stderr: str) -> ChartRejected:
    """The error of a failed `helm template`, with the first values key its message names: a schema error
    (`at '/server/dev'`), a template error (`<.Values.server.dev>`) or a schema line (`- server.dev: ...`)."""
    found = _HELM_KEY.search(stderr)
    key = next((g for g in found.groups() if g), "").replace("/", ".") if found else ""
    detail = " ".join(stderr.removeprefix("Error: ").split())
    return ChartRejected(archive, release, key, detail[:600] + ("..." if len(detail) > 600 else ""))


def helm_binary() -> str | None:
    """$PLINTH_HELM, else `helm` on PATH."""
    return os.environ.get("PLINTH_HELM") or shutil.which("helm")


def chart_archive(release: Resource, charts_dir: Path | None) -> Path | None:
    """The packaged chart of a release in a directory chart source, if there."""
    chart, version = str(release.inputs.get("chart", "")), release.inputs.get("version")
    if chart.endswith(".tgz"):
        path = Path(chart)
        if path.is_file():
            return path
        if charts_dir is None:
            return None
        return _existing(charts_dir / "charts" / path.name)
    if charts_dir is None or not version:
        return None
    return _existing(charts_dir / "charts" / f"{chart.rstrip('/').rsplit('/', 1)[-1]}-{version}.tgz")


def _existing(path: Path) -> Path | None:
    return path if path.is_file() else None


def helm_template(release: Resource, archive: Path, kube_version: str, helm: str) -> str:
    """`helm template` of one release with the values Plinth computed (CRDs and hooks included): its output."""
    inputs = release.inputs
    with tempfile.TemporaryDirectory(prefix="plinth-helm-") as tmp:
        values = Path(tmp) / "values.yaml"
        values.write_text(yaml.safe_dump(inputs.get("values") or {}, sort_keys=True), encoding="utf-8")
        args = [helm, "template", str(inputs["name"]), str(archive), "--namespace", str(inputs["namespace"]),
                "--values", str(values), "--kube-version", f"{kube_version}.0", "--include-crds",
                # A Release never installs test hooks (only `helm test` runs them).
                "--skip-tests"]
        for api in PLATFORM_APIS:
            args += ["--api-versions", api]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "HELM_CACHE_HOME": tmp, "HELM_CONFIG_HOME": tmp,
                                   "HELM_DATA_HOME": tmp})
    if proc.returncode != 0:
        raise helm_error(archive, str(inputs["name"]), proc.stderr.strip())
    return proc.stdout


def template(release: Resource, archive: Path, kube_version: str, helm: str) -> tuple[dict, ...]:
    """The objects of one release's `helm template`."""
    return tuple(load_documents(helm_template(release, archive, kube_version, helm)))


def bundle_objects(group: Resource) -> tuple[tuple[dict, ...], str | None]:
    """The objects of a ConfigGroup whose files are local; a note when they are URLs or missing."""
    files = [str(f) for f in group.inputs.get("files", [])]
    if not files or any("://" in f for f in files):
        return (), f"files {', '.join(files)} are fetched at deploy time; pass --charts DIR to render them"
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        return (), f"not found: {', '.join(missing)}"
    docs: list[dict] = []
    for f in files:
        docs += load_documents(Path(f).read_text(encoding="utf-8"))
    return tuple(docs), None


def render_charts(plan: Plan, kube_version: str, charts_dir: Path | None = None,
                  progress: Callable[[int, int, str], None] | None = None) -> list[Rendered]:
    """Every Helm release and CRD bundle of the plan, rendered where its chart is at hand (see ChartRenders)."""
    with ChartRenders(kube_version, charts_dir) as renders:
        return renders.collect(plan, progress)


MAX_WORKERS = 8
"""Processes rendering charts at once, at most (one per core below that): a platform has about 25 releases, and
each worker holds its own interpreter."""


class ChartRenders:
    """Renders a plan's charts in worker processes, one per core, each chart as soon as its release is known:
    pass `start` as the plan's `on_record`, then `collect`. A worker runs `helm template` and reads its output
    (and with `written`, writes each object as a render does), so that work runs beside the plan rather than
    after it, and outside this process's interpreter lock. Use it as a context manager: leaving it (also on an
    error) drops the renders not yet begun and waits for the running ones."""

    def __init__(self, kube_version: str, charts_dir: Path | None, written: bool = False):
        self._job = (kube_version, charts_dir, helm_binary(), written)
        # Forked, with all this process has loaded (a fresh interpreter would load it again, and `__main__` with
        # it), and all at once, now: before the plan starts threads, which a later fork could catch holding a lock.
        self._pool = ProcessPoolExecutor(max_workers=min(os.cpu_count() or 1, MAX_WORKERS),
                                         mp_context=multiprocessing.get_context("fork"), initializer=_leave_interrupts)
        self._pool.submit(int).result()  # a fork pool starts every worker at its first task
        self._started: dict[str, Future[Rendered]] = {}

    def __enter__(self) -> ChartRenders:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def start(self, res: Resource) -> None:
        """Begin rendering `res` if it is a Helm release or a CRD bundle (and not begun already)."""
        if res.type in (CONFIG_GROUP, HELM_RELEASE) and res.urn not in self._started:
            self._started[res.urn] = self._pool.submit(_render, res, *self._job)

    def collect(self, plan: Plan, progress: Callable[[int, int, str], None] | None = None) -> list[Rendered]:
        """The plan's releases and bundles rendered, in plan order (the first that fails is the one raised);
        `progress(done, total, name)` is called before each one and once at the end."""
        sources = [res for res in plan.resources if res.type in (CONFIG_GROUP, HELM_RELEASE)]
        for res in sources:
            self.start(res)
        out: list[Rendered] = []
        for res in sources:
            if progress:
                progress(len(out), len(sources), res.name)
            # The plan's own resource, not the copy the worker was sent.
            out.append(replace(self._started[res.urn].result(), resource=res))
        if progress:
            progress(len(out), len(sources), "")
        return out


def _leave_interrupts() -> None:
    """A worker leaves Ctrl-C to the process that started it, which stops the renders (and says nothing more)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _render(res: Resource, kube_version: str, charts_dir: Path | None, helm: str | None, written: bool) -> Rendered:
    rendered = _objects(res, kube_version, charts_dir, helm)
    if not written:
        return rendered
    return replace(rendered, documents=tuple(as_written(obj) for obj in rendered.objects))


def _objects(res: Resource, kube_version: str, charts_dir: Path | None, helm: str | None) -> Rendered:
    if res.type == CONFIG_GROUP:
        group = _relocate_bundle(res, charts_dir) if charts_dir is not None else res
        objects, note = bundle_objects(group)
        return Rendered(res, objects, note)
    archive = chart_archive(res, charts_dir)
    if archive is None:
        return Rendered(res, note=f"chart {res.inputs.get('chart')} {res.inputs.get('version', '')} is not in a "
                                  "local chart directory; pass --charts DIR")
    if helm is None:
        return Rendered(res, note="no helm binary (put helm on PATH or set PLINTH_HELM)")
    return Rendered(res, template(res, archive, kube_version, helm))


def _relocate_bundle(group: Resource, charts_dir: Path) -> Resource:
    """A bundle given by its public URL, looked up in DIR/crds/<bundle> (the directory form of the same version)."""
    from plinth.catalog import CRD_BUNDLES

    files = [str(f) for f in group.inputs.get("files", [])]
    for bundle in CRD_BUNDLES:
        local = sorted(str(p) for p in (charts_dir / "crds" / bundle.directory).glob("*.yaml"))
        same = len(files) == 1 and (files[0] == bundle.url or files[0].endswith(
            f"/{bundle.name}/{bundle.version}/{bundle.url.rsplit('/', 1)[-1]}"))
        if same and local:
            return replace(group, inputs={**group.inputs, "files": local})
    return group
