"""Model serving (serving.models): Triton Inference Server or a BentoML Bento per model, in its team's namespace.

Per model: a Deployment, Service and PodDisruptionBudget per track (`stable`, an optional weighted
`canary`, an optional `shadow` that gets a mirrored copy of every request), ONE HTTPRoute on the
platform Gateway carrying the canary split and the mirror, an optional HorizontalPodAutoscaler on
stable, network policies that admit only the Gateway's proxies and Prometheus, a ServiceMonitor and
the model's PrometheusRule (errors, p95 latency against the spec's SLO, availability, GPU saturation,
canary against stable, drift). Per platform, with monitoring: the serving Grafana dashboard.

Here the component; beside it: names.py (tracks, names, selectors), runtimes.py (the runtimes, their pods
and Deployments), routing.py (the route's rules), monitoring.py (ServiceMonitor, alerts, dashboard), drift.py
(the drift job), reqlog.py (the request logger sidecar of drift.requestLog).
Why each choice: README.md beside this file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import IMAGES, PLATFORM_NAMESPACES
from plinth.context import PlatformContext, resource_name
from plinth.modules.cluster.differences import object_store_egress
from plinth.modules.monitoring.dashboards import dashboard_config_map
from plinth.modules.serving import drift, registry, reqlog
from plinth.modules.serving.monitoring import alert_rules, monitor_spec, serving_dashboard
from plinth.modules.serving.names import deployment_name, model_labels, selector, service_name, tracks
from plinth.modules.serving.routing import route_rules
from plinth.modules.serving.runtimes import (
    RUNTIMES,
    autoscaled,
    autoscaler_spec,
    deployment_options,
    deployment_spec,
    image,
    model_repository,
    user_provided,
)
from plinth.objects import children, gateway_route, network_policy, peer_policy
from plinth.service import Need, Peer, PlatformService, gateway_hostname_rules, gateway_serves
from plinth.spec import models
from plinth.spec.errors import Violation
from plinth.spec.models import PlatformSpec
from plinth.targets import WORKLOAD_SERVICE_ACCOUNT, Identity
from plinth.vocabulary import MODEL_LABEL, SERVING_LISTENER, USER_PROVIDED


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


def service_ports(model, track: str) -> list[tuple[str, int, str]]:
    """(name, port, targetPort) of a track's Service: the runtime's ports; a logged track's HTTP port goes to the
    request logger's (reqlog), so the route and clients keep the port number they know."""
    runtime, logged = RUNTIMES[model.runtime], reqlog.logged(model, track)
    ports = [(name, port, reqlog.PORT_NAME if port == runtime.http_port and logged else name)
             for name, port in runtime.ports]
    if logged:  # the logger's own counts, for the ServiceMonitor
        ports.append((reqlog.METRICS_PORT_NAME, reqlog.METRICS_PORT, reqlog.METRICS_PORT_NAME))
    return ports


def pod_ports(model, port: int) -> tuple[int, ...]:
    """The pod ports a Service port reaches on the model's pods, across its tracks: the runtime's port, and the
    request logger's where a track logs (the shadow never does)."""
    if port != RUNTIMES[model.runtime].http_port:
        return (port,)
    return tuple(sorted({reqlog.LOGGER_PORT if reqlog.logged(model, track) else port for track, _ in tracks(model)}))


# --- the component --------------------------------------------------------------------------------


class Serving(PlatformService):
    """Served models in their teams' namespaces, and the serving dashboard (plinth:serving:Serving)."""

    @classmethod
    def enabled(cls, spec: PlatformSpec) -> bool:
        return bool(spec.serving.models)

    @classmethod
    def endpoints(cls, block: ServingArgs, ctx: PlatformContext) -> dict[str, str]:
        # Each model answers at <url>/<team>/<model>/ (modules/serving/routing.py).
        return {"url": f"https://{block.serving.hostname}"} if block.serving.hostname else {}

    @classmethod
    def identities(cls, spec) -> tuple[Identity, ...]:
        """A Triton team reads its own prefix of the models bucket, as its workloads' ServiceAccount."""
        teams = sorted({model.team for model in spec.serving.models
                        if model.runtime == "triton" and model.registry is None})
        return tuple(Identity(f"models-{team}", team, WORKLOAD_SERVICE_ACCOUNT, f"bucket-read:models/{team}")
                     for team in teams)

    @classmethod
    def needs(cls, spec) -> tuple[Need, ...]:
        serving, needs = spec.serving, []
        if serving.hostname:
            needs.append(Need("gateway", ("serving", "hostname"), "the models' host name is served by the platform "
                              "Gateway", "serving", "remove hostname (models are then reachable in-cluster only)"))
        for index, model in enumerate(serving.models):
            if model.registry:
                needs.append(Need("mlflow", ("serving", "models", index, "registry"), f"model {model.name!r} "
                                  "serves versions registered in the MLflow model registry", "serving"))
            if reqlog.logged(model):
                needs.append(Need("object-store", ("serving", "models", index, "drift", "requestLog"),
                                  f"model {model.name!r} logs its requests into the artifacts bucket of the object "
                                  "store, with its team's keys", "request-log", "use drift.window (a file) instead"))
        if serving.models:
            needs.append(Need("monitoring", ("serving", "models"), "every served model has alerts (a PrometheusRule, "
                              "required by the served-model-reliability policy) from monitoring", "serving"))
        return tuple(needs)

    @classmethod
    def rules(cls, spec) -> Iterator[Violation]:
        serving = spec.serving
        if serving.models and gateway_serves(spec) and not serving.hostname:
            yield Violation(("serving", "hostname"), "models are routed through the platform Gateway, which needs "
                            "their host name", "serving-hostname-required", "set serving.hostname to one name "
                            f"under {spec.network.gateway.hostname.removeprefix('*.')}")
        if serving.hostname:
            yield from gateway_hostname_rules(spec, ("serving",), serving.hostname, "serving")
        yield from registry.rules(spec)
        yield from drift.rules(spec)

    @classmethod
    def block(cls, spec) -> ServingArgs:
        cilium = spec.network.cilium
        return ServingArgs(spec.serving, spec.monitoring.drift, cilium.enabled and cilium.gateway_api,
                           spec.gpu.operator.enabled and spec.monitoring.enabled and spec.monitoring.gpu_metrics)

    @classmethod
    def images(cls, block: ServingArgs, ctx: PlatformContext) -> tuple[str, ...]:
        # Triton from the catalog; a Bento is the user's own image (in air-gap mode already in the mirror,
        # which `plinth images` shows as nothing to copy), at each release's version.
        refs = [IMAGES["tritonserver"]] if any(m.runtime == "triton" for m in block.serving.models) else []
        if any(m.registry for m in block.serving.models):
            refs.append(IMAGES["mlflow-client"])
        if any(m.drift for m in block.serving.models):
            refs.append(IMAGES["drift"])
        if any(reqlog.logged(m) for m in block.serving.models):
            refs.append(IMAGES["requestlog"])
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
            dashboard_config_map(resource_name(name, "dashboard"), "serving",
                                 serving_dashboard(ctx.platform, block.serving.models), name, ctx,
                                 children(self, ctx, opts))
        self.register_outputs(self.endpoints(block, ctx))

    def team_objects(self, name: str, block: ServingArgs, ctx: PlatformContext, team: models.Team,
                     opts: pulumi.ResourceOptions) -> None:
        after = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=self._after))
        for model in block.serving.models:
            if model.team == team.name:
                self._model(name, block, ctx, team, model, after)

    def _model(self, name: str, block: ServingArgs, ctx: PlatformContext, team: models.Team, model: models.Model,
               opts: pulumi.ResourceOptions) -> None:
        def meta(obj: str, labels: dict | None = None, annotations: dict | None = None) -> dict:
            return ctx.metadata(obj, name, namespace=team.name, team=team.name, cost_center=team.cost_center,
                                labels=labels, annotations=annotations)

        key = resource_name(name, team.name, model.name)
        services = []
        for track, release in tracks(model):
            labels = model_labels(model, track, release)
            provided = user_provided(model, ctx)
            notes = {**({USER_PROVIDED: ",".join(provided)} if provided else {}),
                     **(registry.registered_annotations(model, release) if model.registry else {})}
            metadata = meta(deployment_name(model, track), labels, notes or None)
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
                      "ports": [{"name": port_name, "port": port, "targetPort": target, "protocol": "TCP"}
                                for port_name, port, target in service_ports(model, track)]},
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
            gateway_route(resource_name(key, "route"), meta(model.name, base), SERVING_LISTENER, route_rules(model),
                          pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=services)),
                          hostname=block.serving.hostname)
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
        if model.drift:
            self._drift(key, ctx, model, meta, opts)

    def _drift(self, key: str, ctx: PlatformContext, model: models.Model, meta,
               opts: pulumi.ResourceOptions) -> None:
        """The drift job, and (with monitoring) its PodMonitor and Prometheus's way to its metrics port."""
        labels = {"app.kubernetes.io/name": drift.job_name(model), drift.DRIFT_OF_LABEL: model.name}
        # The data claims are the team's own (the references-resolve policy reads this annotation).
        provided = {USER_PROVIDED: ",".join(f"PersistentVolumeClaim/{claim}" for claim in drift.claims(model))}
        k8s.batch.v1.CronJob(resource_name(key, "drift"), metadata=meta(drift.job_name(model), labels, provided),
                             spec=drift.cronjob_spec(model, ctx), opts=opts)
        if not ctx.monitoring:
            return
        k8s.apiextensions.CustomResource(
            resource_name(key, "drift-monitor"), api_version="monitoring.coreos.com/v1", kind="PodMonitor",
            metadata=meta(drift.job_name(model), labels), spec=drift.monitor_spec(model, ctx), opts=opts)
        peer = Peer(f"monitoring-{drift.job_name(model)}", PLATFORM_NAMESPACES["monitoring"],
                    ports=(drift.METRICS_PORT,))
        kind, policy, spec = peer_policy("Ingress", peer, ctx)  # type: ignore[misc]  # a namespace: always one
        spec = {("endpointSelector" if kind == "CiliumNetworkPolicy" else "podSelector"):
                {"matchLabels": drift.pod_labels(model, ctx)},
                **{k: v for k, v in spec.items() if k not in ("endpointSelector", "podSelector")}}
        network_policy(kind, resource_name(key, policy), spec, meta(policy, labels), ctx, opts)

    def _policies(self, name: str, block: ServingArgs, ctx: PlatformContext, model: models.Model, meta,
                  opts: pulumi.ResourceOptions) -> None:
        """Only the Gateway's proxies (on the HTTP port, with a route) and Prometheus (on the metrics port)
        reach the model's pods from outside the namespace; an object-store repository is their only way out."""
        runtime = RUNTIMES[model.runtime]
        pods = {"matchLabels": selector(model, ctx)}
        peers = []
        # Through a logged track's Service, the HTTP port is the request logger's (service_ports).
        if self.routed(block):
            peers.append(Peer(f"gateway-{model.name}", ports=pod_ports(model, runtime.http_port), entity="ingress"))
        if ctx.monitoring:
            logger = (reqlog.METRICS_PORT,) if reqlog.logged(model) else ()
            peers.append(Peer(f"monitoring-{model.name}", PLATFORM_NAMESPACES["monitoring"],
                              ports=pod_ports(model, dict(runtime.ports)[runtime.metrics_port]) + logger))
        policies = [p for p in (peer_policy("Ingress", peer, ctx) for peer in peers) if p]
        # A Bento's model is in its image; a registered model's comes through MLflow (the tenant egress to it).
        repository = model_repository(model, ctx) if model.runtime == "triton" and not model.registry else "pvc://"
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
