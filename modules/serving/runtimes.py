"""The model servers: the two runtimes (Triton, BentoML), their pods, Deployments and autoscaler."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pulumi

from plinth.catalog import IMAGES, mirror_image
from plinth.context import PlatformContext
from plinth.modules.gpu import GPU_RESOURCE, gpu_node_selector, gpu_toleration
from plinth.modules.objectstore import CA_MOUNT, ca_volume
from plinth.modules.serving import registry, reqlog
from plinth.modules.serving.names import deployment_name, selector
from plinth.securitycontext import restricted_container, restricted_pod
from plinth.targets import WORKLOAD_SERVICE_ACCOUNT
from plinth.vocabulary import in_cluster_store

SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
"""The CA bundle of Triton's (Ubuntu) image, which its S3 client trusts."""

PVC_MOUNT = "/models"
"""Where a pvc:// model repository's claim is mounted (read-only)."""


@dataclass(frozen=True)
class Runtime:
    """What differs between the two serving runtimes."""

    uid: int
    """The image's own non-root user (numeric, so the kubelet can check runAsNonRoot)."""
    ports: tuple[tuple[str, int], ...]
    """(name, port) the container listens on; the first is HTTP."""
    metrics_port: str
    """The named port serving Prometheus metrics at /metrics."""
    live: str
    ready: str
    routes: tuple[str, ...]
    """Path prefixes of the runtime's API the Gateway forwards (under /<team>/<model>)."""

    @property
    def http_port(self) -> int:
        return self.ports[0][1]


HIGH_UID = 10001
"""The user model pods run as: above every host account (the runtimes' own users are 1000 and 1034)."""

RUNTIMES = {
    # Triton: HTTP/REST (KServe v2), gRPC and metrics; user triton-server is UID 1000 in NGC's images.
    # Only inference and health go through the Gateway: the model-repository, logging and trace APIs
    # (load/unload, settings) stay inside the team's namespace.
    "triton": Runtime(uid=1000, ports=(("http", 8000), ("grpc", 8001), ("metrics", 8002)), metrics_port="metrics",
                      live="/v2/health/live", ready="/v2/health/ready", routes=("/v2/models", "/v2/health")),
    # BentoML: one port for the API, health and metrics; `bentoml containerize` creates user bentoml, UID 1034.
    "bentoml": Runtime(uid=1034, ports=(("http", 3000),), metrics_port="http", live="/livez", ready="/readyz",
                       routes=("/",)),
}


def model_repository(model, ctx: PlatformContext) -> str:
    """A Triton model's repositories: a registry-backed model's fetched files (the pod's own), the spec's, or on
    a cloud target the team's prefix of the models bucket
    (s3:// or gs://<prefix>-models/<team>/<model>), which the team's workload identity may read."""
    if model.registry:
        return "registry://"
    if model.model_repository:
        return model.model_repository
    return f"{ctx.target.bucket_url('models')}/{model.team}/{model.name}"


def user_provided(model, ctx: PlatformContext) -> tuple[str, ...]:
    """The objects of the team's namespace a model's pods use that the spec says the team creates (Kind/name):
    its repository's claim and its credentials Secret."""
    provided = []
    if model.runtime == "triton" and model_repository(model, ctx).startswith("pvc://"):
        provided.append(f"PersistentVolumeClaim/{model_repository(model, ctx).removeprefix('pvc://').split('/')[0]}")
    if model.credentials_secret:
        provided.append(f"Secret/{model.credentials_secret}")
    return tuple(provided)


def repository_path(repository: str, release) -> str:
    """The release's Triton model repository: <repository>/<version> (a PVC path under /models)."""
    scheme, _, rest = repository.partition("://")
    if scheme == "registry":  # the release's own files, fetched into the pod
        return registry.MOUNT
    if scheme == "pvc":
        _, _, path = rest.partition("/")
        return "/".join(p for p in (PVC_MOUNT, path.strip("/"), release.version) if p)
    return f"{repository.rstrip('/')}/{release.version}"


def triton_args(repository: str, release) -> list[str]:
    """`tritonserver` arguments: the release's repository, every model in it loaded at start and nothing
    loaded or unloaded behind the Deployment's back (explicit control, no polling)."""
    ports = dict(RUNTIMES["triton"].ports)
    return [
        f"--model-repository={repository_path(repository, release)}",
        "--model-control-mode=explicit",
        "--load-model=*",
        "--strict-readiness=true",
        "--exit-on-error=true",
        f"--http-port={ports['http']}",
        f"--grpc-port={ports['grpc']}",
        f"--metrics-port={ports['metrics']}",
        # Latency quantiles (nv_inference_request_summary_us{quantile=...}) for the p95 SLO.
        "--metrics-config=summary_latencies=true",
    ]


def image(model, release, ctx: PlatformContext) -> str:
    if model.runtime == "triton":
        return mirror_image(IMAGES["tritonserver"], ctx.mirror_registry)
    # The user's own Bento, already in the mirror in air-gap mode (rule airgap-mirror-only). A registry-backed
    # Bento runs its own tag on every track: the releases' versions are registered versions.
    return model.image if model.registry else f"{model.image}:{release.version}"


def probes(model) -> dict[str, dict]:
    """startupProbe sized for model load (startupSeconds), then liveness and readiness."""
    runtime = RUNTIMES[model.runtime]

    def get(path: str) -> dict:
        return {"httpGet": {"path": path, "port": "http"}, "timeoutSeconds": 5}

    return {
        "startupProbe": {**get(runtime.ready), "periodSeconds": 10,
                         "failureThreshold": max(1, math.ceil(model.startup_seconds / 10))},
        "livenessProbe": {**get(runtime.live), "periodSeconds": 10, "failureThreshold": 3},
        "readinessProbe": {**get(runtime.ready), "periodSeconds": 5, "failureThreshold": 3},
    }


def resources(model) -> dict:
    """Requests equal to limits (Guaranteed QoS; the quota rule sums exactly these); GPUs as limits."""
    limits = {"cpu": model.cpu, "memory": model.memory}
    if model.gpu:
        limits[GPU_RESOURCE] = str(model.gpu)
    return {"requests": {"cpu": model.cpu, "memory": model.memory}, "limits": limits}


def pod_spec(model, track: str, release, ctx: PlatformContext) -> dict:
    runtime = RUNTIMES[model.runtime]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[dict] = [{"name": "tmp", "emptyDir": {}}]
    container: dict = {
        "name": model.runtime,
        "image": image(model, release, ctx),
        "imagePullPolicy": "Always",  # tags are pinned; Always re-checks them against the registry
        "ports": [{"name": name, "containerPort": port, "protocol": "TCP"} for name, port in runtime.ports],
        **probes(model),
        "resources": resources(model),
        "securityContext": restricted_container(read_only_root=True, standalone=True),
    }
    if model.runtime == "triton":
        container["command"] = ["tritonserver"]
        repository = model_repository(model, ctx)
        container["args"] = triton_args(repository, release)
        # The Python backend's stubs talk to the server through shared memory.
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}})
        if repository.startswith("pvc://"):
            claim = repository.removeprefix("pvc://").split("/", 1)[0]
            mounts.append({"name": "models", "mountPath": PVC_MOUNT, "readOnly": True})
            volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        elif in_cluster_store(repository)[0]:
            # Triton's S3 client (the AWS SDK for C++ over curl) has no CA setting of its own and trusts the
            # image's system bundle: the platform CA takes its place (the pod reaches nothing else outside).
            volumes.append(ca_volume())
            mounts += [CA_MOUNT, {"name": CA_MOUNT["name"], "mountPath": SYSTEM_CA_BUNDLE, "subPath": "ca.crt",
                                  "readOnly": True}]
    else:
        # BentoML keeps its multi-process Prometheus files under $BENTOML_HOME (/home/bentoml).
        mounts.append({"name": "metrics", "mountPath": "/home/bentoml/prometheus_multiproc_dir"})
        volumes.append({"name": "metrics", "emptyDir": {"sizeLimit": "256Mi"}})
    if model.registry:
        mount, volume = registry.server_volume()
        mounts.append(mount)
        volumes.append(volume)
        if model.runtime == "bentoml":  # Triton's is its --model-repository
            container["env"] = [{"name": registry.MODEL_DIR_ENV, "value": registry.MOUNT}]
    container["volumeMounts"] = mounts
    if model.credentials_secret:
        container["envFrom"] = [{"secretRef": {"name": model.credentials_secret}}]
    pod: dict = {
        "serviceAccountName": WORKLOAD_SERVICE_ACCOUNT,
        "automountServiceAccountToken": False,
        "imagePullSecrets": [{"name": s} for s in ctx.image_pull_secrets],
        # A high UID no host account has; the image user's group (runtime.uid) keeps its files readable.
        "securityContext": restricted_pod(HIGH_UID, runtime.uid, runtime.uid, fs_group_on_root_mismatch=True),
        "terminationGracePeriodSeconds": 60,
        # One replica per node: preferred in dev; in staging and prod hard, also with fewer nodes than
        # replicas (minDomains counts missing nodes as empty, so a replica without a node of its own stays
        # Pending rather than share one). Per ReplicaSet, so a rollout's new pods are spread on their own.
        "topologySpreadConstraints": [{
            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule" if ctx.prod_like else "ScheduleAnyway",
            **({"minDomains": release.replicas} if ctx.prod_like and release.replicas > 1 else {}),
            "labelSelector": {"matchLabels": selector(model, ctx, track)},
            "matchLabelKeys": ["pod-template-hash"],
        }],
        "containers": [container],
        "volumes": volumes,
    }
    if reqlog.logged(model, track):
        # In front of the model server's HTTP port (the Service targets the sidecar's): module reqlog.
        pod["containers"].append(reqlog.sidecar(model, track, ctx, runtime.http_port, runtime.ready))
        if not any(v["name"] == ca_volume()["name"] for v in volumes):
            volumes.append(ca_volume())
    if model.registry:
        pod["initContainers"] = [registry.fetch_container(model, release, ctx, container["resources"])]
    if model.gpu:
        # The GPU module's facts: the taint its nodes carry, the label feature discovery puts on them.
        pod["tolerations"] = [gpu_toleration()]
        pod["nodeSelector"] = gpu_node_selector()
    return pod


def deployment_spec(model, track: str, release, ctx: PlatformContext, labels: dict) -> dict:
    # A GPU model rolls one pod at a time without a surge pod: the quota holds exactly its GPUs.
    strategy = {"maxSurge": 0, "maxUnavailable": 1} if model.gpu else {"maxSurge": 1, "maxUnavailable": 0}
    metadata: dict = {"labels": labels}
    if model.registry:
        metadata["annotations"] = registry.registered_annotations(model, release)
    return {
        "replicas": release.replicas,
        "revisionHistoryLimit": 3,
        "progressDeadlineSeconds": model.startup_seconds + 300,
        "selector": {"matchLabels": selector(model, ctx, track)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": strategy},
        "template": {"metadata": metadata, "spec": pod_spec(model, track, release, ctx)},
    }


def autoscaled(model, track: str) -> bool:
    return track == "stable" and model.autoscaling.enabled


def deployment_options(model, track: str, opts: pulumi.ResourceOptions) -> pulumi.ResourceOptions:
    """The autoscaler owns the stable replica count: `spec.replicas` is left out of the diff, so a drift
    preview (`pulumi preview --expect-no-changes`) stays clean while it scales."""
    if not autoscaled(model, track):
        return opts
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=["spec.replicas"]))


def autoscaler_spec(model) -> dict:
    scaling = model.autoscaling
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment_name(model, "stable")},
        "minReplicas": max(1, model.stable.replicas),
        "maxReplicas": scaling.max_replicas,
        "metrics": [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": scaling.target_utilization}}}],
        # A new replica costs a model load: scale down only after 5 quiet minutes.
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
    }
