"""Model serving (serving.models): Triton Inference Server or a BentoML Bento per model, in its team's namespace.

Per model: a Deployment, Service and PodDisruptionBudget per track (`stable`, an optional weighted
`canary`, an optional `shadow` that gets a mirrored copy of every request), ONE HTTPRoute on the
platform Gateway carrying the canary split and the mirror, an optional HorizontalPodAutoscaler on
stable, network policies that admit only the Gateway's proxies and Prometheus, a ServiceMonitor and
the model's PrometheusRule (errors, p95 latency against the spec's SLO, availability, GPU saturation,
canary against stable, drift). Per platform, with monitoring: the serving Grafana dashboard.
Why each choice: README.md beside this file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import IMAGES, PLATFORM_NAMESPACES, mirror_image
from plinth.context import PlatformContext, resource_name
from plinth.governance.policies import MODEL_LABEL, USER_PROVIDED
from plinth.modules.cluster.differences import object_store_egress
from plinth.modules.cluster.facts import WORKLOAD_SERVICE_ACCOUNT
from plinth.modules.gpu import GPU_RESOURCE, gpu_node_selector, gpu_toleration
from plinth.modules.monitoring import DASHBOARD_LABEL
from plinth.objects import children, network_policy, peer_policy
from plinth.service import Peer, PlatformService
from plinth.spec import models
from plinth.spec.models import PlatformSpec
from plinth.vocabulary import SERVING_LISTENER, gateway_parent_ref

TRACK_LABEL = "plinth.dev/track"
"""stable, canary or shadow: which release of the model a pod, Service or metric belongs to."""
TRACKS = ("stable", "canary", "shadow")
TRACK_HEADER = "x-plinth-track"
"""Request header naming one track (stable, canary or shadow): the route sends it to that track's Service
alone, past the canary split and the mirror (`plinth verify` probes each track this way)."""
DRIFT_METRIC = "plinth_model_drift_score"
"""The gauge (0-1) a team's drift monitor exports per model, labels namespace=<team>, model=<model>."""
GPU_SATURATION_PERCENT = 90
"""DCGM GPU utilisation above which ModelGpuSaturated fires (sustained for 15 minutes)."""
DASHBOARD = "plinth-dashboard-serving"
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


@dataclass(frozen=True)
class ServingArgs:
    """What serving needs from the spec."""

    serving: Any
    """serving (plinth.spec.models.Serving): the host name and the models."""
    drift: Any
    """monitoring.drift (plinth.spec.models.Drift): the drift alert's threshold, when enabled."""
    gateway: bool
    """The platform Gateway is on (network.cilium with gatewayApi): models get an HTTPRoute."""
    gpu_metrics: bool
    """DCGM GPU metrics are scraped (gpu.operator with monitoring.gpuMetrics): GPU saturation alerts."""


# --- names ----------------------------------------------------------------------------------------


def tracks(model: models.Model) -> list[tuple[str, Any]]:
    """(track, release) of every release the model runs, stable first."""
    return [(track, release) for track, release in
            (("stable", model.stable), ("canary", model.canary), ("shadow", model.shadow)) if release]


def deployment_name(model: models.Model, track: str) -> str:
    return f"{model.name}-{track}"


def service_name(model: models.Model, track: str) -> str:
    """Stable keeps the model's own name: the in-cluster address clients use (`<model>.<team>.svc`)."""
    return model.name if track == "stable" else f"{model.name}-{track}"


def selector(model: models.Model, ctx: PlatformContext, track: str | None = None) -> dict[str, str]:
    """The model's pods (of one track); immutable in a Deployment, so nothing version-dependent."""
    labels = {"app.kubernetes.io/instance": ctx.platform, MODEL_LABEL: model.name}
    if track:
        labels[TRACK_LABEL] = track
    return labels


def model_labels(model: models.Model, track: str, release: models.Release) -> dict[str, str]:
    return {"app.kubernetes.io/name": model.name, "app.kubernetes.io/version": release.tag,
            MODEL_LABEL: model.name, TRACK_LABEL: track}


def route_prefix(model: models.Model) -> str:
    """The model's path on the serving host name: /<team>/<model> (team first, as namespaces own models)."""
    return f"/{model.team}/{model.name}"


# --- the server -----------------------------------------------------------------------------------


def model_repository(model: models.Model, ctx: PlatformContext) -> str:
    """A Triton model's repositories: the spec's, or on a cloud target the team's prefix of the models bucket
    (s3:// or gs://<prefix>-models/<team>/<model>), which the team's workload identity may read."""
    if model.model_repository:
        return model.model_repository
    return f"{ctx.target.bucket_url('models')}/{model.team}/{model.name}"


def user_provided(model: models.Model, ctx: PlatformContext) -> tuple[str, ...]:
    """The objects of the team's namespace a model's pods use that the spec says the team creates (Kind/name):
    its repository's claim and its credentials Secret."""
    provided = []
    if model.runtime == "triton" and model_repository(model, ctx).startswith("pvc://"):
        provided.append(f"PersistentVolumeClaim/{model_repository(model, ctx).removeprefix('pvc://').split('/')[0]}")
    if model.credentials_secret:
        provided.append(f"Secret/{model.credentials_secret}")
    return tuple(provided)


def repository_path(repository: str, release: models.Release) -> str:
    """The release's Triton model repository: <repository>/<version> (a PVC path under /models)."""
    scheme, _, rest = repository.partition("://")
    if scheme == "pvc":
        _, _, path = rest.partition("/")
        return "/".join(p for p in (PVC_MOUNT, path.strip("/"), release.version) if p)
    return f"{repository.rstrip('/')}/{release.version}"


def triton_args(repository: str, release: models.Release) -> list[str]:
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


def image(model: models.Model, release: models.Release, ctx: PlatformContext) -> str:
    if model.runtime == "triton":
        return mirror_image(IMAGES["tritonserver"], ctx.mirror_registry)
    # The user's own Bento, already in the mirror in air-gap mode (rule airgap-mirror-only).
    return f"{model.image}:{release.version}"


def probes(model: models.Model) -> dict[str, dict]:
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


def resources(model: models.Model) -> dict:
    """Requests equal to limits (Guaranteed QoS; the quota rule sums exactly these); GPUs as limits."""
    limits = {"cpu": model.cpu, "memory": model.memory}
    if model.gpu:
        limits[GPU_RESOURCE] = str(model.gpu)
    return {"requests": {"cpu": model.cpu, "memory": model.memory}, "limits": limits}


def pod_spec(model: models.Model, track: str, release: models.Release, ctx: PlatformContext) -> dict:
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
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"}},
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
    else:
        # BentoML keeps its multi-process Prometheus files under $BENTOML_HOME (/home/bentoml).
        mounts.append({"name": "metrics", "mountPath": "/home/bentoml/prometheus_multiproc_dir"})
        volumes.append({"name": "metrics", "emptyDir": {"sizeLimit": "256Mi"}})
    container["volumeMounts"] = mounts
    if model.credentials_secret:
        container["envFrom"] = [{"secretRef": {"name": model.credentials_secret}}]
    pod: dict = {
        "serviceAccountName": WORKLOAD_SERVICE_ACCOUNT,
        "automountServiceAccountToken": False,
        "imagePullSecrets": [{"name": s} for s in ctx.image_pull_secrets],
        # A high UID no host account has; the image user's group (runtime.uid) keeps its files readable.
        "securityContext": {"runAsNonRoot": True, "runAsUser": HIGH_UID, "runAsGroup": runtime.uid,
                            "fsGroup": runtime.uid, "fsGroupChangePolicy": "OnRootMismatch",
                            "seccompProfile": {"type": "RuntimeDefault"}},
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
    if model.gpu:
        # The GPU module's facts: the taint its nodes carry, the label feature discovery puts on them.
        pod["tolerations"] = [gpu_toleration()]
        pod["nodeSelector"] = gpu_node_selector()
    return pod


def deployment_spec(model: models.Model, track: str, release: models.Release, ctx: PlatformContext,
                    labels: dict) -> dict:
    # A GPU model rolls one pod at a time without a surge pod: the quota holds exactly its GPUs.
    strategy = {"maxSurge": 0, "maxUnavailable": 1} if model.gpu else {"maxSurge": 1, "maxUnavailable": 0}
    return {
        "replicas": release.replicas,
        "revisionHistoryLimit": 3,
        "progressDeadlineSeconds": model.startup_seconds + 300,
        "selector": {"matchLabels": selector(model, ctx, track)},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": strategy},
        "template": {"metadata": {"labels": labels}, "spec": pod_spec(model, track, release, ctx)},
    }


def autoscaled(model: models.Model, track: str) -> bool:
    return track == "stable" and model.autoscaling.enabled


def deployment_options(model: models.Model, track: str, opts: pulumi.ResourceOptions) -> pulumi.ResourceOptions:
    """The autoscaler owns the stable replica count: `spec.replicas` is left out of the diff, so a drift
    preview (`pulumi preview --expect-no-changes`) stays clean while it scales."""
    if not autoscaled(model, track):
        return opts
    return pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=["spec.replicas"]))


def autoscaler_spec(model: models.Model) -> dict:
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


# --- the route --------------------------------------------------------------------------------------


def backend_refs(model: models.Model) -> list[dict]:
    """The canary split, exactly: canary weight W -> stable 100-W, canary W."""
    port = RUNTIMES[model.runtime].http_port
    if not model.canary:
        return [{"name": service_name(model, "stable"), "port": port, "weight": 100}]
    weight = model.canary.weight
    return [{"name": service_name(model, "stable"), "port": port, "weight": 100 - weight},
            {"name": service_name(model, "canary"), "port": port, "weight": weight}]


def route_spec(model: models.Model, hostname: str) -> dict:
    """ONE HTTPRoute per model on the platform Gateway: /<team>/<model>/... rewritten to the runtime's own
    paths, weighted to stable and canary, mirrored to the shadow; then per track the same paths with the
    header `x-plinth-track: <track>`, to that track's Service alone."""
    runtime = RUNTIMES[model.runtime]

    def path_match(path: str) -> dict:
        return {"type": "PathPrefix", "value": route_prefix(model) + ("" if path == "/" else path)}

    def rewrite(path: str) -> dict:
        return {"type": "URLRewrite",
                "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": path}}}

    rules = []
    for path in runtime.routes:
        filters: list[dict] = [rewrite(path)]
        if model.shadow:
            # The shadow gets a copy of every request; its answers are discarded (it answers nobody).
            filters.append({"type": "RequestMirror", "requestMirror": {"backendRef": {
                "name": service_name(model, "shadow"), "port": runtime.http_port}}})
        rules.append({"matches": [{"path": path_match(path)}], "filters": filters, "backendRefs": backend_refs(model)})
    # Track selection: a request carrying `x-plinth-track: <track>` reaches that track's Service and nothing
    # else (no split, no mirror), so a prober (`plinth verify`) can test each release through the Gateway.
    # Why these rules win over the weighted ones: Gateway API v1.6.1, HTTPRouteRule.matches (the CRD's
    # description, gateway.networking.k8s.io_httproutes.yaml of the standard bundle): "precedence must be
    # given to the match having: 'Exact' path match. 'Prefix' path match with largest number of characters.
    # Method match. Largest number of header matches. ...". Path comes first, so each track rule carries
    # exactly the weighted rule's path prefix: a tie on the path, won by the one header match. Any other
    # value of the header matches no track rule and takes the weighted rules, like a request without it.
    # At most 8 rules (Triton: 2 paths x (1 + 3 tracks)); the CRD allows 16.
    for track, _ in tracks(model):
        for path in runtime.routes:
            rules.append({
                "matches": [{"path": path_match(path),
                             "headers": [{"type": "Exact", "name": TRACK_HEADER, "value": track}]}],
                "filters": [rewrite(path)],
                "backendRefs": [{"name": service_name(model, track), "port": runtime.http_port}],
            })
    return {
        "parentRefs": [gateway_parent_ref(SERVING_LISTENER)],
        "hostnames": [hostname],
        "rules": rules,
    }


# --- monitoring -----------------------------------------------------------------------------------


def monitor_spec(model: models.Model, ctx: PlatformContext) -> dict:
    """Scrape every track's Service; the pod's model and track become labels plinth_model and plinth_track
    (Triton's own metrics already carry `model`: the repository's model name)."""
    return {
        "selector": {"matchLabels": selector(model, ctx)},
        "namespaceSelector": {"matchNames": [model.team]},
        "endpoints": [{
            "port": RUNTIMES[model.runtime].metrics_port,
            "path": "/metrics",
            "interval": "30s",
            "relabelings": [
                {"sourceLabels": ["__meta_kubernetes_pod_label_plinth_dev_model"], "targetLabel": "plinth_model",
                 "action": "replace"},
                {"sourceLabels": ["__meta_kubernetes_pod_label_plinth_dev_track"], "targetLabel": "plinth_track",
                 "action": "replace"},
            ],
        }],
    }


def _selector(model: models.Model, tracks_re: str, extra: str = "") -> str:
    return f'namespace="{model.team}",plinth_model="{model.name}",plinth_track=~"{tracks_re}"{extra}'


def error_ratio(model: models.Model, tracks_re: str = "stable|canary") -> str:
    """Failed / all requests over 5 minutes (a series that has not appeared yet counts as no failures)."""
    sel = _selector(model, tracks_re)
    if model.runtime == "triton":
        bad = f"sum(rate(nv_inference_request_failure{{{sel}}}[5m]))"
        ok = f"sum(rate(nv_inference_request_success{{{sel}}}[5m]))"
        return f"(({bad} or vector(0)) / ({ok} + ({bad} or vector(0))))"
    failed = _selector(model, tracks_re, ',http_response_code=~"5.."')
    bad = f"sum(rate(bentoml_service_request_total{{{failed}}}[5m]))"
    every = f"sum(rate(bentoml_service_request_total{{{sel}}}[5m]))"
    return f"(({bad} or vector(0)) / {every})"


def request_rate(model: models.Model, by: str = "plinth_track") -> str:
    sel = _selector(model, "stable|canary|shadow")
    if model.runtime == "triton":
        return (f"sum by ({by}) (rate(nv_inference_request_success{{{sel}}}[5m])) + "
                f"sum by ({by}) (rate(nv_inference_request_failure{{{sel}}}[5m]))")
    return f"sum by ({by}) (rate(bentoml_service_request_total{{{sel}}}[5m]))"


def p95_ms(model: models.Model, tracks_re: str = "stable|canary", by: str = "") -> str:
    """95th percentile latency in milliseconds: Triton's summary quantile (the worst pod: quantiles do not
    add up across pods), BentoML's histogram."""
    sel = _selector(model, tracks_re)
    group = f" by ({by})" if by else ""
    if model.runtime == "triton":
        return f'(max{group} (nv_inference_request_summary_us{{{sel},quantile="0.95"}}) / 1000)'
    les = f"le, {by}" if by else "le"
    return (f"(histogram_quantile(0.95, sum by ({les}) "
            f"(rate(bentoml_service_request_duration_seconds_bucket{{{sel}}}[5m]))) * 1000)")


def gpu_utilisation(model: models.Model) -> str:
    """DCGM's per-GPU utilisation of the model's pods. The exporter names the pod using each GPU; scraped
    through its Service those labels arrive as exported_namespace/exported_pod (honorLabels off) or as
    namespace/pod (honorLabels on): either matches."""
    pods = f"{model.name}-({'|'.join(TRACKS)})-.+"
    return (f'avg(DCGM_FI_DEV_GPU_UTIL{{exported_namespace="{model.team}",exported_pod=~"{pods}"}} '
            f'or DCGM_FI_DEV_GPU_UTIL{{namespace="{model.team}",pod=~"{pods}"}})')


def _fraction(percent: float) -> str:
    return f"{percent / 100:g}"


def alert_rules(model: models.Model, args: ServingArgs) -> list[dict]:
    """The model's alerts; every rule carries the label model=<name> (the served-model-reliability policy)."""
    slo = model.slo

    def rule(alert: str, expr: str, for_: str, severity: str, summary: str, **labels: str) -> dict:
        return {"alert": alert, "expr": expr, "for": for_,
                "labels": {"severity": severity, "model": model.name, "team": model.team, **labels},
                "annotations": {"summary": f"{model.team}/{model.name}: {summary}",
                                "description": f"Model {model.name} of team {model.team} ({model.runtime}): "
                                               f"{summary}. Value: {{{{ $value }}}}."}}

    rules = [
        rule("ModelErrorRateHigh", f"{error_ratio(model)} > {_fraction(slo.error_rate_percent)}", "10m",
             "critical", f"more than {slo.error_rate_percent:g}% of requests fail"),
        rule("ModelLatencyHigh", f"{p95_ms(model)} > {slo.latency_ms}", "10m", "warning",
             f"p95 latency above {slo.latency_ms} ms"),
    ]
    if model.stable.replicas or model.autoscaling.enabled:
        rules.append(rule(
            "ModelUnavailable",
            f'kube_deployment_status_replicas_available{{namespace="{model.team}",'
            f'deployment="{deployment_name(model, "stable")}"}} < 1', "5m", "critical",
            "no stable replica is available"))
    if model.canary:
        rules.append(rule(
            "ModelCanaryErrorsAboveStable",
            f"{error_ratio(model, 'canary')} - {error_ratio(model, 'stable')} > {_fraction(slo.error_rate_percent)}",
            "10m", "warning", f"the canary ({model.canary.version}) fails more than {slo.error_rate_percent:g} "
            f"points more often than stable ({model.stable.version}); lower its weight or remove it"))
    if model.gpu and args.gpu_metrics:
        rules.append(rule("ModelGpuSaturated", f"{gpu_utilisation(model)} > {GPU_SATURATION_PERCENT}", "15m",
                          "warning", f"its GPUs are more than {GPU_SATURATION_PERCENT}% busy"))
    if args.drift.enabled:
        rules.append(rule(
            "ModelDrift", f'max({DRIFT_METRIC}{{namespace="{model.team}",model="{model.name}"}}) > '
            f"{args.drift.threshold:g}", "30m", "warning",
            f"input drift score above {args.drift.threshold:g}; retraining may be due", alert_kind="drift"))
    return rules


def _panel(panel_id: int, title: str, exprs: list[tuple[str, str]], x: int, y: int, unit: str) -> dict:
    return {
        "id": panel_id, "title": title, "type": "timeseries",
        "datasource": {"type": "prometheus", "uid": "prometheus"},
        "gridPos": {"h": 8, "w": 8, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
                    for i, (expr, legend) in enumerate(exprs)],
    }


def dashboard(platform: str, models) -> str:
    """Per model, one row: requests, error ratio and p95 latency, each by track (canary against stable,
    and the shadow beside them)."""
    panels: list[dict] = []
    for row, model in enumerate(sorted(models, key=lambda m: (m.team, m.name))):
        y = row * 9
        panels.append({"id": 100 * row + 1, "type": "row", "title": f"{model.team}/{model.name} ({model.runtime})",
                       "collapsed": False, "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        errors = [(error_ratio(model, track), track) for track, _ in tracks(model)]
        panels += [
            _panel(100 * row + 2, "Requests / s by track", [(request_rate(model), "{{plinth_track}}")], 0, y + 1,
                   "reqps"),
            _panel(100 * row + 3, "Error ratio by track", errors, 8, y + 1, "percentunit"),
            _panel(100 * row + 4, "p95 latency by track",
                   [(p95_ms(model, "stable|canary|shadow", "plinth_track"), "{{plinth_track}}")], 16, y + 1, "ms"),
        ]
    doc = {"uid": "plinth-serving", "title": f"Plinth / {platform} / Model serving", "tags": ["plinth", "serving"],
           "editable": False, "schemaVersion": 39, "time": {"from": "now-6h", "to": "now"}, "refresh": "1m",
           "panels": panels}
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


# --- the component --------------------------------------------------------------------------------


class Serving(PlatformService):
    """Served models in their teams' namespaces, and the serving dashboard (plinth:serving:Serving)."""

    @classmethod
    def enabled(cls, spec: PlatformSpec) -> bool:
        return bool(spec.serving.models)

    @classmethod
    def block(cls, spec: PlatformSpec) -> ServingArgs:
        cilium = spec.network.cilium
        return ServingArgs(spec.serving, spec.monitoring.drift, cilium.enabled and cilium.gateway_api,
                           spec.gpu.operator.enabled and spec.monitoring.enabled and spec.monitoring.gpu_metrics)

    @classmethod
    def images(cls, block: ServingArgs, ctx: PlatformContext) -> tuple[str, ...]:
        # Triton from the catalog; a Bento is the user's own image (in air-gap mode already in the mirror,
        # which `plinth images` shows as nothing to copy), at each release's version.
        refs = [IMAGES["tritonserver"]] if any(m.runtime == "triton" for m in block.serving.models) else []
        for model in block.serving.models:
            if model.runtime == "bentoml":
                refs += [image(model, release, ctx)
                         for release in (model.stable, model.canary, model.shadow) if release is not None]
        return tuple(refs)

    @classmethod
    def routed(cls, block: ServingArgs) -> bool:
        return bool(block.gateway and block.serving.hostname)

    def __init__(self, name: str, block: ServingArgs, ctx: PlatformContext,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:serving:Serving", name, None, opts)
        # The services before serving (CRDs, the CNI and Gateway, monitoring, the GPU operator): the
        # models' objects, built later per team, wait for them as the component's own children do.
        self._after = children(self, ctx, opts).depends_on
        if ctx.monitoring:
            k8s.core.v1.ConfigMap(
                resource_name(name, "dashboard"),
                metadata=ctx.metadata(DASHBOARD, name, namespace=PLATFORM_NAMESPACES["monitoring"],
                                      labels={DASHBOARD_LABEL: "1"}),
                data={"plinth-serving.json": dashboard(ctx.platform, block.serving.models)},
                opts=children(self, ctx, opts),
            )
        self.register_outputs({})

    def team_objects(self, name: str, block: ServingArgs, ctx: PlatformContext, team: models.Team,
                     opts: pulumi.ResourceOptions) -> None:
        after = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=self._after))
        for model in block.serving.models:
            if model.team == team.name:
                self._model(name, block, ctx, team, model, after)

    def _model(self, name: str, block: ServingArgs, ctx: PlatformContext, team: models.Team, model: models.Model,
               opts: pulumi.ResourceOptions) -> None:
        runtime = RUNTIMES[model.runtime]

        def meta(obj: str, labels: dict | None = None, annotations: dict | None = None) -> dict:
            return ctx.metadata(obj, name, namespace=team.name, team=team.name, cost_center=team.cost_center,
                                labels=labels, annotations=annotations)

        key = resource_name(name, team.name, model.name)
        services = []
        for track, release in tracks(model):
            labels = model_labels(model, track, release)
            provided = user_provided(model, ctx)
            metadata = meta(deployment_name(model, track), labels,
                            {USER_PROVIDED: ",".join(provided)} if provided else None)
            k8s.apps.v1.Deployment(
                resource_name(key, track),
                metadata=metadata,
                spec=deployment_spec(model, track, release, ctx, metadata["labels"]),
                opts=deployment_options(model, track, opts),
            )
            services.append(k8s.core.v1.Service(
                resource_name(key, track),
                metadata=meta(service_name(model, track), labels),
                spec={"type": "ClusterIP", "selector": selector(model, ctx, track),
                      "ports": [{"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}
                                for port_name, port in runtime.ports]},
                opts=opts,
            ))
            k8s.policy.v1.PodDisruptionBudget(
                resource_name(key, track),
                metadata=meta(deployment_name(model, track), labels),
                # maxUnavailable, not minAvailable: a single replica can still be drained.
                spec={"maxUnavailable": 1, "selector": {"matchLabels": selector(model, ctx, track)}},
                opts=opts,
            )
        base = {"app.kubernetes.io/name": model.name, MODEL_LABEL: model.name}
        if autoscaled(model, "stable"):
            k8s.autoscaling.v2.HorizontalPodAutoscaler(
                resource_name(key, "autoscaler"), metadata=meta(model.name, base), spec=autoscaler_spec(model),
                opts=opts)
        if self.routed(block):
            k8s.apiextensions.CustomResource(
                resource_name(key, "route"), api_version="gateway.networking.k8s.io/v1", kind="HTTPRoute",
                metadata=meta(model.name, base), spec=route_spec(model, block.serving.hostname),
                opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=services)))
        self._policies(name, block, ctx, model, meta, opts)
        if ctx.monitoring:
            k8s.apiextensions.CustomResource(
                resource_name(key, "monitor"), api_version="monitoring.coreos.com/v1", kind="ServiceMonitor",
                metadata=meta(model.name, base), spec=monitor_spec(model, ctx), opts=opts)
            k8s.apiextensions.CustomResource(
                resource_name(key, "alerts"), api_version="monitoring.coreos.com/v1", kind="PrometheusRule",
                metadata=meta(model.name, base),
                spec={"groups": [{"name": f"plinth-serving-{team.name}-{model.name}",
                                  "rules": alert_rules(model, block)}]},
                opts=opts)

    def _policies(self, name: str, block: ServingArgs, ctx: PlatformContext, model: models.Model, meta,
                  opts: pulumi.ResourceOptions) -> None:
        """Only the Gateway's proxies (on the HTTP port, with a route) and Prometheus (on the metrics port)
        reach the model's pods from outside the namespace; an object-store repository is their only way out."""
        runtime = RUNTIMES[model.runtime]
        pods = {"matchLabels": selector(model, ctx)}
        peers = []
        if self.routed(block):
            peers.append(Peer(f"gateway-{model.name}", ports=(runtime.http_port,), entity="ingress"))
        if ctx.monitoring:
            peers.append(Peer(f"monitoring-{model.name}", PLATFORM_NAMESPACES["monitoring"],
                              ports=(dict(runtime.ports)[runtime.metrics_port],)))
        policies = [p for p in (peer_policy("Ingress", peer, ctx) for peer in peers) if p]
        repository = model_repository(model, ctx) if model.runtime == "triton" else "pvc://"
        if not repository.startswith("pvc://") and model.repository_cidrs:
            policies.append(("NetworkPolicy", f"allow-to-repository-{model.name}", {
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"ipBlock": {"cidr": cidr}} for cidr in model.repository_cidrs]}]}))
        elif ctx.cilium and ctx.target.in_object_store(repository):
            # The cloud's object store and token service by name (Cilium resolves them through its DNS proxy).
            policies.append(("CiliumNetworkPolicy", f"allow-to-repository-{model.name}",
                             {"egress": object_store_egress(ctx.target)}))
        for kind, policy, spec in policies:
            spec = {("endpointSelector" if kind == "CiliumNetworkPolicy" else "podSelector"): pods,
                    **{k: v for k, v in spec.items() if k not in ("endpointSelector", "podSelector")}}
            network_policy(kind, resource_name(name, model.team, policy), spec,
                           meta(policy, {MODEL_LABEL: model.name}), ctx, opts)
