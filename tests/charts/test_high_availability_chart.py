"""prod-high-availability over the real charts: the regulated prod stack's objects and every chart's rendered
objects, as `plinth check` sees them when it renders the charts. Every workload runs 2+ replicas with a
PodDisruptionBudget selecting it, or is in HA_EXEMPTIONS."""

from __future__ import annotations

from functools import cache

import pytest

from support import ROOT
from plinth.engine.charts import render_charts
from plinth.engine.offline import plan
from plinth.governance.policies import availability
from plinth.governance.policies import Subject, evaluate
from plinth.render import kubernetes_objects
from plinth.spec.load import load_stack_spec

STACK = "regulated-prod"
NAMESPACED = {"Deployment", "StatefulSet", "DaemonSet", "PodDisruptionBudget"}


def _subject(obj: dict) -> Subject:
    api = obj.get("apiVersion", "")
    return Subject(f"kubernetes:{api if '/' in api else 'core/' + api}:{obj['kind']}",
                   obj.get("metadata", {}).get("name", ""), obj)


@cache
def _subjects(charts_dir) -> tuple[Subject, ...]:
    spec = load_stack_spec(ROOT, STACK)
    result = plan(spec, STACK)
    found = [_subject(obj) for _, obj in kubernetes_objects(result)]
    for rendered in render_charts(result, spec.kubernetes.version, charts_dir):
        assert rendered.note is None or not rendered.resource.type.endswith(":Release"), rendered.note
        namespace = rendered.resource.inputs.get("namespace")
        for obj in rendered.objects:
            meta = obj.get("metadata") or {}
            # Helm puts the release's namespace on objects whose templates leave it out.
            if obj.get("kind") in NAMESPACED and not meta.get("namespace"):
                obj = {**obj, "metadata": {**meta, "namespace": namespace}}
            found.append(_subject(obj))
    return tuple(found)


def _violations(found) -> list[tuple[str, str]]:
    [(_, _, result)] = [r for r in evaluate(list(found)) if r[0].name == "prod-high-availability"]
    return [(v.subject, v.message) for v in result]


@pytest.fixture(scope="module")
def rendered(charts_dir, helm):
    return _subjects(charts_dir)


def test_every_prod_workload_of_plinth_and_the_charts_is_replicated_with_a_budget(rendered):
    assert _violations(rendered) == []
    covered = {s.display for s, replicas, *_ in availability._workloads(rendered) if replicas >= 2}
    # The single points of failure the charts used to leave: each replicated now (budgets checked above).
    for workload in ("Deployment feast/feast-feature-server", "Deployment cert-manager/cert-manager-webhook",
                     "Deployment cert-manager/cert-manager-cainjector", "Deployment cnpg-system/cloudnative-pg",
                     "Deployment vault-secrets-operator/vault-secrets-operator-controller-manager",
                     "Deployment monitoring/kube-prometheus-stack-grafana", "Deployment kube-system/hubble-relay",
                     "Deployment gpu-operator/gpu-operator-node-feature-discovery-master",
                     "Deployment redis-operator/redis-operator", "Deployment python-index/pypiserver",
                     "RedisReplication feast/feast-redis", "RedisSentinel feast/feast-redis",
                     "Cluster monitoring/grafana-postgres", "Cluster harbor/harbor-postgres",
                     "StatefulSet harbor/harbor-trivy", "StatefulSet object-store/seaweedfs-master",
                     "StatefulSet object-store/seaweedfs-volume", "StatefulSet object-store/seaweedfs-filer"):
        assert workload in covered, workload


def test_a_chart_workload_without_an_exemption_is_reported(rendered, monkeypatch):
    monkeypatch.setattr(availability, "HA_EXEMPTIONS", tuple(
        e for e in availability.HA_EXEMPTIONS if e.name != "harbor-redis"))
    assert _violations(rendered) == [
        ("StatefulSet harbor/harbor-redis", "runs 1 replica(s): prod needs 2 or more"),
        ("StatefulSet harbor/harbor-redis", "no PodDisruptionBudget in namespace harbor selects its pods"),
    ]
