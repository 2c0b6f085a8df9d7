"""A model's request logger (serving.models[].drift.requestLog): the sidecar in its stable and canary pods
(requestlog/requestlog.py) that forwards every request to the model server and writes a sample into the object
store, where the drift job reads its window.

The wiring: the sidecar listens on LOGGER_PORT; the track's Service keeps its HTTP port number (the HTTPRoute's
backendRefs and in-cluster clients are unchanged) and sends it to the sidecar's port (`targetPort: requestlog`),
which forwards to the model server on localhost. The model server's own probes still reach it directly; the
sidecar's readiness is the model server's readiness through it. The shadow is not logged: it answers copies of
requests the stable or canary pods already saw.
"""

from __future__ import annotations

from plinth.catalog import IMAGES, mirror_image
from plinth.context import PlatformContext
from plinth.modules.objectstore import CA_MOUNT
from plinth.modules.objectstore.identities import bucket, request_log_key
from plinth.modules.objectstore.teamkeys import OBJECT_STORE
from plinth.securitycontext import restricted_container

LOGGER_PORT = 8090
"""The sidecar's port (every runtime's own ports are below it: Triton 8000-8002, BentoML 3000)."""
PORT_NAME = "requestlog"
METRICS_PORT = 8091
"""The sidecar's /metrics (RECORDS_METRIC{outcome}): scraped through the track's Service."""
RECORDS_METRIC = "plinth_requestlog_records_total"
"""The sidecar's counter of records by outcome: sampled, then written, dropped_full (its buffer was full) or
dropped_store (the store refused the batch). The sidecar (requestlog/requestlog.py, the standard library only)
names it too: tests/test_request_log.py reads this name from the real sidecar."""
DROPPED_PERCENT = 5
"""ModelRequestLogDropping fires when more than this share of the sampled records is dropped (for 15 minutes)."""
METRICS_PORT_NAME = "requestlog-mx"
LOGGED_TRACKS = ("stable", "canary")
STORE_PURPOSE = "artifacts"
"""The purpose bucket the records go to: `<platform>-artifacts/requests/<team>/<model>/`."""


def logged(model, track: str | None = None) -> bool:
    """The model logs requests (of this track)."""
    return model.request_log is not None and (track is None or track in LOGGED_TRACKS)


def location(model, ctx: PlatformContext) -> tuple[str, str]:
    """(bucket, key prefix) of the model's records."""
    return bucket(ctx.platform, STORE_PURPOSE), request_log_key(model.team, model.name)


def store_url(model, ctx: PlatformContext) -> str:
    return "s3://{}/{}".format(*location(model, ctx))


def resources(model) -> dict:
    """Requests equal to limits, as the model server's (the quota rule counts exactly these, per replica)."""
    both = {"cpu": model.request_log.cpu, "memory": model.request_log.memory}
    return {"requests": dict(both), "limits": dict(both)}


def credentials() -> dict:
    """The team's keys to the store (Secret object-store-credentials: the AWS SDKs' environment, its endpoint and
    AWS_CA_BUNDLE, where CA_MOUNT puts the namespace's object-store-ca)."""
    return {"secretRef": {"name": OBJECT_STORE.secret}}


def sidecar(model, track: str, ctx: PlatformContext, http_port: int, ready_path: str) -> dict:
    """The logger's container in a track's pod (the pod adds objectstore.ca_volume())."""
    log, (store_bucket, prefix) = model.request_log, location(model, ctx)
    return {
        "name": PORT_NAME,
        "image": mirror_image(IMAGES["requestlog"], ctx.mirror_registry),
        "imagePullPolicy": "Always",  # the tag is pinned; Always re-checks it against the registry
        "args": [
            f"--listen={LOGGER_PORT}",
            f"--upstream=http://127.0.0.1:{http_port}",
            f"--bucket={store_bucket}",
            f"--prefix={prefix}",
            f"--track={track}",
            f"--sample-rate={log.sample_rate:g}",
            f"--max-body-bytes={log.max_body_bytes}",
            f"--flush-seconds={log.flush_seconds}",
            f"--flush-records={log.flush_records}",
            f"--buffer-records={log.buffer_records}",
            f"--metrics-port={METRICS_PORT}",
        ],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "envFrom": [credentials()],
        "ports": [{"name": PORT_NAME, "containerPort": LOGGER_PORT, "protocol": "TCP"},
                  {"name": METRICS_PORT_NAME, "containerPort": METRICS_PORT, "protocol": "TCP"}],
        # Ready when the model server answers ready through it: the Service sends traffic here.
        "readinessProbe": {"httpGet": {"path": ready_path, "port": PORT_NAME}, "timeoutSeconds": 5,
                           "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"tcpSocket": {"port": PORT_NAME}, "periodSeconds": 10, "failureThreshold": 3},
        "resources": resources(model),
        "securityContext": restricted_container(read_only_root=True, standalone=True),
        "volumeMounts": [CA_MOUNT],
    }
