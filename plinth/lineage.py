"""`plinth lineage`: what every served track of every registry-backed model was built from, read from MLflow.

Per track (stable, canary, shadow) of each model with `registry`: the registered version (an alias resolved to
its version), its run, the run's params, metrics, input datasets (name, digest, context) and tags (the source
commit `mlflow.source.git.commit`, the feature service FEATURE_SERVICE_TAG, on the version or else on the run),
and the platform spec's commit (the one the ledger records: the last commit of the spec's files).

Findings: a served version that is not registered (or an alias that names none), a served version without a run
(none recorded, or the run is gone), a run without an input dataset, and, for a model whose drift job compares
with its served version's run (`drift.reference: run:<path>`), a run without that file: the job fails on it once
that version is stable (so a canary's or shadow's run is checked too, before a promotion).

The requests are MLflow's REST API (`/api/2.0/mlflow/...`), on the bounded requests of plinth/modelclient.py:
every request has a deadline (--timeout seconds for all of it), an answer is read up to MAX_BODY bytes, and
what the server says is cleaned before it is shown. A version and a run are each read once however many tracks
share them; up to WORKERS requests run at once. The requests sign on with MLflow's own environment variables
(plinth/mlflowauth.py); a track MLflow refuses (401, 403) is not readable, saying which variable to set or whose
model it is. Exit codes (the CLI): 0 no finding, 1 a finding or MLflow unreachable or refusing, 2 bad input (a
credential variable no header can carry included).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from urllib.parse import quote

from plinth.mlflowauth import HOW_TO_SIGN_ON, TOKEN, signed_on
from plinth.modelclient import Answer, Gateway, Unreachable, clean, json_object, shorten
from plinth.spec.errors import SpecError, SpecInvalid

DEFAULT_TIMEOUT = 10.0
WORKERS = 8
"""Requests to MLflow at once."""
COMMIT_TAG = "mlflow.source.git.commit"
"""MLflow's own tag of the source commit a run was started from."""
FEATURE_SERVICE_TAG = "plinth.feature_service"
"""The feature service (Feast) a model was trained from, tagged on the registered version or its run."""
API = "/api/2.0/mlflow"

NOT_REGISTERED = "served-version-not-registered"
WITHOUT_RUN = "served-version-without-run"
WITHOUT_DATASET = "run-without-dataset"
WITHOUT_DRIFT_REFERENCE = "run-without-drift-reference"


@dataclass
class Dataset:
    name: str
    digest: str
    context: str = ""
    source_type: str = ""


@dataclass
class Finding:
    rule: str
    message: str


@dataclass
class TrackLineage:
    team: str
    model: str
    track: str
    registered_model: str
    version: str
    """The spec's version: a number or an alias."""
    resolved_version: str | None = None
    """The registered version number it names (an alias resolved now)."""
    run_id: str | None = None
    experiment_id: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    datasets: list[Dataset] = field(default_factory=list)
    commit: str | None = None
    feature_service: str | None = None
    findings: list[Finding] = field(default_factory=list)
    error: str = ""
    """MLflow could not be asked (unreachable, a bad answer): nothing is known."""


@dataclass
class Report:
    url: str
    spec_commit: str | None
    spec_files: list[dict]
    tracks: list[TrackLineage]
    not_registered: list[str]
    """Served models without `registry` (team/name): their files' lineage is not MLflow's."""
    seconds: float = 0.0

    @property
    def findings(self) -> list[tuple[TrackLineage, Finding]]:
        return [(t, f) for t in self.tracks for f in t.findings]

    @property
    def errors(self) -> list[TrackLineage]:
        return [t for t in self.tracks if t.error]

    @property
    def passed(self) -> bool:
        return not self.findings and not self.errors

    def to_json(self) -> str:
        return json.dumps({"url": self.url, "spec": {"commit": self.spec_commit, "files": self.spec_files},
                           "passed": self.passed, "tracks": [asdict(t) for t in self.tracks],
                           "not_registered": self.not_registered}, indent=2) + "\n"


# --- where MLflow is ------------------------------------------------------------------------------------


def mlflow_url(spec, url: str | None, exported: str | None = None) -> str:
    """--url, else the URL the deployed stack exports, else https://<registry.mlflow.hostname>."""
    if url is not None:
        return url
    if exported is not None:
        return exported
    hostname = spec.registry.mlflow.hostname
    if hostname:
        return f"https://{hostname}"
    raise SpecInvalid([SpecError(None, "--url", "MLflow has no host name on the Gateway (registry.mlflow.hostname) "
                                 "and no URL was given: pass --url, e.g. http://127.0.0.1:5000 (a port-forward "
                                 "to svc/mlflow in namespace mlflow)")])


def client(url: str, timeout: float, environ: Mapping[str, str] | None = None) -> Gateway:
    """The bounded HTTP client for MLflow at `url`, signed on with MLflow's own environment variables
    (plinth/mlflowauth.py). Bad input (the URL, a variable) raises SpecInvalid (exit 2)."""
    return signed_on(Gateway.parse(url, timeout, "http://127.0.0.1:5000"), environ)


# --- reading MLflow -------------------------------------------------------------------------------------


class Missing(Exception):
    """MLflow answered that the thing asked for does not exist."""


class Denied(Answer):
    """MLflow refused a request: 401 (not signed on, or the credentials not accepted) or 403 (signed on, not
    allowed). Says where, what was asked, which variables the credentials came from (never their values) and what
    to set; `explain(team)` adds whose the model is."""

    def __init__(self, mlflow: Gateway, status: int, body: bytes, what: str):
        self.url, self.what, self.detail = mlflow.url, what, _message(body)
        self.source = mlflow.credentials.source if mlflow.credentials else None
        super().__init__(status, b"")
        self.args = (self.explain(),)

    def explain(self, team: str | None = None) -> str:
        said = f"HTTP {self.status}" + (f": {self.detail}" if self.detail else "")
        if self.source is None:
            return f"MLflow at {self.url} requires sign-on for {self.what} ({said}): {HOW_TO_SIGN_ON}"
        if self.status == 401:
            fix = ("a fresh token from the identity provider, issued to MLflow's client" if self.source == TOKEN
                   else "the right user and password (an access token made in MLflow's UI expires)")
            return (f"MLflow at {self.url} did not accept the credentials in {self.source} for {self.what} "
                    f"({said}): set {fix}")
        # Who may, as Plinth grants team names (modules/mlflow): viewers READ, data scientists and the team's
        # service account EDIT, ml-engineers MANAGE (which removing an alias needs).
        owner = "its" if team else "the owning team's"
        account = f"its service account {team}-workloads" if team else ""
        if self.what.startswith("removing"):
            need = f"removing an alias needs MANAGE on the model: sign on as one of {owner} ml-engineers" + (
                f" ({account} has EDIT only)" if account else "")
        elif self.what.startswith("setting"):
            need = (f"setting an alias needs EDIT on the model: sign on as one of {owner} ml-engineers or data "
                    "scientists" + (f", or as {account}" if account else ""))
        else:
            need = f"sign on as a member of one of {owner} groups" + (f", or as {account}" if account else "")
        whose = f"it is team {team}'s; {need}" if team else need
        return f"MLflow at {self.url} refused {self.what} to the credentials in {self.source} ({said}): {whose}"


def refusal(mlflow: Gateway, status: int, body: bytes, what: str) -> Exception | None:
    """The Denied (401, 403) or Answer that stands for a non-200 answer to a request for `what`, with anything
    of the credentials the server echoed taken out; None for a 200."""
    if status == 200:
        return None
    body = _redacted(mlflow, body)
    if status in (401, 403):
        return Denied(mlflow, status, body, what)
    return Answer(status, body)


def _redacted(mlflow: Gateway, body: bytes) -> bytes:
    """An error answer without anything of the credentials in it (a server may echo what it was sent)."""
    if mlflow.credentials is None:
        return body
    return mlflow.credentials.redact(body.decode("utf-8", "replace")).encode()


def _get(mlflow: Gateway, path: str, query: dict[str, str], what: str) -> dict:
    """One GET of MLflow's REST API expecting a JSON object (`what`: the thing asked for, for messages); Missing
    on MLflow's RESOURCE_DOES_NOT_EXIST, Denied on 401 and 403."""
    text = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
    status, body = mlflow.request("GET", f"{API}/{path}?{text}", {})
    if status == 404 or (status == 400 and b"RESOURCE_DOES_NOT_EXIST" in body):
        raise Missing(_message(_redacted(mlflow, body)) or f"HTTP {status}")
    refused = refusal(mlflow, status, body, what)
    if refused is not None:
        raise refused
    return json_object(path, status, body)


def _message(body: bytes) -> str:
    """MLflow's `message`, or the sign-on plugin's `detail`, of an error answer."""
    try:
        found = json.loads(body)
    except ValueError:
        return ""
    if not isinstance(found, dict):
        return ""
    return shorten(str(found.get("message") or found.get("detail") or ""))


def _pairs(items) -> dict:
    return {str(i["key"]): i.get("value") for i in items or () if isinstance(i, dict) and "key" in i}


class Reader:
    """MLflow's versions and runs, each read once (tracks share them)."""

    def __init__(self, mlflow: Gateway):
        self.mlflow = mlflow

    def version(self, name: str, version: str) -> dict:
        """The registered version (a number) or the version an alias names."""
        from plinth.modules.serving.registry import is_version

        if is_version(version):
            found = _get(self.mlflow, "model-versions/get", {"name": name, "version": version},
                         f"version {version} of registered model {name!r}")
        else:
            found = _get(self.mlflow, "registered-models/alias", {"name": name, "alias": version},
                         f"alias {version!r} of registered model {name!r}")
        return found.get("model_version") or {}

    def run(self, run_id: str) -> dict:
        return _get(self.mlflow, "runs/get", {"run_id": run_id}, f"run {run_id}").get("run") or {}

    def artifacts(self, run_id: str, directory: str) -> dict[str, bool]:
        """The run's artifacts in `directory` ('' the top): path -> whether it is a directory."""
        found = _get(self.mlflow, "artifacts/list", {"run_id": run_id, "path": directory} if directory else
                     {"run_id": run_id}, f"the artifacts of run {run_id}")
        return {str(f["path"]): bool(f.get("is_dir")) for f in found.get("files") or () if "path" in f}


class Failed(Exception):
    """MLflow could not be asked (unreachable, an unexpected answer)."""


def _ask(call, *args):
    """The answer of one read, or the Missing / Failed that stands for it."""
    try:
        return call(*args)
    except (Missing, Denied) as exc:
        return exc
    except (Answer, Unreachable) as exc:
        return Failed(shorten(str(exc)))
    except (ValueError, TypeError, AttributeError) as exc:
        return Failed(shorten(f"{type(exc).__name__}: {exc}"))


def fill(track: TrackLineage, version, runs: dict) -> None:
    """One track's lineage from its registered version (or what stands for it) and the runs read."""
    if isinstance(version, Failed):
        track.error = str(version)
        return
    if isinstance(version, Denied):
        track.error = version.explain(track.team)
        return
    if isinstance(version, Missing):
        kind = "version" if track.version.isdigit() else "alias"
        track.findings.append(Finding(NOT_REGISTERED, f"{kind} {track.version!r} of registered model "
                                      f"{track.registered_model!r} does not exist in MLflow ({version})"))
        return
    track.resolved_version = str(version.get("version") or "") or None
    version_tags = _pairs(version.get("tags"))
    track.feature_service = version_tags.get(FEATURE_SERVICE_TAG)
    track.commit = version_tags.get(COMMIT_TAG)
    run_id = version.get("run_id") or None
    if not run_id:
        track.findings.append(Finding(WITHOUT_RUN, f"version {track.resolved_version} records no run"))
        return
    track.run_id = run_id
    run = runs[run_id]
    if isinstance(run, Failed):
        track.error = str(run)
        return
    if isinstance(run, Denied):
        track.error = run.explain(track.team)
        return
    if isinstance(run, Missing):
        track.findings.append(Finding(WITHOUT_RUN, f"version {track.resolved_version}'s run {run_id} does not "
                                      f"exist ({run})"))
        return
    data, info = run.get("data") or {}, run.get("info") or {}
    tags = _pairs(data.get("tags"))
    track.experiment_id = info.get("experiment_id")
    track.params = {k: str(v) for k, v in sorted(_pairs(data.get("params")).items())}
    track.metrics = dict(sorted(_pairs(data.get("metrics")).items()))
    track.commit = track.commit or tags.get(COMMIT_TAG)
    track.feature_service = track.feature_service or tags.get(FEATURE_SERVICE_TAG)
    for entry in (run.get("inputs") or {}).get("dataset_inputs") or ():
        dataset = entry.get("dataset") or {}
        track.datasets.append(Dataset(str(dataset.get("name", "")), str(dataset.get("digest", "")),
                                      str(_pairs(entry.get("tags")).get("mlflow.data.context") or ""),
                                      str(dataset.get("source_type", ""))))
    if not track.datasets:
        track.findings.append(Finding(WITHOUT_DATASET, f"run {run_id} logged no input dataset"))


def lineage(spec, url: str, timeout: float = DEFAULT_TIMEOUT, provenance=None) -> Report:
    """The lineage of every served track of every registry-backed model, in spec order."""
    from plinth.modules.serving.names import tracks

    mlflow = client(url, timeout)
    models = list(spec.serving.models)
    registered = [m for m in models if m.registry]
    if not registered:
        raise SpecInvalid([SpecError(None, "serving.models", "no served model names a registered model "
                                     "(serving.models[].registry): nothing to trace")])
    results = [TrackLineage(m.team, m.name, track, m.registry.model, release.version)
               for m in registered for track, release in tracks(m)]
    started = time.perf_counter()
    reader = Reader(mlflow)
    # Each distinct version once, then each distinct run once, WORKERS at a time.
    keys = sorted({(r.registered_model, r.version) for r in results})
    with ThreadPoolExecutor(WORKERS) as pool:
        versions = dict(zip(keys, pool.map(lambda key: _ask(reader.version, *key), keys)))
        run_ids = sorted({v["run_id"] for v in versions.values() if isinstance(v, dict) and v.get("run_id")})
        runs = dict(zip(run_ids, pool.map(lambda run_id: _ask(reader.run, run_id), run_ids)))
        for result in results:
            try:
                fill(result, versions[(result.registered_model, result.version)], runs)
            except (AttributeError, TypeError, ValueError) as exc:  # an answer of the wrong shape
                result.error = shorten(f"unexpected answer from MLflow: {type(exc).__name__}: {exc}")
        _check_drift_references(results, _drift_references(registered), reader, pool)
    return Report(url=url, spec_commit=provenance.commit if provenance else None,
                  spec_files=provenance.as_dict()["files"] if provenance else [], tracks=results,
                  not_registered=[f"{m.team}/{m.name}" for m in models if not m.registry],
                  seconds=round(time.perf_counter() - started, 3))


def _drift_references(models) -> dict[tuple[str, str], str]:
    """(team, model) -> the artifact path its drift job reads from the served version's run (run:<path>)."""
    from plinth.modules.serving.drift import run_artifact

    return {(m.team, m.name): path for m in models if m.drift and (path := run_artifact(m)) is not None}


def _check_drift_references(results: list[TrackLineage], references: dict[tuple[str, str], str], reader: Reader,
                            pool: ThreadPoolExecutor) -> None:
    """A finding on each traced track whose run lacks its model's drift reference (each listing read once)."""
    traced = [t for t in results if (t.team, t.model) in references and t.run_id and not t.error
              and not any(f.rule == WITHOUT_RUN for f in t.findings)]
    listings = sorted({(t.run_id, references[(t.team, t.model)].rpartition("/")[0]) for t in traced})
    listed = dict(zip(listings, pool.map(lambda key: _ask(reader.artifacts, *key), listings)))
    for t in traced:
        path = references[(t.team, t.model)]
        files = listed[(t.run_id, path.rpartition("/")[0])]
        if isinstance(files, Failed):
            t.error = str(files)
        elif isinstance(files, Denied):
            t.error = files.explain(t.team)
        elif isinstance(files, Missing) or files.get(path) is not False:  # absent, or a directory
            t.findings.append(Finding(WITHOUT_DRIFT_REFERENCE, f"run {t.run_id} has no file {path}: the drift job "
                                      f"(drift.reference run:{path}) fails on this version once it is stable"))


# --- the report -----------------------------------------------------------------------------------------


def lines(report: Report) -> list[str]:
    """The human-readable report: one block per track, then the findings."""
    out = [f"plinth lineage {report.url}", f"spec commit: {report.spec_commit or 'unknown (not in git)'}"]
    for t in report.tracks:
        head = f"{t.team}/{t.model} {t.track}: {t.registered_model} {t.version}"
        if t.resolved_version and t.resolved_version != t.version:
            head += f" -> version {t.resolved_version}"
        out.append("")
        out.append(clean(head))
        if t.error:
            out.append(f"  error: {clean(t.error)}")
            continue
        if t.run_id:
            out.append(f"  run: {clean(t.run_id)} (experiment {clean(str(t.experiment_id))})")
            out.append(f"  commit: {clean(t.commit or '-')}  feature service: {clean(t.feature_service or '-')}")
            out.append("  params: " + (clean(", ".join(f"{k}={v}" for k, v in t.params.items())) or "-"))
            out.append("  metrics: " + (clean(", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}"
                                                        for k, v in t.metrics.items())) or "-"))
            for d in t.datasets:
                context = f" ({d.context})" if d.context else ""
                out.append("  dataset: " + clean(f"{d.name} digest {d.digest}{context}"))
        for f in t.findings:
            out.append(f"  finding [{f.rule}]: {clean(f.message)}")
    if report.not_registered:
        out += ["", "not from the registry (no lineage in MLflow): " + ", ".join(report.not_registered)]
    return out


def summary(report: Report) -> str:
    n = len(report.tracks)
    parts = [f"{n} track{'s' if n != 1 else ''} traced in {report.seconds:.2f}s"]
    if report.findings:
        parts.append(f"{len(report.findings)} finding{'s' if len(report.findings) != 1 else ''}")
    if report.errors:
        parts.append(f"{len(report.errors)} not readable from MLflow")
    return ", ".join(parts)
