"""From a drift alert to the retraining workflow's parameters, with the real Alertmanager (tests/test_alert_routing.py
runs it) loaded with the configuration Plinth plans for eks-gpu with Argo Events and `retraining` on its model
`detector`: the drift alert reaches exactly the retraining webhook's endpoint (a local capture in place of the
EventSource's Service), other alerts do not. The captured request is then wrapped as Argo Events' webhook event
data (`{"header": <http.Header>, "body": <the request body>}`, pkg/eventsources/events WebhookEventData) and every
planned Sensor filter and parameter (`dataKey`, a gjson path) is evaluated against it."""

from __future__ import annotations

import json
import re
from functools import cache

import pytest
from test_alert_routing import (  # noqa: F401  (capture, alertmanager: fixtures)
    EKS_GPU,
    alertmanager,
    capture,
    local_config,
    post_alerts,
    routes_to,
    tool,
    wait_for,
)

from support import platform_spec
from plinth.engine.offline import plan
from plinth.modules.monitoring import retraining_receiver
from plinth.modules.pipelines.events import EVENT_SOURCE_SERVICE, NAMESPACE, WEBHOOK_PORT
from plinth.spec.load import load_spec

pytestmark = pytest.mark.toolchain

VISION = {"namespace": "vision", "team": "vision", "model": "detector"}
IN_CLUSTER = f"http://{EVENT_SOURCE_SERVICE}.{NAMESPACE}.svc:{WEBHOOK_PORT}"


@cache
def retrained_plan():
    """eks-gpu with Argo Workflows and Events, and `detector` retrained by the template retrain-detector."""
    document = load_spec(EKS_GPU).model_dump(by_alias=True, exclude_unset=True)
    document["pipelines"] = {"argo": {"enabled": True}, "events": {"enabled": True}}
    [detector] = [m for m in document["serving"]["models"] if m["name"] == "detector"]
    detector["retraining"] = {"workflowTemplate": "retrain-detector"}
    spec = platform_spec(document)
    return spec, plan(spec, "retraining")


def planned(result) -> tuple[dict, dict]:
    """(Alertmanager's configuration, the detector's Sensor spec) of the plan."""
    [release] = [r for r in result.resources if r.name == "monitoring" and isinstance(r.inputs.get("values"), dict)]
    [sensor] = [r for r in result.resources if r.inputs.get("kind") == "Sensor"]
    return release.inputs["values"]["alertmanager"]["config"], sensor.inputs["spec"]


def with_webhook_at(config: dict, url: str) -> dict:
    """The configuration with the EventSource's in-cluster address replaced by `url` (the path stays)."""
    text = json.dumps(config)
    assert IN_CLUSTER in text
    return json.loads(text.replace(IN_CLUSTER, url))


def gjson(document, path: str):
    """The subset of gjson the planned paths use: dotted keys and numeric array indices. A path that resolves
    to nothing fails (the Sensor would fail the trigger). Strings come back as they are, anything else as JSON."""
    node = document
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise AssertionError(f"{path!r} resolves to nothing in the event at {part!r}")
    return node if isinstance(node, str) else json.dumps(node, separators=(",", ":"))


def test_gjson_subset_reads_keys_and_indices_and_fails_on_a_missing_path():
    event = {"body": {"alerts": [{"labels": {"model": "m"}}], "n": 3}}
    assert gjson(event, "body.alerts.0.labels.model") == "m"
    assert gjson(event, "body.alerts.0") == '{"labels":{"model":"m"}}' and gjson(event, "body.n") == "3"
    for missing in ("body.alerts.1", "body.alerts.x", "body.groupLabels.model"):
        with pytest.raises(AssertionError, match="resolves to nothing"):
            gjson(event, missing)


def test_amtool_sends_the_retrained_models_drift_alert_to_its_webhook_only(tmp_path):
    tool("amtool")
    _, result = retrained_plan()
    config, _ = planned(result)
    local = local_config(with_webhook_at(config, "http://127.0.0.1:9"), tmp_path, "http://127.0.0.1:9")
    drift = {"alertname": "ModelDrift", "severity": "warning", "alert_kind": "drift"}
    assert routes_to(local, {**drift, **VISION}) == [retraining_receiver_name()]
    # Another model's drift alert keeps the spec's drift receiver; the detector's other alerts their routes.
    assert routes_to(local, {**drift, **VISION, "model": "other"}) == ["retrain"]
    assert routes_to(local, {"alertname": "ModelLatencyHigh", "severity": "warning", **VISION}) == ["null"]
    assert routes_to(local, {"alertname": "ModelErrorRateHigh", "severity": "critical", **VISION}) == ["oncall"]


def retraining_receiver_name() -> str:
    spec, _ = retrained_plan()
    [detector] = [m for m in spec.serving.models if m.name == "detector"]
    return retraining_receiver(detector)


def test_the_drift_alert_reaches_the_webhook_and_the_sensor_reads_its_parameters(tmp_path, capture, alertmanager):
    spec, result = retrained_plan()
    config, sensor = planned(result)
    [detector] = [m for m in spec.serving.models if m.name == "detector"]
    url = alertmanager(local_config(with_webhook_at(config, capture.url), tmp_path, capture.url))
    drift = {"alertname": "ModelDrift", "severity": "warning", "alert_kind": "drift", **VISION,
             "version": detector.stable.tag}
    post_alerts(url, [drift,
                      {"alertname": "ModelLatencyHigh", "severity": "warning", **VISION},
                      {"alertname": "ModelErrorRateHigh", "severity": "critical", **VISION},
                      {**drift, "model": "other"}])
    expected = {"vision/detector": {"ModelDrift"}, "oncall": {"ModelErrorRateHigh"}, "retrain": {"ModelDrift"}}
    assert wait_for(capture, expected) == expected
    # Exactly one notification at the endpoint, carrying the detector's alert and no other model's.
    [(headers, body)] = [(h, b) for path, h, b in capture.requests if path == "vision/detector"]
    assert [a["labels"]["model"] for a in body["alerts"]] == ["detector"]
    [other] = [b for path, _, b in capture.requests if path == "retrain"]
    assert [a["labels"]["model"] for a in other["alerts"]] == ["other"]

    # What the EventSource publishes for that request, and what the Sensor makes of it.
    event = {"header": headers, "body": body}
    assert event["header"]["Content-Type"] == ["application/json"]
    [dependency] = sensor["dependencies"]
    assert dependency["eventName"] == "vision-detector" and dependency["eventSourceName"] == "retraining"
    for data_filter in dependency["filters"]["data"]:
        assert data_filter["type"] == "string"
        assert any(re.search(pattern, gjson(event, data_filter["path"])) for pattern in data_filter["value"]), \
            data_filter
    [trigger] = sensor["triggers"]
    k8s = trigger["template"]["k8s"]
    workflow = json.loads(json.dumps(k8s["source"]["resource"]))
    for parameter in k8s["parameters"]:
        assert parameter["src"]["dependencyName"] == dependency["name"]
        *parents, last = parameter["dest"].split(".")
        node = workflow
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[last] = gjson(event, parameter["src"]["dataKey"])
    arguments = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    alert = json.loads(arguments.pop("alert"))
    assert arguments == {"model": "detector", "team": "vision", "version": detector.stable.tag,
                         "alertname": "ModelDrift"}
    assert alert["labels"] == drift and alert["status"] == "firing"
    assert workflow["metadata"]["namespace"] == "vision"
    assert workflow["spec"]["workflowTemplateRef"] == {"name": "retrain-detector"}


def test_a_resolved_drift_alert_is_not_sent_to_the_webhook():
    _, result = retrained_plan()
    config, _ = planned(result)
    [receiver] = [r for r in config["receivers"] if r["name"] == retraining_receiver_name()]
    assert [c["send_resolved"] for c in receiver["webhook_configs"]] == [False]
