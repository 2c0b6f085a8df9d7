"""Monitoring (kube-prometheus-stack) under Pulumi's mock runtime: HA by environment, Grafana's admin secret,
drift alert routing, node-exporter's namespace."""

from __future__ import annotations


from support import platform, values


def test_prometheus_and_alertmanager_are_ha_in_prod_only(dev, prod):
    for resources, prometheus, alertmanager in ((dev, 1, 1), (prod, 2, 3)):
        kps = values(resources, "monitoring")
        assert kps["prometheus"]["prometheusSpec"]["replicas"] == prometheus
        assert kps["alertmanager"]["alertmanagerSpec"]["replicas"] == alertmanager
        # Every ServiceMonitor, PodMonitor, rule and probe in the cluster, not only the chart's own.
        assert kps["prometheus"]["prometheusSpec"]["serviceMonitorSelectorNilUsesHelmValues"] is False
        assert kps["crds"] == {"enabled": False}


def test_grafana_takes_its_admin_password_from_a_stack_secret(dev):
    kps = values(dev, "monitoring")
    assert kps["grafana"]["admin"]["existingSecret"] == "grafana-admin"
    assert dev["monitoring-grafana-admin"].inputs["stringData"] == "(secret)"


def test_drift_alerts_route_to_the_retraining_receiver_only():
    resources = platform("dev", monitoring={"drift": {"enabled": True, "receiver": "retrain"}, "alertmanager": {
        "receivers": [{"name": "retrain", "type": "webhook", "severities": ["critical"]},
                      {"name": "oncall", "type": "webhook", "severities": ["critical", "warning"]}]}})
    routes = values(resources, "monitoring")["alertmanager"]["config"]["route"]["routes"]
    assert routes[0] == {"receiver": "retrain", "matchers": ['alert_kind="drift"'],
                         "group_by": ["alertname", "namespace", "model"], "repeat_interval": "24h",
                         "continue": False}
    assert [r["receiver"] for r in routes[1:]] == ["retrain", "oncall"]


def test_a_receiver_without_severities_gets_no_severity_route():
    """`severity=~""` would send it every alert that has no severity label."""
    resources = platform("dev", monitoring={"drift": {"enabled": True, "receiver": "retrain"}, "alertmanager": {
        "receivers": [{"name": "retrain", "type": "webhook", "severities": []},
                      {"name": "oncall", "type": "webhook", "severities": ["critical"]}]}})
    routes = values(resources, "monitoring")["alertmanager"]["config"]["route"]["routes"]
    assert [(r["receiver"], r["matchers"]) for r in routes] == [("retrain", ['alert_kind="drift"']),
                                                                 ("oncall", ['severity=~"critical"'])]


def test_only_node_exporter_runs_in_a_privileged_namespace_of_monitoring(dev):
    levels = {r.inputs["metadata"]["name"]: r.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
              for r in dev.values() if r.inputs.get("kind") == "Namespace"}
    # The rest of kube-prometheus-stack passes `restricted` (tests/charts: the real chart's pod templates).
    assert (levels["monitoring"], levels["node-exporter"]) == ("restricted", "privileged")
    assert values(dev, "monitoring")["prometheus-node-exporter"] == {"namespaceOverride": "node-exporter"}
    assert dev["monitoring-node-exporter-namespace"].urn in dev["monitoring"].dependencies
