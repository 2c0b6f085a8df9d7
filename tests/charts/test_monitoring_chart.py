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
                                           # without Vault, nothing would bring the teams' keys to the store
                                           "storage": {"objectStore": {"enabled": False}},
                                           "registry": {"harbor": {"enabled": False},
                                                        "pythonIndex": {"hostname": None},
                                                        "mlflow": {"enabled": False}},
                                           "serving": {"hostname": None, "models": []},
                                           "monitoring": {"grafana": {"hostname": None}},
                                           "identity": {"oidc": {"clients": {"grafana": None, "mlflow": None,
                                                                             "jupyterhub": None, "harbor": None}},
                                                        "uiProxy": {"enabled": False}},
                                           "notebooks": {"jupyterhub": {"enabled": False}},
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


def test_grafana_signs_on_with_the_secret_from_env_and_the_ca_mounted(charts_dir, helm):
    """The regulated blueprint's Grafana (sign-on through identity.oidc, private CA): the chart renders the
    generic OAuth section Plinth gives it (its assertNoLeakedSecrets passes: no client secret in grafana.ini), reads
    the secret from the Secret grafana-oidc by env, mounts the CA, and serves the Service the HTTPRoute names."""
    spec = load_spec(ROOT / "blueprints" / "onprem-airgap-regulated.yaml")
    [monitoring] = [r for r in render_charts(plan(spec, "monitoring-chart"), "1.34", charts_dir)
                    if r.resource.name == "monitoring"]
    assert monitoring.note is None, monitoring.note
    objects = {(o["kind"], o["metadata"]["name"]): o for o in monitoring.objects}
    ini = objects["ConfigMap", "kube-prometheus-stack-grafana"]["data"]["grafana.ini"]
    assert "[auth.generic_oauth]" in ini and "client_id = ml-platform-grafana" in ini
    assert "client_secret" not in ini and "role_attribute_strict = true" in ini
    assert "tls_client_ca = /etc/grafana/oidc-ca/ca.crt" in ini
    assert "root_url = https://grafana.models.corp.internal/" in ini
    pod = objects["Deployment", "kube-prometheus-stack-grafana"]["spec"]["template"]["spec"]
    [grafana] = [c for c in pod["containers"] if c["name"] == "grafana"]
    env = {e["name"]: e for e in grafana["env"]}
    assert env["GF_AUTH_GENERIC_OAUTH_CLIENT_SECRET"]["valueFrom"] == {
        "secretKeyRef": {"name": "grafana-oidc", "key": "client-secret"}}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["oidc-ca"]["configMap"]["name"] == "grafana-oidc-ca"
    mounts = [{k: v for k, v in m.items() if v is not None} for m in grafana["volumeMounts"]]  # subPath: null
    assert {"name": "oidc-ca", "mountPath": "/etc/grafana/oidc-ca", "readOnly": True} in mounts
    service = objects["Service", "kube-prometheus-stack-grafana"]["spec"]
    assert [p["port"] for p in service["ports"]] == [80]
