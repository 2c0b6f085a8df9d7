"""A model's drift job (serving.models[].drift): a CronJob in the team's namespace running the drift image
(driftjob/drift.py) on a reference dataset and a logged window, and the PodMonitor that scrapes its score.

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
from plinth.modules.serving import reqlog
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


def job_name(model) -> str:
    return f"{model.name}-drift"


def pod_labels(model, ctx: PlatformContext) -> dict[str, str]:
    return {"app.kubernetes.io/instance": ctx.platform, DRIFT_OF_LABEL: model.name}


def _claim_path(uri: str) -> tuple[str, str]:
    claim, _, path = uri.removeprefix("pvc://").partition("/")
    return claim, path


def data_path(uri: str) -> str:
    """A pvc://<claim>/<path> file as the job's container sees it."""
    claim, path = _claim_path(uri)
    return f"{DATA_MOUNT}/{claim}/{path}"


def claims(model) -> list[str]:
    """The claims the job reads (each mounted once): the reference's, and the window file's."""
    files = (model.drift.reference, *((model.drift.window,) if model.drift.window else ()))
    return sorted({_claim_path(uri)[0] for uri in files})


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
        for field in ("reference", "window"):
            uri = getattr(drift, field)
            if uri is None:
                continue
            claim, path = _claim_path(uri)
            if (not claim or not path or ".." in path.split("/")
                    or not path.endswith((".csv", ".parquet"))):
                yield Violation((*at, field), f"{uri!r} does not name a claim and a .csv or .parquet file in it",
                                "drift-data-file", "use pvc://<claim>/<path>.csv or .parquet, the claim in the "
                                "team's namespace")


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
    pod = {
        "serviceAccountName": WORKLOAD_SERVICE_ACCOUNT,
        "automountServiceAccountToken": False,
        "imagePullSecrets": [{"name": s} for s in ctx.image_pull_secrets],
        "securityContext": restricted_pod(DRIFT_UID, DRIFT_UID, DRIFT_UID),
        "restartPolicy": "OnFailure",
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}] + [
            {"name": f"data-{i}", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
            for i, claim in enumerate(claims(model))] + ([ca_volume()] if drift.request_log else []),
    }
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
