"""kube-prometheus-stack's real chart (88.5.3) rendered with Plinth's values: every pod template of the
`monitoring` namespace passes Pod Security `restricted`; node-exporter, which needs the host, is the only
workload of the privileged namespace `node-exporter`."""

from __future__ import annotations

import pytest

from support import ROOT
from validation import restricted_problems
from plinth.engine.charts import render_charts
from plinth.engine.offline import plan
from plinth.spec.load import load_spec

WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")


def _pods(cert_manager: bool, charts_dir) -> dict[tuple[str, str, str], dict]:
    """(namespace, kind, name) -> pod template of the regulated blueprint's monitoring release (with the
    chart's certgen Jobs when cert-manager is off)."""
    overrides = None if cert_manager else {"certificates": {"certManager": {"enabled": False}},
                                           "network": {"cilium": {"hubble": False, "gatewayApi": False}},
                                           "secrets": {"vault": {"enabled": False}},
                                           "registry": {"harbor": {"enabled": False},
                                                        "pythonIndex": {"hostname": None},
                                                        "mlflow": {"hostname": None}},
                                           "serving": {"hostname": None, "models": []},
                                           # The Barman Cloud plugin takes its TLS from cert-manager.
                                           "backups": {"enabled": False, "reason": "no cert-manager here"}}
    spec = load_spec(ROOT / "blueprints" / "onprem-airgap-regulated.yaml", overrides)
    [monitoring] = [r for r in render_charts(plan(spec, "monitoring-chart"), "1.34", charts_dir)
                    if r.resource.name == "monitoring"]
    assert monitoring.note is None, monitoring.note
    pods = {(o["metadata"].get("namespace", "monitoring"), o["kind"], o["metadata"]["name"]):
            o["spec"]["template"]["spec"] for o in monitoring.objects if o["kind"] in WORKLOADS}
    # Prometheus and Alertmanager: the operator makes their StatefulSets from the chart's pod security
    # context (its own containers drop every capability, no privilege escalation, read-only roots).
    for o in monitoring.objects:
        if o["kind"] in ("Prometheus", "Alertmanager"):
            assert o["spec"]["securityContext"]["runAsNonRoot"] is True, o["kind"]
            assert o["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, o["kind"]
    return pods


@pytest.mark.parametrize("cert_manager", [True, False], ids=["cert-manager", "certgen-jobs"])
def test_only_node_exporter_needs_a_privileged_namespace(cert_manager, charts_dir, helm):
    pods = _pods(cert_manager, charts_dir)
    privileged = sorted(key for key in pods if key[0] != "monitoring")
    assert privileged == [("node-exporter", "DaemonSet", "kube-prometheus-stack-prometheus-node-exporter")]
    restricted = {key: restricted_problems(pod) for key, pod in pods.items() if key[0] == "monitoring"}
    assert len(restricted) == (3 if cert_manager else 5)  # Grafana, the operator, kube-state-metrics (+ 2 Jobs)
    assert restricted == {key: [] for key in restricted}
