"""Argo Events (pipelines.events) and retraining on drift under Pulumi's mock runtime: the controller confined to
its restricted namespace, the pinned JetStream EventBus with mirrored images, one webhook endpoint and one Sensor
per model with `retraining`, the Sensor's account allowed to create Workflows in its team's namespace only,
Alertmanager's route to the endpoint, the one network path in, and the rules around it."""

from __future__ import annotations

import pytest

from support import by_key, network_policies, platform_spec
from plinth.catalog import CHARTS, EVENTBUS_JETSTREAM, mirror_image
from plinth.engine.offline import plan
from plinth.mirror import mirror_list
from plinth.modules.pipelines.events import PARAMETERS, SUBMIT_RULES
from plinth.spec.rules import check_rules

TEAMS = [{"name": "fraud"}, {"name": "search"}]
MIRROR = "mirror.corp.internal/mirror"


def model(name: str, team: str = "fraud", **extra) -> dict:
    return {"name": name, "team": team, "runtime": "bentoml", "image": f"ghcr.io/acme/{name}",
            "stable": {"version": "1.2.0"}, **extra}


RETRAINED = model("scorer", retraining={"workflowTemplate": "retrain-scorer"})


def spec_document(environment: str = "staging", models=(RETRAINED, model("ranker", "search")), **overrides) -> dict:
    return {"metadata": {"environment": environment}, "teams": TEAMS,
            "monitoring": {"enabled": True, "drift": {"enabled": True}},
            "pipelines": {"argo": {"enabled": True}, "events": {"enabled": True}},
            "serving": {"models": list(models)}, **overrides}


def planned(document: dict) -> dict:
    result = plan(platform_spec(document), "test")
    [release] = [r for r in result.resources if r.type.endswith("helm.sh/v3:Release") and r.name == "argo-events"]
    [monitoring] = [r for r in result.resources if r.type.endswith("helm.sh/v3:Release") and r.name == "monitoring"]
    return {**by_key(result), "values": release.inputs["values"],
            "alertmanager": monitoring.inputs["values"]["alertmanager"]["config"]}


@pytest.fixture(scope="module")
def staging():
    return planned(spec_document())


def test_off_by_default_and_nothing_planned():
    plain = platform_spec({"teams": TEAMS, "pipelines": {"argo": {"enabled": True}}})
    assert plain.pipelines.events.enabled is False and plain.pipelines.events.bus_replicas is None
    assert [r for r in plan(plain, "test").resources if "argo-events" in r.name] == []


def test_the_controller_is_confined_to_its_restricted_namespace(staging):
    labels = staging["Namespace", None, "argo-events"].inputs["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    values = staging["values"]
    # A Role in argo-events, not a ClusterRole: it manages the bus, the sources and the sensors there only.
    assert values["controller"]["rbac"] == {"enabled": True, "namespaced": True, "managedNamespace": "", "rules": []}
    assert values["webhook"] == {"enabled": False} and values["createAggregateRoles"] is False
    assert values["global"]["securityContext"] == {"runAsNonRoot": True, "runAsUser": 9731, "runAsGroup": 9731,
                                                   "seccompProfile": {"type": "RuntimeDefault"}}
    assert values["controller"]["containerSecurityContext"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True}
    # Staging: two controllers (leader election), a budget, metrics scraped.
    assert values["controller"]["replicas"] == 2 and values["controller"]["pdb"] == {"enabled": True,
                                                                                      "maxUnavailable": 1}
    assert values["controller"]["metrics"]["serviceMonitor"]["enabled"] is True


def test_the_bus_is_the_pinned_jetstream_and_restricted(staging):
    versions = staging["values"]["configs"]
    assert versions["nats"] == {"versions": []}  # the streaming bus's list names `latest`
    [jetstream] = versions["jetstream"]["versions"]
    assert jetstream == {"version": EVENTBUS_JETSTREAM, "natsImage": "docker.io/library/nats:2.10.10",
                         "metricsExporterImage": "docker.io/natsio/prometheus-nats-exporter:0.14.0",
                         "configReloaderImage": "docker.io/natsio/nats-server-config-reloader:0.14.0",
                         "startCommand": "/nats-server"}
    bus = staging["EventBus", "argo-events", "default"].inputs["spec"]["jetstream"]
    assert (bus["version"], bus["replicas"], bus["streamConfig"]) == (EVENTBUS_JETSTREAM, 3, "replicas: 3\n")
    assert bus["securityContext"]["runAsNonRoot"] is True and bus["securityContext"]["runAsUser"] == 1000
    for container in ("containerTemplate", "reloaderContainerTemplate", "metricsContainerTemplate"):
        assert bus[container]["securityContext"] == {"allowPrivilegeEscalation": False,
                                                     "capabilities": {"drop": ["ALL"]}}
    dev = planned(spec_document("dev"))["EventBus", "argo-events", "default"].inputs["spec"]["jetstream"]
    assert (dev["replicas"], dev["streamConfig"]) == (1, "replicas: 1\n")  # a stream on one server in dev


def test_the_bus_keeps_its_streams_on_volumes_in_staging_and_prod(staging):
    # Staging: a volume per server (the cluster's default StorageClass here: no Longhorn).
    bus = staging["EventBus", "argo-events", "default"].inputs["spec"]["jetstream"]
    assert bus["persistence"] == {"accessMode": "ReadWriteOnce", "volumeSize": "10Gi"}
    # Dev: emptyDir, unless asked.
    dev = planned(spec_document("dev"))["EventBus", "argo-events", "default"].inputs["spec"]["jetstream"]
    assert "persistence" not in dev
    asked = {"enabled": True, "busPersistence": {"enabled": True, "volumeSize": "2Gi"}}
    dev = planned(spec_document("dev", pipelines={"argo": {"enabled": True}, "events": asked},
                                storage={"longhorn": {"enabled": True}}))
    assert dev["EventBus", "argo-events", "default"].inputs["spec"]["jetstream"]["persistence"] == {
        "accessMode": "ReadWriteOnce", "volumeSize": "2Gi", "storageClassName": "longhorn"}
    # Off in staging on purpose, and a class of one's own.
    off = {"enabled": True, "busPersistence": {"enabled": False}}
    unkept = planned(spec_document(pipelines={"argo": {"enabled": True}, "events": off}))
    assert "persistence" not in unkept["EventBus", "argo-events", "default"].inputs["spec"]["jetstream"]
    own = {"enabled": True, "busPersistence": {"storageClass": "fast-ssd"}}
    staged = planned(spec_document(pipelines={"argo": {"enabled": True}, "events": own},
                                   storage={"longhorn": {"enabled": True}}))
    assert staged["EventBus", "argo-events", "default"].inputs["spec"]["jetstream"]["persistence"][
        "storageClassName"] == "fast-ssd"


def test_the_bus_sources_and_sensors_are_scraped_with_monitoring(staging):
    monitor = staging["PodMonitor", "argo-events", "argo-events-pods"].inputs["spec"]
    # The label and port the events controller gives the EventBus's, the EventSources' and the Sensors' pods.
    assert monitor == {"selector": {"matchExpressions": [{
        "key": "controller", "operator": "In",
        "values": ["eventbus-controller", "eventsource-controller", "sensor-controller"]}]},
        "podMetricsEndpoints": [{"port": "metrics", "interval": "30s"}]}
    unmonitored = plan(platform_spec(spec_document(models=(model("ranker", "search"),),
                                                   monitoring={"enabled": False})), "test")
    assert not [r for r in unmonitored.resources if r.inputs.get("kind") == "PodMonitor"]


def test_one_endpoint_and_one_sensor_per_retrained_model(staging):
    source = staging["EventSource", "argo-events", "retraining"].inputs["spec"]
    assert source["webhook"] == {"fraud-scorer": {"port": "12000", "endpoint": "/fraud/scorer", "method": "POST"}}
    assert source["service"] == {"ports": [{"port": 12000, "targetPort": 12000}]}
    assert [k for k in staging if k[0] == "Sensor"] == [("Sensor", "argo-events", "retrain-fraud-scorer")]
    sensor = staging["Sensor", "argo-events", "retrain-fraud-scorer"].inputs["spec"]
    assert sensor["template"]["serviceAccountName"] == "retraining-fraud"
    [dependency] = sensor["dependencies"]
    assert (dependency["eventSourceName"], dependency["eventName"]) == ("retraining", "fraud-scorer")
    assert [(f["path"], f["value"]) for f in dependency["filters"]["data"]] == [
        ("body.status", ["^firing$"]), ("body.groupLabels.alertname", ["^ModelDrift$"]),
        ("body.groupLabels.namespace", ["^fraud$"]), ("body.groupLabels.model", ["^scorer$"])]
    [trigger] = sensor["triggers"]
    k8s = trigger["template"]["k8s"]
    workflow = k8s["source"]["resource"]
    # The namespace and the template are the spec's: nothing in the request chooses them.
    assert workflow["metadata"]["namespace"] == "fraud" and k8s["operation"] == "create"
    assert workflow["spec"]["workflowTemplateRef"] == {"name": "retrain-scorer"}
    assert workflow["spec"]["serviceAccountName"] == "argo-workflow"
    names = [p["name"] for p in workflow["spec"]["arguments"]["parameters"]]
    assert names == ["model", "team", "version", "alertname", "alert"]
    assert [(p["src"]["dataKey"], p["dest"]) for p in k8s["parameters"]] == [
        (key, f"spec.arguments.parameters.{names.index(name)}.value") for name, key in PARAMETERS]


def test_the_sensors_account_may_create_workflows_in_its_teams_namespace_only(staging):
    assert staging["ServiceAccount", "argo-events", "retraining-fraud"]
    assert staging["Role", "fraud", "plinth:retraining-submit"].inputs["rules"] == SUBMIT_RULES == [
        {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create"]}]
    assert staging["RoleBinding", "fraud", "plinth:retraining-submit"].inputs["subjects"] == [
        {"kind": "ServiceAccount", "name": "retraining-fraud", "namespace": "argo-events"}]
    # search has no retrained model: no Role there, no account for it.
    assert [k for k in staging if k[0] in ("Role", "RoleBinding", "ServiceAccount") and "retraining" in k[2]
            and k[1] == "search"] == []
    # The admission policy on team RoleBindings admits that account in fraud's namespace, and in no other.
    variables = staging["ValidatingAdmissionPolicy", None, "plinth-team-rolebindings"].inputs["spec"]["variables"]
    assert {"name": "accounts", "expression": '{"fraud": ["argo-events/retraining-fraud"]}'} in variables


def test_alertmanager_alone_reaches_the_webhook_port(staging):
    policies = network_policies({k: v for k, v in staging.items() if isinstance(k, tuple)})["argo-events"]
    kind, webhook = policies["allow-alertmanager-to-webhook"]
    assert kind == "NetworkPolicy" and webhook == {
        "podSelector": {"matchLabels": {"eventsource-name": "retraining"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
                               "podSelector": {"matchLabels": {"app.kubernetes.io/name": "alertmanager"}}}],
                     "ports": [{"protocol": "TCP", "port": 12000}]}]}
    # The monitoring namespace otherwise reaches the metrics port only (Prometheus).
    assert policies["allow-from-monitoring"][1]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 7777}]
    assert set(policies) == {"default-deny-ingress", "allow-same-namespace", "allow-from-monitoring",
                             "allow-alertmanager-to-webhook"}


def test_drift_alerts_of_a_retrained_model_go_to_its_endpoint_only(staging):
    config = staging["alertmanager"]
    [first, *_] = config["route"]["routes"]
    assert first == {"receiver": "plinth:retrain/fraud/scorer",
                     "matchers": ['alert_kind="drift"', 'namespace="fraud"', 'model="scorer"'],
                     "group_by": ["alertname", "namespace", "model"], "repeat_interval": "24h", "continue": False}
    [receiver] = [r for r in config["receivers"] if r["name"] == "plinth:retrain/fraud/scorer"]
    assert receiver["webhook_configs"] == [
        {"url": "http://retraining-eventsource-svc.argo-events.svc:12000/fraud/scorer", "send_resolved": False}]


def test_the_drift_alert_carries_the_served_version():
    result = plan(platform_spec(spec_document()), "test")
    rules = [r for r in result.resources if r.inputs.get("kind") == "PrometheusRule" and "scorer" in r.name]
    [drift] = [rule for r in rules for group in r.inputs["spec"]["groups"] for rule in group["rules"]
               if rule.get("alert") == "ModelDrift"]
    assert drift["labels"]["version"] == "1.2.0" and drift["labels"]["team"] == "fraud"


def test_images_are_listed_and_mirrored():
    listed = [i for i in mirror_list(platform_spec(spec_document(airgap={
        "enabled": True, "mirror": {"registry": MIRROR, "charts": "oci://mirror.corp.internal/charts"}}))).images
        if i.service == "argo-events"]
    assert sorted(str(i.target) for i in listed) == sorted(mirror_image(r, MIRROR) for r in
                                                           CHARTS["argo-events"].images)
    values = planned(spec_document(airgap={"enabled": True, "mirror": {
        "registry": MIRROR, "charts": "oci://mirror.corp.internal/charts"}}))["values"]
    assert values["global"]["image"] == {"repository": f"{MIRROR}/argoproj/argo-events", "tag": "v1.9.10",
                                         "imagePullPolicy": "IfNotPresent"}
    assert values["configs"]["jetstream"]["versions"][0]["natsImage"] == f"{MIRROR}/library/nats:2.10.10"


def _violations(document: dict) -> list[tuple]:
    return [(v.loc, v.message, v.rule, v.fix) for v in check_rules(platform_spec(document))
            if v.rule.startswith(("retraining", "argo-events"))]


def test_retraining_needs_workflows_events_and_drift():
    document = spec_document(monitoring={"enabled": True}, pipelines={})
    assert _violations(document) == [
        (("serving", "models", 0, "retraining"), "model 'scorer' is retrained by an Argo workflow (pipelines.argo), "
         "which is off", "retraining-needs-pipelines", "enable pipelines.argo, or remove the model's retraining"),
        (("serving", "models", 0, "retraining"), "model 'scorer' is retrained when Argo Events (pipelines.events) "
         "receives its drift alert, which is off", "retraining-needs-events",
         "enable pipelines.events, or remove the model's retraining"),
        (("serving", "models", 0, "retraining"), "model 'scorer' is retrained on its drift alert, which only "
         "monitoring.drift raises", "retraining-needs-drift", "set monitoring.enabled and monitoring.drift.enabled: "
         "true, or remove the model's retraining"),
    ]
    assert _violations(spec_document()) == []


def test_events_need_workflows_and_a_bus_of_one_or_three():
    document = spec_document(pipelines={"events": {"enabled": True, "busReplicas": 2}}, models=())
    assert _violations(document) == [
        (("pipelines", "events", "enabled"), "Argo Events submits Argo workflows (pipelines.argo), which is off",
         "argo-events-needs-pipelines", "enable pipelines.argo, or turn pipelines.events off"),
        (("pipelines", "events", "busReplicas"), "a JetStream EventBus runs 1 server, or 3 and more (2 cannot "
         "elect a leader after losing one)", "argo-events-bus-replicas", "set 1 or 3"),
    ]


GENERATED = model("scorer", retraining={"image": "ghcr.io/acme/trainer:1.0.0", "command": ["python", "train.py"],
                                         "gpu": 1})


def test_an_image_generates_the_teams_one_step_template():
    objects = planned(spec_document(models=(GENERATED,), gpu={"operator": {"enabled": True}},
                                    registry={"mlflow": {"enabled": True}}))
    template = objects["WorkflowTemplate", "fraud", "scorer-retraining"].inputs["spec"]
    [step] = template["templates"]
    container = step["container"]
    assert (template["entrypoint"], template["serviceAccountName"]) == ("retrain", "argo-workflow")
    assert [p["name"] for p in template["arguments"]["parameters"]] == [name for name, _ in PARAMETERS]
    assert (container["image"], container["command"]) == ("ghcr.io/acme/trainer:1.0.0", ["python", "train.py"])
    assert {e["name"]: e["value"] for e in container["env"]} == {
        "PLINTH_MODEL": "{{workflow.parameters.model}}", "PLINTH_TEAM": "{{workflow.parameters.team}}",
        "PLINTH_VERSION": "{{workflow.parameters.version}}", "PLINTH_ALERTNAME": "{{workflow.parameters.alertname}}",
        "PLINTH_ALERT": "{{workflow.parameters.alert}}", "MLFLOW_TRACKING_URI": "http://mlflow.mlflow.svc",
        "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false", "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false"}
    both = {"cpu": "1", "memory": "2Gi", "nvidia.com/gpu": "1"}
    assert container["resources"] == {"requests": both, "limits": both}
    assert container["securityContext"]["runAsNonRoot"] is True and template["securityContext"]["runAsNonRoot"]
    assert step["tolerations"] == [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule",
                                    "operator": "Equal"}]
    sensor = objects["Sensor", "argo-events", "retrain-fraud-scorer"].inputs["spec"]
    workflow = sensor["triggers"][0]["template"]["k8s"]["source"]["resource"]
    assert workflow["spec"]["workflowTemplateRef"] == {"name": "scorer-retraining"}


def test_a_named_template_generates_nothing(staging):
    assert [k for k in staging if k[0] == "WorkflowTemplate"] == []


@pytest.mark.parametrize(("retraining", "message"), [
    ({}, "retraining names either workflowTemplate or image (a generated template)"),
    ({"workflowTemplate": "t", "image": "ghcr.io/acme/trainer:1.0.0"},
     "retraining names either workflowTemplate or image (a generated template)"),
    ({"workflowTemplate": "t", "gpu": 1}, "command, cpu, memory and gpu configure a generated template: with "
     "workflowTemplate, set them in that template"),
    ({"image": "ghcr.io/acme/trainer"}, "expected an image pinned by a tag other than latest, or a digest"),
    ({"image": "ghcr.io/acme/trainer:latest"}, "expected an image pinned by a tag other than latest, or a digest"),
])
def test_retraining_is_a_template_or_a_pinned_image(retraining, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as raised:
        platform_spec(spec_document(models=(model("scorer", retraining=retraining),)))
    assert message in str(raised.value)


def test_a_generated_templates_image_comes_from_the_mirror_and_its_gpus_need_the_operator():
    document = spec_document(models=(GENERATED,), airgap={"enabled": True, "mirror": {
        "registry": MIRROR, "charts": "oci://mirror.corp.internal/charts"}})
    found = [(v.loc, v.rule, v.message) for v in check_rules(platform_spec(document))
             if v.loc[:4] == ("serving", "models", 0, "retraining")]
    assert found == [
        (("serving", "models", 0, "retraining", "image"), "airgap-mirror-only",
         f"image 'ghcr.io/acme/trainer:1.0.0' is not in the mirror {MIRROR!r}"),
        (("serving", "models", 0, "retraining", "gpu"), "retraining-gpu-operator",
         "the retraining step requests GPUs but the GPU operator is disabled")]
