"""Production's high availability: the releases' HA values, and every workload replicated and under a
PodDisruptionBudget."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from plinth.governance.policies.core import HELM_RELEASE, MANDATORY, PDB, Policy, Subject, dig, selects


def _values(subjects, release: str) -> dict | None:
    for s in subjects:
        if s.type == HELM_RELEASE and s.props.get("name") == release:
            return s.props.get("values") or {}
    return None


def _prod_high_availability(subjects, platform):
    if platform.environment != "prod":
        return
    releases = {s.props.get("name"): s for s in subjects if s.type == HELM_RELEASE}
    vault = _values(subjects, "vault")
    if vault is not None and not (dig(vault, "server", "ha", "enabled") and
                                  (dig(vault, "server", "ha", "replicas") or 0) >= 3):
        yield releases["vault"], "Vault is not raft HA with at least 3 replicas"
    kps = _values(subjects, "kube-prometheus-stack")
    if kps is not None:
        if (dig(kps, "prometheus", "prometheusSpec", "replicas") or 1) < 2:
            yield releases["kube-prometheus-stack"], "Prometheus runs fewer than 2 replicas"
        if (dig(kps, "alertmanager", "alertmanagerSpec", "replicas") or 1) < 2:
            yield releases["kube-prometheus-stack"], "Alertmanager runs fewer than 2 replicas"
    longhorn = _values(subjects, "longhorn")
    if longhorn is not None and (dig(longhorn, "persistence", "defaultClassReplicaCount") or 0) < 3:
        yield releases["longhorn"], "Longhorn volumes have fewer than 3 replicas"
    yield from _prod_workloads_replicated(subjects)


# --- prod: every workload replicated and under a PodDisruptionBudget --------------------------------


@dataclass(frozen=True)
class HaExemption:
    """A prod workload that may run without 2 replicas and a PodDisruptionBudget, and why."""

    namespace: str
    """Its namespace (fnmatch pattern)."""
    name: str
    """Its name (fnmatch pattern)."""
    reason: str
    labels: tuple[tuple[str, str], ...] = ()
    """Pod labels it must also carry (e.g. a model's track)."""

    def covers(self, namespace: str | None, name: str, labels: dict) -> bool:
        return (fnmatch.fnmatchcase(namespace or "", self.namespace) and fnmatch.fnmatchcase(name, self.name)
                and all(labels.get(k) == v for k, v in self.labels))


HA_EXEMPTIONS: tuple[HaExemption, ...] = (
    HaExemption("*", "*", "a canary track takes a weighted share of a model's traffic beside its stable track, "
                "which serves the rest and carries the model's availability", (("plinth.dev/track", "canary"),)),
    HaExemption("*", "*", "a shadow track answers copies of requests nobody waits for",
                (("plinth.dev/track", "shadow"),)),
    HaExemption("gpu-operator", "gpu-operator", "the chart fixes the operator's Deployment at one replica; the "
                "GPU DaemonSets it reconciles keep running without it (an outage delays changes, not GPU pods)"),
    HaExemption("gpu-operator", "gpu-operator-node-feature-discovery-gc", "garbage-collects the NodeFeature "
                "objects of deleted nodes, without leader election; nothing waits on it"),
    HaExemption("monitoring", "kube-prometheus-stack-operator", "prometheus-operator has no leader election and "
                "the chart fixes one replica; Prometheus and Alertmanager keep running without it (changes wait)"),
    HaExemption("monitoring", "kube-prometheus-stack-kube-state-metrics", "kube-state-metrics has no leader "
                "election: a second replica exports every series twice (sums double); a restart re-lists the API "
                "(a gap, no loss)"),
    HaExemption("longhorn-system", "longhorn-driver-deployer", "deploys Longhorn's CSI driver objects at start, "
                "then idles; volumes do not depend on it"),
    HaExemption("longhorn-system", "longhorn-ui", "Longhorn's web UI, off the data path; the chart has no "
                "budget for it"),
    HaExemption("velero", "velero", "Velero's server has no leader election: a second replica would run every "
                "schedule and restore twice; an outage delays the next backup (its Schedule catches up), the bucket "
                "keeps the ones taken"),
    HaExemption("jupyterhub", "hub", "JupyterHub's hub is one process by design (its state in one SQLite database "
                "on one volume, the chart's Recreate strategy): an outage stops sign-ons and new servers, the running "
                "notebook servers keep serving"),
    HaExemption("jupyterhub", "proxy", "configurable-http-proxy keeps its routes in memory (the hub re-adds them "
                "when it restarts): two replicas would each hold half of them"),
    HaExemption("harbor", "harbor-redis", "the chart's internal Redis is one pod (job queue, sessions): an "
                "outage stops pushes and pulls until it is rescheduled; HA means an external replicated Redis"),
)
"""The one table of prod workloads allowed below 2 replicas with a PodDisruptionBudget (README: Governance)."""

OPERATOR_POD_LABELS: dict[str, Callable[[str], dict]] = {
    # The labels prometheus-operator puts on the pods of a Prometheus or Alertmanager (what budgets select).
    "monitoring.coreos.com/v1:Prometheus": lambda name: {
        "app.kubernetes.io/name": "prometheus", "app.kubernetes.io/instance": name, "prometheus": name,
        "app.kubernetes.io/managed-by": "prometheus-operator", "operator.prometheus.io/name": name,
        "operator.prometheus.io/shard": "0"},
    "monitoring.coreos.com/v1:Alertmanager": lambda name: {
        "app.kubernetes.io/name": "alertmanager", "app.kubernetes.io/instance": name, "alertmanager": name,
        "app.kubernetes.io/managed-by": "prometheus-operator"},
}
REDIS_API = "redis.redis.opstreelabs.in/v1beta2"


def _count(value: Any, default: int = 1) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _workloads(subjects) -> Iterator[tuple[Subject, int, dict | None, str | None]]:
    """(subject, replicas, pod labels to find a budget for, or None when the operator makes the budget,
    or the reason it cannot have one) for every stateful or serving workload: Deployments, StatefulSets, and
    the custom resources whose operators run pods (Prometheus, Alertmanager, CloudNativePG, OT Redis)."""
    for s in subjects:
        spec = s.props.get("spec") if isinstance(s.props.get("spec"), dict) else {}
        api_kind = s.type.split(":", 1)[-1]
        name = s.metadata.get("name") or s.name
        if s.kind in ("Deployment", "StatefulSet"):
            labels = dig(spec, "template", "metadata", "labels") or {}
            yield s, _count(spec.get("replicas")), labels, None
        elif api_kind in OPERATOR_POD_LABELS:
            labels = {**OPERATOR_POD_LABELS[api_kind](name), **(dig(spec, "podMetadata", "labels") or {})}
            yield s, _count(spec.get("replicas")), labels, None
        elif api_kind == "postgresql.cnpg.io/v1:Cluster":
            # CloudNativePG makes the Cluster's budgets itself unless told not to.
            yield s, _count(spec.get("instances")), None, \
                "enablePDB is false" if spec.get("enablePDB") is False else None
        elif api_kind == f"{REDIS_API}:Redis":
            yield s, 1, None, "a standalone Redis is one pod"
        elif api_kind in (f"{REDIS_API}:RedisReplication", f"{REDIS_API}:RedisSentinel"):
            pdb = dig(spec, "pdb", "enabled") is True
            yield s, _count(spec.get("clusterSize")), None, None if pdb else "pdb.enabled is not true"
        elif api_kind == f"{REDIS_API}:RedisCluster":
            pdb = all(dig(spec, role, "pdb", "enabled") is True for role in ("redisLeader", "redisFollower"))
            yield s, _count(spec.get("clusterSize")), None, \
                None if pdb else "redisLeader.pdb.enabled and redisFollower.pdb.enabled are not both true"


def _prod_workloads_replicated(subjects):
    """Every Deployment, StatefulSet and operator-run workload (of Plinth, or of a chart when its rendered
    objects are among the subjects) runs 2+ replicas with a PodDisruptionBudget in its namespace selecting
    its pods, unless HA_EXEMPTIONS names it."""
    budgets = [s for s in subjects if s.type == PDB]
    for s, replicas, labels, no_budget in _workloads(subjects):
        ns = s.metadata.get("namespace")
        if any(e.covers(ns, s.metadata.get("name") or s.name, labels or {}) for e in HA_EXEMPTIONS):
            continue
        if replicas < 2:
            yield s, f"runs {replicas} replica(s): prod needs 2 or more"
        if no_budget:
            yield s, f"no PodDisruptionBudget: {no_budget}"
        elif labels is not None and not any(
                b.metadata.get("namespace") == ns and selects((b.props.get("spec") or {}).get("selector"), labels)
                for b in budgets):
            yield s, f"no PodDisruptionBudget in namespace {ns} selects its pods"


PROD_HIGH_AVAILABILITY_POLICY = Policy(
    "prod-high-availability", "Production runs Vault raft HA (3+), Prometheus and Alertmanager with 2+ "
    "replicas and Longhorn with 3+ volume replicas; every Deployment, StatefulSet and operator-run "
    "workload (Prometheus, Alertmanager, CloudNativePG Cluster, OT Redis) runs 2+ replicas with a "
    "PodDisruptionBudget selecting its pods, unless HA_EXEMPTIONS names it with its reason.",
    "set secrets.vault.ha: true and keep the environment's replica defaults; give the workload 2+ "
    "replicas and a PodDisruptionBudget, or an HA_EXEMPTIONS entry saying why not", MANDATORY,
    _prod_high_availability)
