"""A model's drift job (serving.models[].drift): a CronJob in the team's namespace running the drift image
(driftjob/drift.py) on a reference dataset and a logged window, and the PodMonitor that scrapes its score.

The reference is a file of a claim (pvc://) or, for a registry-backed model, an artifact of the run behind the
served version (run:<path>): an init container with MLflow's client (the registry's fetch step, registry.py)
resolves the stable release's version (an alias at each run, so the reference follows a promotion) to its run
and downloads that one file into an emptyDir, refusing a version without a run, a missing file and one larger
than the job may read.

Why the job serves its score on /metrics (scraped by a PodMonitor) rather than pushing it: Plinth's Prometheus
scrapes ServiceMonitors and PodMonitors in every namespace and runs no Pushgateway, and a scraped pod's series
carry namespace=<team> from the target itself, which the ModelDrift alert selects on. Each run computes the
score, then serves it until the next scheduled run replaces it (concurrencyPolicy Replace), so the gauge is
there between runs (a pod that ended would leave the series stale within minutes and the 30-minute alert
would never fire).
"""

from __future__ import annotations

from collections.abc import Iterator

from plinth.catalog import IMAGES, mirror_image
from plinth.context import PlatformContext
from plinth.modules.objectstore import CA_MOUNT, ca_volume
from plinth.modules.serving import registry, reqlog
from plinth.securitycontext import restricted_container, restricted_pod
from plinth.spec.errors import Violation
from plinth.targets import WORKLOAD_SERVICE_ACCOUNT

METRICS_PORT = 9108
"""The drift job's /metrics port."""
DEFAULT_WINDOW_HOURS = 24
"""drift.windowHours when the spec leaves it out (null): a day of logged requests."""
DATA_MOUNT = "/data"
"""Where each data claim is mounted, read-only: /data/<claim>/<path>."""
DRIFT_OF_LABEL = "plinth.dev/drift-of"
"""The drift job's pods: the model they score. Not the model's own label (plinth.dev/model), so none of the
model's network policies (its metrics port, its repository) applies to them."""
DRIFT_UID = 10001
"""The image's user (driftjob/Dockerfile), numeric so the kubelet can check runAsNonRoot."""
RUN_PREFIX = "run:"
"""drift.reference of a registry-backed model: run:<artifact path> in the served version's run."""
REFERENCE_MOUNT = "/reference"
"""Where the init container puts the run's reference file (an emptyDir): /reference/<the artifact's file name>."""
REFERENCE_MAX_BYTES = 1 << 30
"""The largest reference the init container downloads: what the drift program reads of a file at most
(driftjob/drift.py DEFAULT_MAX_BYTES); the emptyDir's size limit is the same."""
FETCH_REFERENCE = """\
import os, sys
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts
from mlflow.exceptions import MlflowException
name, version, path, dst, limit = sys.argv[1:]
client = MlflowClient()
try:
    found = (client.get_model_version(name, version) if version.isdigit()
             else client.get_model_version_by_alias(name, version))
    if not found.run_id:
        sys.exit(f"reference: version {found.version} of {name} has no run: no {path} to compare with")
    parent = path.rpartition("/")[0] or None
    files = {f.path: f for f in client.list_artifacts(found.run_id, parent)}
    if path not in files or files[path].is_dir:
        sys.exit(f"reference: run {found.run_id} (version {found.version} of {name}) has no file {path}; "
                 f"its artifacts there: {', '.join(sorted(files)) or 'none'}")
    if (files[path].file_size or 0) > int(limit):
        sys.exit(f"reference: {path} of run {found.run_id} has {files[path].file_size} bytes, more than {limit}")
    print(f"reference: {path} of run {found.run_id} (version {found.version} of {name}, {version})", file=sys.stderr)
    local = download_artifacts(run_id=found.run_id, artifact_path=path, dst_path=dst)
    os.replace(local, os.path.join(dst, os.path.basename(path)))
except MlflowException as error:
    sys.exit(f"reference: {name} {version}: {error.message}")
"""
"""The init container's program (the mlflow-client image's Python): argv name, version or alias, artifact
path, destination, byte limit. Inline, as the image holds MLflow but nothing of Plinth's."""


def job_name(model) -> str:
    return f"{model.name}-drift"


def pod_labels(model, ctx: PlatformContext) -> dict[str, str]:
    return {"app.kubernetes.io/instance": ctx.platform, DRIFT_OF_LABEL: model.name}


def _claim_path(uri: str) -> tuple[str, str]:
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    return claim, path


def run_artifact(model) -> str | None:
    """The artifact path of a `run:` reference (in the served version's run); None for a claim's file."""
    reference = model.drift.reference
    return reference.removeprefix(RUN_PREFIX) if reference.startswith(RUN_PREFIX) else None


def _data_file(path: str) -> bool:
    """A relative path to a .csv or .parquet file, with no empty or `..` segment."""
    parts = path.split("/")
    return bool(path) and "" not in parts and ".." not in parts and path.endswith((".csv", ".parquet"))


def data_path(uri: str) -> str:
    """A pvc://<claim>/<path> file, or a run:<path> artifact, as the job's container sees it."""
    if uri.startswith(RUN_PREFIX):
        return f"{REFERENCE_MOUNT}/{uri.removeprefix(RUN_PREFIX).rpartition('/')[2]}"
    claim, path = _claim_path(uri)
    return f"{DATA_MOUNT}/{claim}/{path}"


def claims(model) -> list[str]:
    """The claims the job reads (each mounted once): the reference's, and the window file's."""
    files = (model.drift.reference, model.drift.window)
    return sorted({_claim_path(uri)[0] for uri in files if uri and uri.startswith("pvc://")})


def window_args(model, ctx: PlatformContext) -> list[str]:
    """Where the window comes from: the file, or the model's logged requests of the last windowHours."""
    drift = model.drift
    if drift.window:
        return [f"--window={data_path(drift.window)}"]
    return [f"--window-store={reqlog.store_url(model, ctx)}",
            f"--window-hours={drift.window_hours or DEFAULT_WINDOW_HOURS}"]


def rules(spec) -> Iterator[Violation]:
    for index, model in enumerate(spec.serving.models):
        drift, at = model.drift, ("serving", "models", index, "drift")
        if drift is None:
            continue
        if not spec.monitoring.drift.enabled:
            yield Violation(at, "the drift job's score is only alerted on with monitoring.drift enabled",
                            "model-drift-alerts", "set monitoring.drift.enabled: true, or remove the model's drift")
        if drift.request_log:
            yield from _request_log_rules(spec, model, at)
        if run_artifact(model) is not None:
            yield from _run_reference_rules(model, at)
        for field in ("reference", "window"):
            uri = getattr(drift, field)
            if uri is None or uri.startswith(RUN_PREFIX):
                continue
            claim, path = _claim_path(uri)
            if not claim or not _data_file(path):
                yield Violation((*at, field), f"{uri!r} does not name a claim and a .csv or .parquet file in it",
                                "drift-data-file", "use pvc://<claim>/<path>.csv or .parquet, the claim in the "
                                "team's namespace")


def _run_reference_rules(model, at: tuple) -> Iterator[Violation]:
    if model.registry is None:
        yield Violation((*at, "reference"), f"{model.drift.reference!r} names an artifact of the served version's "
                        "run, but the model serves no registered version", "drift-reference-run",
                        "add registry (the model in MLflow), or name a file: pvc://<claim>/<path>")
    if not _data_file(run_artifact(model) or ""):
        yield Violation((*at, "reference"), f"{model.drift.reference!r} does not name a .csv or .parquet artifact "
                        "of the run", "drift-data-file", "use run:<path>.csv or .parquet, the path among the "
                        "run's artifacts (e.g. run:data/train.parquet)")


def _request_log_rules(spec, model, at: tuple) -> Iterator[Violation]:
    """The logger's own bounds (that the object store is on is the need `request-log-needs-object-store`,
    Serving.needs: the logger writes with the team's keys, which only the platform's store gives a team)."""
    log = model.drift.request_log
    if log.flush_records > log.buffer_records:
        yield Violation((*at, "requestLog", "flushRecords"), f"a batch of {log.flush_records} records never fills "
                        f"a buffer of {log.buffer_records}", "request-log-buffer",
                        "set flushRecords at most bufferRecords")


def resources(model) -> dict:
    """Requests equal to limits, as the models' (the quota rule counts exactly these)."""
    both = {"cpu": model.drift.cpu, "memory": model.drift.memory}
    return {"requests": dict(both), "limits": dict(both)}


def fetch_reference_container(model, ctx: PlatformContext) -> dict:
    """The init container: the served (stable) version's run's reference file into the emptyDir, with the drift
    job's own CPU and memory (so the pod's quota is the job's)."""
    return {
        "name": "fetch-reference",
        "image": mirror_image(IMAGES["mlflow-client"], ctx.mirror_registry),
        "imagePullPolicy": "Always",
        "command": ["python", "-c", FETCH_REFERENCE, model.registry.model, model.stable.version,
                    run_artifact(model), REFERENCE_MOUNT, str(REFERENCE_MAX_BYTES)],
        "env": registry.client_container_env(),
        "resources": resources(model),
        "securityContext": restricted_container(read_only_root=True, standalone=True),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "reference", "mountPath": REFERENCE_MOUNT}],
    }


def cronjob_spec(model, ctx: PlatformContext) -> dict:
    drift = model.drift
    container: dict = {
        "name": "drift",
        "image": mirror_image(IMAGES["drift"], ctx.mirror_registry),
        "imagePullPolicy": "Always",  # the tag is pinned; Always re-checks it against the registry
        "args": [
            f"--reference={data_path(drift.reference)}",
            *window_args(model, ctx),
            f"--model={model.name}",
            f"--team={model.team}",
            f"--max-rows={drift.max_rows}",
            f"--serve={METRICS_PORT}",
        ],
        "ports": [{"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"}],
        # The port opens once the score is computed: up to an hour for that (maxRows of both files), then
        # the server must keep answering.
        "startupProbe": {"tcpSocket": {"port": "metrics"}, "periodSeconds": 10, "failureThreshold": 360},
        "readinessProbe": {"httpGet": {"path": "/metrics", "port": "metrics"}, "periodSeconds": 10},
        "livenessProbe": {"tcpSocket": {"port": "metrics"}, "periodSeconds": 30, "failureThreshold": 3},
        "resources": resources(model),
        "securityContext": restricted_container(read_only_root=True, standalone=True),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}] + [
            {"name": f"data-{i}", "mountPath": f"{DATA_MOUNT}/{claim}", "readOnly": True}
            for i, claim in enumerate(claims(model))],
    }
    if drift.request_log:
        # The team's keys and the store's CA, as the logger has them (reqlog.credentials).
        container["envFrom"] = [reqlog.credentials()]
        container["volumeMounts"].append(CA_MOUNT)
    if run_artifact(model) is not None:
        container["volumeMounts"].append({"name": "reference", "mountPath": REFERENCE_MOUNT, "readOnly": True})
    volumes = [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}] + [
        {"name": f"data-{i}", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        for i, claim in enumerate(claims(model))] + ([ca_volume()] if drift.request_log else [])
    pod: dict = {
        "serviceAccountName": WORKLOAD_SERVICE_ACCOUNT,
        "automountServiceAccountToken": False,
        "imagePullSecrets": [{"name": s} for s in ctx.image_pull_secrets],
        "securityContext": restricted_pod(DRIFT_UID, DRIFT_UID, DRIFT_UID),
        "restartPolicy": "OnFailure",
        "containers": [container],
        "volumes": volumes,
    }
    if run_artifact(model) is not None:
        pod["initContainers"] = [fetch_reference_container(model, ctx)]
        volumes.append({"name": "reference", "emptyDir": {"sizeLimit": f"{REFERENCE_MAX_BYTES >> 20}Mi"}})
    return {
        "schedule": drift.schedule,
        "timeZone": "Etc/UTC",
        # The running job serves the last score; the next run takes its place.
        "concurrencyPolicy": "Replace",
        "startingDeadlineSeconds": 3600,
        "successfulJobsHistoryLimit": 1,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {"spec": {
            "backoffLimit": 3,
            "template": {"metadata": {"labels": pod_labels(model, ctx)}, "spec": pod},
        }},
    }


def monitor_spec(model, ctx: PlatformContext) -> dict:
    """Scrape the drift job's pod; its gauge carries model and team, the target adds namespace."""
    return {
        "selector": {"matchLabels": pod_labels(model, ctx)},
        "namespaceSelector": {"matchNames": [model.team]},
        "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "60s"}],
    }
