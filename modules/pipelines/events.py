"""Argo Events (pipelines.events): retraining on drift. The events controller, its JetStream EventBus, one webhook
EventSource and one Sensor per model with `retraining`, all in namespace argo-events; each Sensor creates a
Workflow from the model's WorkflowTemplate in its team's namespace, with a ServiceAccount that may do exactly that
there. Alertmanager sends the model's drift alerts to its webhook endpoint (modules/monitoring). Why each choice:
README.md beside this file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import CHARTS, EVENTBUS_JETSTREAM, PLATFORM_NAMESPACES, ImageRef, mirror_image
from plinth.context import PlatformContext, resource_name
from plinth.modules.backups.alerts import alert_rule
from plinth.modules.helm import HelmService
from plinth.modules.mlflow import client_env
from plinth.modules.pipelines import WORKFLOW_ACCOUNT, bind
from plinth.securitycontext import restricted_container, restricted_pod
from plinth.service import Need, Peer
from plinth.spec.errors import Violation
from plinth.spec.models import PlatformSpec, Team
from plinth.vocabulary import GPU, GPU_TAINT, MODEL_LABEL

NAMESPACE = CHARTS["argo-events"].namespace
EVENT_SOURCE = "retraining"
"""The one webhook EventSource: an endpoint per model with retraining."""
WEBHOOK_PORT = 12000
"""The port its pods listen on and its Service (`retraining-eventsource-svc`) exposes."""
EVENT_SOURCE_SERVICE = f"{EVENT_SOURCE}-eventsource-svc"
"""The Service the events controller names `<EventSource>-eventsource-svc`."""
EVENT_SOURCE_LABEL = "eventsource-name"
"""The label the events controller puts on an EventSource's pods."""
METRICS_PORT = 7777
"""The metrics port of the controller, the EventSource and Sensor pods, and the EventBus's exporter."""
EVENT_BUS = "default"
"""The EventBus every EventSource and Sensor of the namespace uses when it names none."""
POD_CONTROLLER_LABEL = "controller"
MONITORED_PODS = ("eventbus-controller", "eventsource-controller", "sensor-controller")
"""The `controller` label of the EventBus's, the EventSources' and the Sensors' pods (the events controller's
reconcilers set it): the pods the PodMonitor scrapes."""
PODS_MONITOR = "argo-events-pods"
RETRAINING_ALERTS = "retraining-alerts"
"""The PrometheusRule of the Sensors (with monitoring and a retrained model)."""
RUN_AS = 9731
"""The user the argo-events image runs as here (the image sets none: root, which restricted pods refuse)."""
NATS_USER = 1000
"""The user the JetStream servers run as (the nats image sets none either)."""
SUBMIT_ROLE = "plinth:retraining-submit"
"""The Role in a team's namespace of its Sensors' account: create Workflows, nothing else."""
SUBMIT_RULES = [{"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create"]}]
ALERTMANAGER_PODS = {"app.kubernetes.io/name": "alertmanager"}
"""The label the Prometheus operator puts on Alertmanager's pods."""
PARAMETERS = (
    ("model", "body.groupLabels.model"),
    ("team", "body.commonLabels.team"),
    ("version", "body.commonLabels.version"),
    ("alertname", "body.groupLabels.alertname"),
    ("alert", "body.alerts.0"),
)
"""Each parameter of a retraining workflow and where the Sensor reads it in the webhook event (`header`, `body`:
Alertmanager's notification). The route groups by alertname, namespace and model: one model per notification."""

CONTROLLER_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
POD_RESOURCES = {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
"""Each EventSource and Sensor pod (a webhook and a trigger: small)."""
BUS_RESOURCES = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
SIDECAR_RESOURCES = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}


def retrained(spec) -> tuple:
    """The served models with a `retraining` block, in spec order."""
    return tuple(model for model in spec.serving.models if model.retraining)


def short(*parts: str) -> str:
    """A stable name of at most 50 characters (the controller adds suffixes and puts it in 63-character labels)."""
    name = "-".join(parts)
    return name if len(name) <= 50 else f"{name[:41]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def event_name(model) -> str:
    return short(model.team, model.name)


def endpoint(model) -> str:
    return f"/{model.team}/{model.name}"


def webhook_url(model) -> str:
    """Where Alertmanager posts the model's drift alerts."""
    return f"http://{EVENT_SOURCE_SERVICE}.{NAMESPACE}.svc:{WEBHOOK_PORT}{endpoint(model)}"


def sensor_name(model) -> str:
    return short("retrain", model.team, model.name)


def template_name(model) -> str:
    """The WorkflowTemplate the model's Sensor submits: the team's, or the generated `<model>-retraining`."""
    return model.retraining.workflow_template or short(model.name, "retraining")


def generated_template(model, mlflow: bool) -> dict:
    """The spec of the one-step WorkflowTemplate of a `retraining.image`: the alert's parameters as environment
    variables, restricted, requests equal to limits (the team's quota counts them), GPUs with their toleration."""
    retraining = model.retraining
    both: dict = {"cpu": retraining.cpu, "memory": retraining.memory}
    if retraining.gpu:
        both[GPU] = str(retraining.gpu)
    env = [{"name": f"PLINTH_{name.upper()}", "value": f"{{{{workflow.parameters.{name}}}}}"}
           for name, _ in PARAMETERS]
    if mlflow:  # the in-cluster server, every artifact through it
        env += [{"name": name, "value": value} for name, value in client_env().items()]
    container: dict = {"image": retraining.image, "env": env,
                       "resources": {"requests": dict(both), "limits": dict(both)},
                       "securityContext": restricted_container(standalone=True)}
    if retraining.command:
        container["command"] = list(retraining.command)
    step: dict = {"name": "retrain", "container": container}
    if retraining.gpu:
        step["tolerations"] = [{**GPU_TAINT, "operator": "Equal"}]
    return {"entrypoint": "retrain", "serviceAccountName": WORKFLOW_ACCOUNT,
            "securityContext": restricted_pod(),
            "arguments": {"parameters": [{"name": name} for name, _ in PARAMETERS]},
            "templates": [step]}


def sensor_account(team: str) -> str:
    """The ServiceAccount (in argo-events) of the Sensors of a team's models."""
    return short("retraining", team)


@dataclass(frozen=True)
class ArgoEventsArgs:
    """What Argo Events needs from the spec: its block and the models it retrains."""

    events: Any
    """pipelines.events (plinth.spec.models.ArgoEvents)."""
    models: tuple = ()
    """The served models with `retraining`."""
    mlflow: bool = False
    """registry.mlflow is on: the generated templates run with MLflow's client environment (mlflow.client_env)."""
    storage_class: str = ""
    """StorageClass of the EventBus's volumes: `busPersistence.storageClass`, Longhorn's `longhorn` when it is on,
    else "" (the cluster's default)."""


def workflow(model) -> dict:
    """The Workflow a Sensor creates: the model's template as the team's workflow account, its parameters set
    from the alert (PARAMETERS; the values here are what the Sensor replaces)."""
    return {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"generateName": f"{short(model.name, 'retrain')}-", "namespace": model.team,
                     "labels": {MODEL_LABEL: model.name, "plinth.dev/retraining": "drift"}},
        "spec": {"serviceAccountName": WORKFLOW_ACCOUNT,
                 "workflowTemplateRef": {"name": template_name(model)},
                 "arguments": {"parameters": [{"name": name, "value": ""} for name, _ in PARAMETERS]}},
    }


def sensor_spec(model, ctx: PlatformContext) -> dict:
    """One dependency on the model's endpoint, accepted only for a firing drift alert of this model; one trigger
    creating its Workflow in the team's namespace (fixed here: nothing in the request chooses it)."""
    dependency = "drift"
    filters = [("body.status", "firing"), ("body.groupLabels.alertname", "ModelDrift"),
               ("body.groupLabels.namespace", model.team), ("body.groupLabels.model", model.name)]
    return {
        "template": {**pod_template(ctx), "serviceAccountName": sensor_account(model.team)},
        "dependencies": [{
            "name": dependency, "eventSourceName": EVENT_SOURCE, "eventName": event_name(model),
            # A string filter's value is a regular expression: anchored, each matches its one value.
            "filters": {"data": [{"path": path, "type": "string", "value": [f"^{re.escape(value)}$"]}
                                 for path, value in filters]},
        }],
        "triggers": [{"template": {
            "name": "submit",
            "k8s": {"operation": "create", "source": {"resource": workflow(model)},
                    "parameters": [{"src": {"dependencyName": dependency, "dataKey": key},
                                    "dest": f"spec.arguments.parameters.{index}.value"}
                                   for index, (_, key) in enumerate(PARAMETERS)]},
        }}],
    }


def event_source_spec(models, ctx: PlatformContext) -> dict:
    return {
        "template": pod_template(ctx),
        "service": {"ports": [{"port": WEBHOOK_PORT, "targetPort": WEBHOOK_PORT}]},
        "webhook": {event_name(model): {"port": str(WEBHOOK_PORT), "endpoint": endpoint(model), "method": "POST"}
                    for model in models},
    }


def pod_template(ctx: PlatformContext) -> dict:
    """An EventSource's or Sensor's pod: restricted, the mirror's pull secret."""
    template: dict = {"securityContext": restricted_pod(RUN_AS, RUN_AS),
                      "container": {"securityContext": restricted_container(read_only_root=True),
                                    "resources": POD_RESOURCES}}
    if ctx.image_pull_secrets:
        template["imagePullSecrets"] = [{"name": s} for s in ctx.image_pull_secrets]
    return template


def bus_persistence(block: ArgoEventsArgs, ctx: PlatformContext) -> dict | None:
    """The EventBus's `jetstream.persistence` (a ReadWriteOnce volume per server, mounted at /data/jetstream),
    or None (emptyDir): `busPersistence.enabled`, else on in staging and prod."""
    persistence = block.events.bus_persistence
    if not (ctx.prod_like if persistence.enabled is None else persistence.enabled):
        return None
    return {"accessMode": "ReadWriteOnce", "volumeSize": persistence.volume_size,
            **({"storageClassName": block.storage_class} if block.storage_class else {})}


def event_bus_spec(replicas: int, ctx: PlatformContext, persistence: dict | None = None) -> dict:
    """JetStream at the catalog's version (the controller's ConfigMap maps it to the mirrored images); the
    streams' settings are the chart's (`configs.jetstream.streamConfig`) but for their replicas."""
    containers = {"securityContext": restricted_container()}
    spec: dict = {
        "version": EVENTBUS_JETSTREAM, "replicas": replicas,
        # Each stream on as many servers as the bus has, up to 3 (the chart's default of 3 fails on 1 server).
        "streamConfig": f"replicas: {min(replicas, 3)}\n",
        "securityContext": restricted_pod(NATS_USER, NATS_USER, NATS_USER),
        "containerTemplate": {**containers, "resources": BUS_RESOURCES},
        "reloaderContainerTemplate": {**containers, "resources": SIDECAR_RESOURCES},
        "metricsContainerTemplate": {**containers, "resources": SIDECAR_RESOURCES},
    }
    if persistence:
        spec["persistence"] = persistence
    if ctx.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": s} for s in ctx.image_pull_secrets]
    return {"jetstream": spec}


def pods_monitor_spec() -> dict:
    """The PodMonitor of the EventBus's servers (their exporter), the EventSource's and the Sensors' pods: each
    has a container port `metrics` (7777) and the label `controller` its reconciler sets."""
    return {"selector": {"matchExpressions": [{"key": POD_CONTROLLER_LABEL, "operator": "In",
                                                "values": list(MONITORED_PODS)}]},
            "podMetricsEndpoints": [{"port": "metrics", "interval": "30s"}]}


def retraining_rules() -> list[dict]:
    """A Sensor failed to create its Workflow (argo_events_action_failed_total rose within 15 minutes, or the
    series appeared above zero: the Sensor's counters start at its first failure). The drift alert behind it
    repeats daily; the retraining does not happen until the trigger works."""
    failed = f'argo_events_action_failed_total{{namespace="{NAMESPACE}"}}'
    by = "sum by (sensor_name, trigger_name)"
    return [{
        "alert": "RetrainingTriggerFailed",
        "expr": f"{by} (increase({failed}[15m])) > 0 or {by} ({failed} unless {failed} offset 15m) > 0",
        "labels": {"severity": "warning"},
        "annotations": {
            "summary": "Sensor {{ $labels.sensor_name }} failed to create its retraining workflow",
            "description": "Trigger {{ $labels.trigger_name }} of Sensor "
                           f"{NAMESPACE}/{{{{ $labels.sensor_name }}}} failed: the model is not retrained on its "
                           f"drift alert (`kubectl -n {NAMESPACE} logs -l "
                           "sensor-name={{ $labels.sensor_name }}`)."},
    }]


class ArgoEvents(HelmService):
    """Argo Events and the retraining webhook (plinth:pipelines:ArgoEvents)."""

    type_token = "plinth:pipelines:ArgoEvents"
    capability = "events"
    capability_fix = "enable pipelines.events"
    chart_key = "argo-events"
    spec_path = ("pipelines", "events")
    pod_security = "restricted"

    @classmethod
    def block(cls, spec: PlatformSpec) -> ArgoEventsArgs:
        events = spec.pipelines.events
        storage_class = spec.storage.volume_class(events.bus_persistence.storage_class)
        return ArgoEventsArgs(events, retrained(spec), spec.registry.mlflow.enabled, storage_class)

    @classmethod
    def enabled(cls, spec: PlatformSpec) -> bool:
        return spec.pipelines.events.enabled

    @classmethod
    def team_accounts(cls, spec) -> tuple[tuple[str, str], ...]:
        """The Sensors' account of each team with a retrained model: its RoleBinding there submits Workflows."""
        return tuple(sorted({(model.team, f"{NAMESPACE}/{sensor_account(model.team)}") for model in retrained(spec)}))

    @classmethod
    def needs(cls, spec) -> tuple[Need, ...]:
        needs = []
        if spec.pipelines.events.enabled:
            needs.append(Need("pipelines", ("pipelines", "events", "enabled"), "Argo Events submits Argo workflows "
                              "(pipelines.argo)", "argo-events", "turn pipelines.events off"))
        for index, model in ((i, m) for i, m in enumerate(spec.serving.models) if m.retraining):
            at = ("serving", "models", index, "retraining")
            needs.append(Need("pipelines", at, f"model {model.name!r} is retrained by an Argo workflow "
                              "(pipelines.argo)", "retraining", "remove the model's retraining"))
            needs.append(Need("events", at, f"model {model.name!r} is retrained when Argo Events "
                              "(pipelines.events) receives its drift alert", "retraining",
                              "remove the model's retraining"))
        return tuple(needs)

    @classmethod
    def rules(cls, spec) -> Iterator[Violation]:
        replicas = spec.pipelines.events.bus_replicas
        if spec.pipelines.events.enabled and replicas == 2:
            yield Violation(("pipelines", "events", "busReplicas"), "a JetStream EventBus runs 1 server, or 3 and "
                            "more (2 cannot elect a leader after losing one)", "argo-events-bus-replicas",
                            "set 1 or 3")
        mirror = spec.airgap.mirror.registry if spec.airgap.enabled and spec.airgap.mirror else None
        for index, model in enumerate(spec.serving.models):
            at = ("serving", "models", index, "retraining")
            image = model.retraining.image if model.retraining else None
            if image and mirror and not image.startswith(mirror + "/"):
                yield Violation((*at, "image"), f"image {image!r} is not in the mirror {mirror!r}",
                                "airgap-mirror-only", "push the image to the mirror and reference it there")
            if model.retraining and model.retraining.gpu and not spec.gpu.operator.enabled:
                yield Violation((*at, "gpu"), "the retraining step requests GPUs but the GPU operator is disabled",
                                "retraining-gpu-operator", "enable gpu.operator, or set gpu: 0")
            if model.retraining and not (spec.monitoring.enabled and spec.monitoring.drift.enabled):
                yield Violation(at, f"model {model.name!r} is retrained "
                                "on its drift alert, which only monitoring.drift raises", "retraining-needs-drift",
                                "set monitoring.enabled and monitoring.drift.enabled: true, or remove the model's "
                                "retraining")

    @classmethod
    def user_values(cls, block: ArgoEventsArgs) -> dict:
        return dict(block.events.values)

    @classmethod
    def images(cls, block: ArgoEventsArgs, ctx: PlatformContext) -> tuple[str, ...]:
        return cls.chart().images

    @classmethod
    def replicas(cls, ctx: PlatformContext) -> int:
        return ctx.replicas(None)

    @classmethod
    def namespace_peers(cls, block: ArgoEventsArgs, ctx: PlatformContext, namespace: str) -> tuple[Peer, ...]:
        # Prometheus scrapes the metrics port only: the monitoring namespace's one other way in is Alertmanager's
        # to the webhook (`objects`).
        return tuple(Peer(peer.name, peer.namespace, (METRICS_PORT,)) if peer.namespace == PLATFORM_NAMESPACES[
            "monitoring"] and not peer.ports else peer for peer in super().namespace_peers(block, ctx, namespace))

    @classmethod
    def owned_values(cls, block: ArgoEventsArgs, ctx: PlatformContext) -> dict:
        events, nats, reloader, exporter = (mirror_image(ref, ctx.mirror_registry) for ref in cls.chart().images)
        image = ImageRef.parse(events)
        replicas = cls.replicas(ctx)
        return {
            # The three CRDs (EventBus, EventSource, Sensor) are templates of the package: nothing to download.
            "crds": {"install": True, "keep": True},
            "createAggregateRoles": False,
            "global": {
                "image": {"repository": f"{image.registry}/{image.repository}", "tag": image.tag,
                          "imagePullPolicy": "IfNotPresent"},
                "imagePullSecrets": [{"name": s} for s in ctx.image_pull_secrets],
                "securityContext": restricted_pod(RUN_AS, RUN_AS),
            },
            # One bus version, pinned and mirrored: the chart's list names `latest` and images by short name.
            "configs": {"nats": {"versions": []}, "jetstream": {"versions": [{
                "version": EVENTBUS_JETSTREAM, "natsImage": nats, "metricsExporterImage": exporter,
                "configReloaderImage": reloader, "startCommand": "/nats-server"}]}},
            "controller": {
                "replicas": replicas,
                "pdb": {"enabled": replicas > 1, "maxUnavailable": 1},
                # A Role in argo-events only: the controller manages the EventBus, EventSources and Sensors here.
                "rbac": {"enabled": True, "namespaced": True, "managedNamespace": "", "rules": []},
                "containerSecurityContext": restricted_container(read_only_root=True),
                "resources": CONTROLLER_RESOURCES,
                "metrics": {"enabled": ctx.monitoring,
                            "serviceMonitor": {"enabled": ctx.monitoring, "namespace": NAMESPACE}},
            },
            "webhook": {"enabled": False},
        }

    def objects(self, name: str, block: ArgoEventsArgs, ctx: PlatformContext, opts: pulumi.ResourceOptions) -> None:
        def meta(obj: str, **kwargs) -> dict:
            return ctx.metadata(obj, name, namespace=NAMESPACE, **kwargs)

        def custom(key: str, kind: str, obj: str, spec: dict) -> None:
            k8s.apiextensions.CustomResource(resource_name(name, key), api_version="argoproj.io/v1alpha1", kind=kind,
                                             metadata=meta(obj), spec=spec, opts=opts)

        custom("event-bus", "EventBus", EVENT_BUS, event_bus_spec(ctx.replicas(block.events.bus_replicas, 3), ctx,
                                                                  bus_persistence(block, ctx)))
        if ctx.monitoring:
            k8s.apiextensions.CustomResource(resource_name(name, PODS_MONITOR), api_version="monitoring.coreos.com/v1",
                                             kind="PodMonitor", metadata=meta(PODS_MONITOR), spec=pods_monitor_spec(),
                                             opts=opts)
        if not block.models:
            return
        custom("event-source", "EventSource", EVENT_SOURCE, event_source_spec(block.models, ctx))
        if ctx.monitoring:
            alert_rule(resource_name(name, RETRAINING_ALERTS), meta(RETRAINING_ALERTS), "plinth-retraining",
                       retraining_rules(), opts)
        # Alertmanager's pods, and nothing else outside the namespace, reach the webhook's port.
        policy = "allow-alertmanager-to-webhook"
        k8s.networking.v1.NetworkPolicy(resource_name(name, policy), metadata=meta(policy), spec={
            "podSelector": {"matchLabels": {EVENT_SOURCE_LABEL: EVENT_SOURCE}}, "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": PLATFORM_NAMESPACES["monitoring"]}},
                "podSelector": {"matchLabels": ALERTMANAGER_PODS}}],
                "ports": [{"protocol": "TCP", "port": WEBHOOK_PORT}]}]}, opts=opts)
        for team in sorted({model.team for model in block.models}):
            k8s.core.v1.ServiceAccount(resource_name(name, sensor_account(team)), metadata=meta(sensor_account(team)),
                                       automount_service_account_token=True, opts=opts)
        for model in block.models:
            custom(sensor_name(model), "Sensor", sensor_name(model), sensor_spec(model, ctx))

    def team_objects(self, name: str, block: ArgoEventsArgs, ctx: PlatformContext, team: Team,
                     opts: pulumi.ResourceOptions) -> None:
        models = [model for model in block.models if model.team == team.name]
        if not models:
            return

        def meta(obj: str) -> dict:
            return ctx.metadata(obj, name, namespace=team.name, team=team.name, cost_center=team.cost_center)

        for model in models:
            if model.retraining.image:
                k8s.apiextensions.CustomResource(
                    resource_name(name, team.name, template_name(model)), api_version="argoproj.io/v1alpha1",
                    kind="WorkflowTemplate", metadata=meta(template_name(model)),
                    spec=generated_template(model, block.mlflow), opts=opts)
        # The team's Sensors create Workflows here (the workflow controller runs them as the team's account).
        bind(resource_name(name, team.name, "retraining-submit"), meta(SUBMIT_ROLE), SUBMIT_RULES,
             [{"kind": "ServiceAccount", "name": sensor_account(team.name), "namespace": NAMESPACE}], opts)
