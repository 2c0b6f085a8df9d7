"""`references-resolve` over the charts' rendered objects too (`plinth check --charts`): what the charts' pods,
ServiceMonitors and routes name must exist in the plan, in a chart, or be made by a named operator."""

from __future__ import annotations

import copy

from support import ROOT
from plinth.engine.charts import render_charts
from plinth.engine.offline import plan
from plinth.governance.check import check, subjects
from plinth.governance.policies import POLICIES, Platform
from plinth.spec.load import load_spec

POLICY = next(p for p in POLICIES if p.name == "references-resolve")


def regulated(charts_dir):
    spec = load_spec(ROOT / "blueprints" / "onprem-airgap-regulated.yaml")
    result = plan(spec, "regulated")
    return result, render_charts(result, spec.kubernetes.version, charts_dir)


def test_the_regulated_platform_and_its_charts_reference_only_what_exists(charts_dir, helm):
    result, rendered = regulated(charts_dir)
    assert [r.note for r in rendered if r.note] == []
    found = subjects(result, rendered)
    assert sum(s.rendered for s in found) > 400  # every chart's objects were seen
    [outcome] = [r for r in check(result, charts=rendered) if r.policy.name == "references-resolve"]
    assert outcome.violations == ()


def test_a_charts_dangling_reference_is_found(charts_dir, helm):
    result, rendered = regulated(charts_dir)
    found = copy.deepcopy(subjects(result, rendered))
    core = next(s for s in found if s.rendered and s.kind == "Deployment" and s.metadata["name"] == "harbor-core")
    core.props["spec"]["template"]["spec"]["volumes"].append({"name": "x", "secret": {"secretName": "gone"}})
    monitor = next(s for s in found if s.rendered and s.kind == "ServiceMonitor"
                   and s.metadata["name"] == "kube-prometheus-stack-kubelet")
    monitor.props["spec"]["endpoints"][0]["port"] = "kubelet-metrics"
    assert sorted((v.subject, v.message) for v in POLICY.run(found, Platform.of(found))) == [
        ("Deployment harbor/harbor-core (chart harbor)",
         "its pods use Secret gone, which the plan does not declare and no operator creates"),
        ("ServiceMonitor monitoring/kube-prometheus-stack-kubelet (chart kube-prometheus-stack)",
         "endpoint port 'kubelet-metrics' is not a port name of the Service(s) it selects"),
    ]
