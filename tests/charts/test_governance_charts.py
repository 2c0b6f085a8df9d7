"""The policies over what the real charts render: each values bypass is caught on the chart's own object,
naming the values key behind it; the shipped stacks, charts included, are clean."""

from __future__ import annotations

import pytest

from support import ROOT, STACKS, platform_spec, stack_marks
from plinth.engine.charts import render_charts
from plinth.engine.offline import plan
from plinth.governance.check import check, subjects
from plinth.governance.policies import evaluate
from plinth.spec.load import load_stack_spec


def chart_findings(charts_dir, policy: str, **overrides) -> list[tuple[str, str, str | None]]:
    """(resource, message, values key) of `policy` on the chart objects only (what values checks cannot see)."""
    spec = platform_spec(overrides)
    result = plan(spec, "test")
    found = subjects(result, render_charts(result, spec.kubernetes.version, charts_dir))
    [(_, _, violations)] = [r for r in evaluate(found) if r[0].name == policy]
    return [(v.subject, v.message, v.values_key) for v in violations if "(chart " in v.subject]


CERTS = {"certManager": {"enabled": True}}


def test_a_renamed_service_type_renders_an_external_service(charts_dir, helm):
    found = chart_findings(charts_dir, "no-external-services", certificates=CERTS, secrets={"vault": {
        "enabled": True, "values": {"ui": {"enabled": True, "serviceType": "LoadBalancer"}}}})
    assert ("Service vault/vault-ui (chart vault)", "a Service of type LoadBalancer", "ui.serviceType") in found


def test_a_charts_own_ingress_and_route_are_flagged(charts_dir, helm):
    found = chart_findings(charts_dir, "no-external-services", storage={"longhorn": {
        "enabled": True, "values": {"ingress": {"enabled": True}}}})
    assert [(s, k) for s, _, k in found] == [("Ingress longhorn-system/longhorn-ingress (chart longhorn)",
                                              "ingress.enabled")]
    found = chart_findings(charts_dir, "no-external-services", monitoring={
        "enabled": True, "values": {"prometheus": {"route": {"main": {"enabled": True}}}}})
    assert [(m, k) for _, m, k in found] == [
        ("a HTTPRoute of the chart's own: only Plinth's routes attach to the platform Gateway",
         "prometheus.route.main.enabled")]


def test_prometheus_on_the_host_is_caught_on_its_resource(charts_dir, helm):
    found = chart_findings(charts_dir, "host-access-allowlist", monitoring={"enabled": True, "values": {
        "prometheus": {"prometheusSpec": {"hostNetwork": True,
                                          "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}}}})
    assert found == [("Prometheus monitoring/kube-prometheus-stack-prometheus (chart kube-prometheus-stack)",
                      "hostNetwork: true; hostPath volume root: not an allowlisted platform workload",
                      "prometheus.prometheusSpec.hostNetwork")]


def test_anonymous_grafana_is_caught_in_its_configuration(charts_dir, helm):
    found = chart_findings(charts_dir, "grafana-not-anonymous", monitoring={"enabled": True, "values": {
        "grafana": {"grafana.ini": {"auth.anonymous": {"enabled": True, "org_role": "Admin"}}}}})
    assert [m for _, m, _ in found] == ["grafana.ini enables [auth.anonymous]"]


def test_vault_dev_mode_is_caught_on_the_server(charts_dir, helm):
    found = chart_findings(charts_dir, "vault-not-dev", certificates=CERTS, secrets={"vault": {
        "enabled": True, "values": {"server": {"dev": {"enabled": True}}}}})
    assert found and all(m.endswith("runs Vault in dev mode") for _, m, _ in found)


@pytest.mark.parametrize("stack", [pytest.param(s, marks=stack_marks(s)) for s in STACKS])
def test_the_shipped_stacks_are_clean_with_every_chart_object(stack, charts_dir, helm):
    spec = load_stack_spec(ROOT, stack)
    result = plan(spec, "test")
    rendered = render_charts(result, spec.kubernetes.version, charts_dir)
    assert [(r.policy.name, v.subject, v.message) for r in check(result, None, rendered) for v in r.violations] == []
