"""Plinth's policies: pure functions over resources as the engine sees them, with two runners.

A policy sees `Subject`s (Pulumi type token, name, input properties in the engine's form). The
same functions run in `pulumi preview --policy-pack policies` (policies/__main__.py, over what
the real engine is about to deploy) and in `plinth check` (plinth/governance/check.py, over the
offline plan). Platform facts a policy needs (environment, air-gap mirror, levels) come from the
platform ledger ConfigMap the program declares (modules/governance), so both runners read them
from the resources themselves and never from a second description.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from plinth.vocabulary import GATEWAY_NAME, GATEWAY_NAMESPACE, SERVING_LISTENER, TEAM_LISTENER

MANDATORY, ADVISORY, DISABLED = "mandatory", "advisory", "disabled"
LEVELS = (MANDATORY, ADVISORY, DISABLED)

LEDGER_NAME = "plinth-ledger"
LEDGER_NAMESPACE = "plinth-system"
SECRET_SOURCE = "plinth.dev/secret-source"
"""Annotation on every Secret Plinth creates: the stack secret (or Kubernetes source) its payload comes from."""
OWNERSHIP_LABELS = ("app.kubernetes.io/managed-by", "plinth.dev/environment", "plinth.dev/cost-center")

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
WORKLOAD_KINDS = {"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}
OPERATOR_POD_KINDS = {"Prometheus", "Alertmanager", "ThanosRuler", "PrometheusAgent"}
"""Prometheus operator resources whose spec is (mostly) the pod spec of the StatefulSet the operator generates."""


@dataclass(frozen=True)
class Subject:
    """One resource: its Pulumi type token, name and inputs (camelCase, as the engine holds them)."""

    type: str
    name: str
    props: dict = field(default_factory=dict)
    upstream: bool = False
    """An object of an upstream manifest bundle (a ConfigGroup's child, e.g. the Gateway API CRDs), which
    the real engine registers and the offline plan does not see: not authored by Plinth, so not labelled."""
    release: str | None = None
    """For an object a chart renders (`plinth check` with charts): the Helm release that renders it."""

    @property
    def rendered(self) -> bool:
        """An object a chart renders (`plinth check` with the charts), not one Plinth authors."""
        return self.release is not None

    @property
    def kind(self) -> str | None:
        """The Kubernetes kind of an object Plinth authors (None for releases, components, providers)."""
        if not self.type.startswith("kubernetes:") or self.type.startswith(("kubernetes:helm.sh", "kubernetes:yaml")):
            return None
        return self.type.rsplit(":", 1)[-1]

    @property
    def metadata(self) -> dict:
        meta = self.props.get("metadata")
        return meta if isinstance(meta, dict) else {}

    @property
    def labels(self) -> dict:
        return self.metadata.get("labels") or {}

    @property
    def display(self) -> str:
        ns = self.metadata.get("namespace")
        chart = f" (chart {self.release})" if self.release else ""
        return f"{self.kind or self.type.rsplit(':', 1)[-1]} {ns + '/' if ns else ''}" \
               f"{self.metadata.get('name') or self.name}{chart}"


@dataclass(frozen=True)
class Violation:
    policy: str
    subject: str
    """The resource, as `Kind namespace/name`; empty for the stack as a whole."""
    message: str
    release: str | None = None
    """The Helm release whose `values` key produced it, when known."""
    values_key: str | None = None
    """That key, dotted, in the release's values (e.g. server.dev.enabled)."""
    at: str | None = None
    """Where the spec sets it (`spec.key at file:line`), filled in by `plinth check` from the spec's files."""


@dataclass(frozen=True)
class Platform:
    """The facts policies need about the platform, from its ledger."""

    environment: str = "dev"
    mirror: str | None = None
    perimeter: tuple[str, ...] = ()
    """In air-gap mode, the host[:port]s inside the perimeter (plinth.spec.rules.perimeter_hosts)."""

    @classmethod
    def of(cls, subjects: Iterable[Subject]) -> Platform:
        for s in subjects:
            if s.kind == "ConfigMap" and s.metadata.get("name") == LEDGER_NAME and not s.release:
                data = s.props.get("data") or {}
                facts = json.loads(data.get("platform.json", "{}"))
                return cls(facts.get("environment", "dev"), facts.get("mirror"), tuple(facts.get("perimeter") or ()))
        return cls()


@dataclass(frozen=True)
class Policy:
    name: str
    description: str
    remediation: str
    level: str
    check: Callable[[list[Subject], Platform], Iterator[tuple[Any, ...]]]  # (subject, message[, values key])

    def run(self, subjects: list[Subject], platform: Platform) -> list[Violation]:
        """A check yields (subject, message), or (subject, message, values key) naming the release value behind it."""
        out = []
        for subject, message, *key in self.check(subjects, platform):
            values_key = key[0] if key else None
            release = (subject.release or (subject.props.get("name") if subject.type == HELM_RELEASE else None)) \
                if subject and values_key else None
            out.append(Violation(self.name, subject.display if subject else "", message, release, values_key))
        return out


# --- helpers --------------------------------------------------------------------------------------


def pod_specs(subject: Subject) -> Iterator[dict]:
    spec = subject.props.get("spec") or {}
    if subject.kind == "Pod":
        yield spec
    elif subject.kind == "CronJob":
        yield (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
    elif subject.kind in WORKLOAD_KINDS:
        yield (spec.get("template") or {}).get("spec") or {}
    elif subject.kind in OPERATOR_POD_KINDS and subject.type.startswith("kubernetes:monitoring.coreos.com/"):
        yield spec  # the operator copies hostNetwork, volumes, securityContext and containers into its pods


def images(subject: Subject) -> Iterator[str]:
    """Every image a resource runs: its pod specs' containers; for a Helm release, image-like values."""
    for pod in pod_specs(subject):
        for container in (pod.get("initContainers") or []) + (pod.get("containers") or []):
            if isinstance(container.get("image"), str):
                yield container["image"]
    if subject.type == HELM_RELEASE:
        yield from _value_images(subject.props.get("values") or {})


def _value_images(values: Any) -> Iterator[str]:
    """Chart values that name an image: `image: REF`, or {repository, tag|digest} without a separate registry.
    (Charts that split `registry` from `repository` are checked by `_value_registries`.)"""
    if isinstance(values, dict):
        for key, value in values.items():
            if key in ("image", "agentImage") and isinstance(value, str) and "/" in value:
                yield value
            elif isinstance(value, dict) and value.get("repository") and isinstance(value.get("image"), str):
                # {repository, image, version}: the GPU operator's operand blocks
                ref = f"{value['repository']}/{value['image']}"
                if value.get("version"):
                    ref += ("@" if str(value["version"]).startswith("sha256:") else ":") + str(value["version"])
                yield ref
            elif isinstance(value, dict) and value.get("repository") == "":
                continue  # an image block switched off (e.g. the GPU driver when nodes ship one)
            elif isinstance(value, dict) and isinstance(value.get("repository"), str) and "registry" not in value:
                ref = value["repository"]
                if value.get("digest"):
                    ref += f"@{value['digest']}"
                elif value.get("tag"):
                    ref += f":{value['tag']}"
                yield ref
                yield from _value_images({k: v for k, v in value.items() if k != "repository"})
            else:
                yield from _value_images(value)
    elif isinstance(values, list):
        for value in values:
            yield from _value_images(value)


def _value_registries(values: Any) -> Iterator[str]:
    if isinstance(values, dict):
        for key, value in values.items():
            if key in ("registry", "imageRegistry") and isinstance(value, str) and value:
                yield value
            else:
                yield from _value_registries(value)
    elif isinstance(values, list):
        for value in values:
            yield from _value_registries(value)


def tag_of(ref: str) -> str | None:
    """The tag of an image reference (None when it has only a digest or nothing)."""
    name = ref.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


# --- the policies ---------------------------------------------------------------------------------


CHART_WILDCARD_ROLES: dict[tuple[str, str], str] = {
    ("ClusterRole", "longhorn-role"): "Longhorn's manager: every verb on its own CRDs, volumes, storage and the "
    "RBAC of the CSI components it deploys at run time",
    ("Role", "longhorn"): "Longhorn's manager: every verb on the workloads it runs in longhorn-system",
    ("ClusterRole", "kube-prometheus-stack-operator"): "the Prometheus operator: every verb on monitoring.coreos.com "
    "objects and the StatefulSets, ConfigMaps and Secrets it generates from them",
    ("ClusterRole", "redis-operator"): "the Redis operator: `get` on every non-resource URL (health endpoints)",
}
"""Upstream charts' roles that grant `*` (by kind and name), and why; any other chart role is held to the policy."""


def _no_wildcard_rbac(subjects, platform):
    for s in subjects:
        if s.kind not in ("Role", "ClusterRole"):
            continue
        if s.release and (s.kind, s.metadata.get("name")) in CHART_WILDCARD_ROLES:
            continue
        for rule in s.props.get("rules") or []:
            for key in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                if "*" in (rule.get(key) or []):
                    yield s, f"a rule grants `*` in {key}"


def _team_namespace_isolation(subjects, platform):
    teams = {s.metadata.get("name"): s for s in subjects
             if s.kind == "Namespace" and s.labels.get("plinth.dev/team")}
    deny = {(s.metadata.get("namespace")) for s in subjects
            if s.kind == "NetworkPolicy" and s.props.get("spec") == {
                "podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}
    for name, ns in sorted(teams.items()):
        if ns.labels.get("pod-security.kubernetes.io/enforce") != "restricted":
            yield ns, "Pod Security is not enforced at `restricted`"
        if name not in deny:
            yield ns, "no default-deny NetworkPolicy for both ingress and egress"


def _ownership_labels(subjects, platform):
    team_of = {s.metadata.get("name"): s.labels["plinth.dev/team"] for s in subjects
               if s.kind == "Namespace" and s.labels.get("plinth.dev/team")}
    for s in subjects:
        if s.kind is None or s.upstream:
            continue
        missing = [label for label in OWNERSHIP_LABELS if not s.labels.get(label)]
        if missing:
            yield s, f"missing label(s) {', '.join(missing)}"
        team = team_of.get(s.metadata.get("namespace"))
        if team and s.labels.get("plinth.dev/team") != team:
            yield s, f"in team {team}'s namespace without label plinth.dev/team={team}"


def _mirror_only(subjects, platform):
    if not platform.mirror:
        return
    host = platform.mirror.rstrip("/") + "/"
    for s in subjects:
        for ref in images(s):
            if not ref.startswith(host):
                yield s, f"image {ref} is not from the mirror {platform.mirror}"
        if s.type == HELM_RELEASE:
            for registry in _value_registries(s.props.get("values") or {}):
                if registry != platform.mirror and not registry.startswith(host):
                    yield s, f"image registry {registry} is not the mirror {platform.mirror}"


def _pinned_images(subjects, platform):
    for s in subjects:
        for ref in images(s):
            tag = tag_of(ref)
            if tag == "latest":
                yield s, f"image {ref} uses the tag `latest`"
            elif tag is None and "@" not in ref:
                yield s, f"image {ref} has neither a tag nor a digest"


def _values(subjects, release: str) -> dict | None:
    for s in subjects:
        if s.type == HELM_RELEASE and s.props.get("name") == release:
            return s.props.get("values") or {}
    return None


def _dig(values: Any, *path: str) -> Any:
    for key in path:
        values = values.get(key) if isinstance(values, dict) else None
    return values


def _prod_high_availability(subjects, platform):
    if platform.environment != "prod":
        return
    releases = {s.props.get("name"): s for s in subjects if s.type == HELM_RELEASE}
    vault = _values(subjects, "vault")
    if vault is not None and not (_dig(vault, "server", "ha", "enabled") and
                                  (_dig(vault, "server", "ha", "replicas") or 0) >= 3):
        yield releases["vault"], "Vault is not raft HA with at least 3 replicas"
    kps = _values(subjects, "kube-prometheus-stack")
    if kps is not None:
        if (_dig(kps, "prometheus", "prometheusSpec", "replicas") or 1) < 2:
            yield releases["kube-prometheus-stack"], "Prometheus runs fewer than 2 replicas"
        if (_dig(kps, "alertmanager", "alertmanagerSpec", "replicas") or 1) < 2:
            yield releases["kube-prometheus-stack"], "Alertmanager runs fewer than 2 replicas"
    longhorn = _values(subjects, "longhorn")
    if longhorn is not None and (_dig(longhorn, "persistence", "defaultClassReplicaCount") or 0) < 3:
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
            labels = _dig(spec, "template", "metadata", "labels") or {}
            yield s, _count(spec.get("replicas")), labels, None
        elif api_kind in OPERATOR_POD_LABELS:
            labels = {**OPERATOR_POD_LABELS[api_kind](name), **(_dig(spec, "podMetadata", "labels") or {})}
            yield s, _count(spec.get("replicas")), labels, None
        elif api_kind == "postgresql.cnpg.io/v1:Cluster":
            # CloudNativePG makes the Cluster's budgets itself unless told not to.
            yield s, _count(spec.get("instances")), None, \
                "enablePDB is false" if spec.get("enablePDB") is False else None
        elif api_kind == f"{REDIS_API}:Redis":
            yield s, 1, None, "a standalone Redis is one pod"
        elif api_kind in (f"{REDIS_API}:RedisReplication", f"{REDIS_API}:RedisSentinel"):
            pdb = _dig(spec, "pdb", "enabled") is True
            yield s, _count(spec.get("clusterSize")), None, None if pdb else "pdb.enabled is not true"
        elif api_kind == f"{REDIS_API}:RedisCluster":
            pdb = all(_dig(spec, role, "pdb", "enabled") is True for role in ("redisLeader", "redisFollower"))
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
                b.metadata.get("namespace") == ns and _selects((b.props.get("spec") or {}).get("selector"), labels)
                for b in budgets):
            yield s, f"no PodDisruptionBudget in namespace {ns} selects its pods"


def _secrets_from_stack_config(subjects, platform):
    for s in subjects:
        if s.kind != "Secret" or s.release:
            continue  # the policy governs the Secrets Plinth authors; a chart's own are the chart's
        if not (s.metadata.get("annotations") or {}).get(SECRET_SOURCE):
            yield s, f"a Secret without the {SECRET_SOURCE} annotation naming where its payload comes from"


# --- policies for the modules still to come (eks, gke, serving): vacuous until those resources exist ------

GPU = "nvidia.com/gpu"
"""The GPU operator's device-plugin resource, and the key of the taint Plinth puts on GPU nodes
(`nvidia.com/gpu=present:NoSchedule`)."""
GPU_TAINT = {"key": GPU, "value": "present", "effect": "NoSchedule"}
MODEL_LABEL = "plinth.dev/model"
"""The serving module's label on a model server's Deployment (and its pods): the model it serves."""
AWS_PUBLIC_ENDPOINT_REASON = "plinth.dev/public-endpoint-reason"
"""Tag on an EKS cluster whose API endpoint the spec deliberately makes public: why (the spec's override reason)."""
GCP_PUBLIC_ENDPOINT_REASON = "plinth-public-endpoint-reason"
"""The same reason as a GKE resource label (GCP label keys allow neither `.` nor `/`)."""

PDB = "kubernetes:policy/v1:PodDisruptionBudget"
PROMETHEUS_RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
S3_BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
S3_ENCRYPTION = ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                 "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2")
S3_PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
S3_BLOCK_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
GKE_CLUSTER = "gcp:container/cluster:Cluster"
GCS_BUCKET = "gcp:storage/bucket:Bucket"
IAM_ROLE = "aws:iam/role:Role"
GCP_SA_BINDINGS = ("gcp:serviceaccount/iAMBinding:IAMBinding", "gcp:serviceaccount/iAMMember:IAMMember")
WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"


def _is_gpu(resource: str) -> bool:
    return resource == GPU or resource.startswith("nvidia.com/mig-")


def _tolerates_gpu_taint(toleration: dict) -> bool:
    """Kubernetes' toleration matching against the GPU taint: an empty effect matches every effect, an empty
    key with `Exists` every key, `Exists` any value, `Equal` (the default) only `present`."""
    if toleration.get("effect") not in (None, "", GPU_TAINT["effect"]):
        return False
    exists = toleration.get("operator") == "Exists"
    if not toleration.get("key"):
        return exists
    return toleration["key"] == GPU_TAINT["key"] and (exists or toleration.get("value") == GPU_TAINT["value"])


def _gpu_workloads(subjects, platform):
    """GPUs as limits (the device plugin allocates by limit) with the GPU toleration; no toleration without a GPU,
    except on DaemonSets (node agents such as the device plugin run on GPU nodes by design)."""
    taint = f"{GPU}={GPU_TAINT['value']}:{GPU_TAINT['effect']}"
    for s in subjects:
        for pod in pod_specs(s):
            wants = False
            for container in (pod.get("initContainers") or []) + (pod.get("containers") or []):
                resources = container.get("resources") or {}
                requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
                gpus = sorted({r for r in (*requests, *limits) if _is_gpu(r)})
                wants = wants or bool(gpus)
                for resource in gpus:
                    if resource not in limits:
                        yield s, f"container {container.get('name')} requests {resource} without a limit"
            tolerates = any(_tolerates_gpu_taint(t) for t in pod.get("tolerations") or [] if isinstance(t, dict))
            if wants and not tolerates:
                yield s, f"asks for a GPU without tolerating the taint {taint}"
            elif tolerates and not wants and s.kind != "DaemonSet":
                yield s, f"tolerates the taint {taint} without asking for a GPU: it would squat GPU nodes"


def _selects(selector: Any, labels: dict) -> bool:
    """A policy/v1 label selector against pod labels (null selects nothing, {} everything)."""
    if not isinstance(selector, dict):
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if not ((op == "In" and labels.get(key) in values) or (op == "NotIn" and labels.get(key) not in values)
                or (op == "Exists" and key in labels) or (op == "DoesNotExist" and key not in labels)):
            return False
    return True


def _names_model(rule: dict, model: str) -> bool:
    if model in {str(v) for v in (rule.get("labels") or {}).values()}:
        return True
    return re.search(rf"(?<![\w.-]){re.escape(model)}(?![\w.-])", str(rule.get("expr") or "")) is not None


def _served_model_reliability(subjects, platform):
    budgets = [s for s in subjects if s.type == PDB]
    rules = [s for s in subjects if s.type == PROMETHEUS_RULE]
    for s in subjects:
        if s.kind != "Deployment":
            continue
        template = (s.props.get("spec") or {}).get("template") or {}
        pod_labels = (template.get("metadata") or {}).get("labels") or {}
        model = s.labels.get(MODEL_LABEL) or pod_labels.get(MODEL_LABEL)
        if not model:
            continue
        ns = s.metadata.get("namespace")
        for container in (template.get("spec") or {}).get("containers") or []:
            missing = [probe for probe in ("livenessProbe", "readinessProbe") if not container.get(probe)]
            if missing:
                yield s, f"container {container.get('name')} has no {' or '.join(missing)}"
        if not any(b.metadata.get("namespace") == ns and _selects((b.props.get("spec") or {}).get("selector"),
                                                                   pod_labels) for b in budgets):
            yield s, f"no PodDisruptionBudget in namespace {ns} selects its pods"
        if not any(r.metadata.get("namespace") == ns and _names_model(rule, model)
                   for r in rules for group in (r.props.get("spec") or {}).get("groups") or []
                   for rule in group.get("rules") or []):
            yield s, f"no PrometheusRule in namespace {ns} has a rule naming the model {model}"


HTTP_ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
GATEWAY = "kubernetes:gateway.networking.k8s.io/v1:Gateway"


def host_covers(route_host: str, host: str) -> bool:
    """Gateway API host name matching: a wildcard route host (*.example.com) covers every name under it."""
    return route_host == host or (route_host.startswith("*.") and host.endswith(route_host[1:]))


def _path_matches(rule: dict) -> Iterator[dict]:
    """A rule's path matches, with Gateway API's defaults (no match, or a match without a path: prefix /)."""
    for match in rule.get("matches") or [{}]:
        yield match.get("path") or {"type": "PathPrefix", "value": "/"}


def team_route_problems(team: str, route: dict, reserved: set[str], serving: str | None,
                        domain: str | None) -> Iterator[str]:
    """Why a team's HTTPRoute could take another team's or the platform's traffic: a host name of the platform,
    a path outside /<team>/ on the serving host, or a host name that is not the team's own <team>.<domain>."""
    hosts = route.get("hostnames") or []
    if not hosts:
        yield "names no host name, so it would answer for every host name of the listeners it attaches to"
    own = f"{team}.{domain}" if domain else None
    for host in hosts:
        taken = sorted(p for p in reserved if host_covers(host, p))
        if taken:
            yield f"host name {host} is the platform's ({', '.join(taken)}), reserved to platform routes"
        elif serving and host_covers(host, serving):
            for rule in route.get("rules") or [{}]:
                for path in _path_matches(rule):
                    value, kind = str(path.get("value", "/")), path.get("type", "PathPrefix")
                    if kind not in ("PathPrefix", "Exact") or not (value == f"/{team}" or
                                                                    value.startswith(f"/{team}/")):
                        yield f"path {value} ({kind}) on the serving host {serving} is outside /{team}/"
        elif host != own:
            yield f"host name {host} is not the team's own ({own or 'none: the Gateway has no wildcard listener'})"


def gateway_hosts(subjects) -> tuple[set[str], str | None, str | None]:
    """(the platform's reserved host names, the serving host, the team hosts' domain) from the platform
    Gateway's listeners and the routes of platform namespaces."""
    teams = {s.metadata.get("name") for s in subjects if s.kind == "Namespace" and s.labels.get("plinth.dev/team")}
    reserved = {h for s in subjects if s.type == HTTP_ROUTE and s.metadata.get("namespace") not in teams
                for h in (s.props.get("spec") or {}).get("hostnames") or []}
    serving = domain = None
    for s in subjects:
        if s.type != GATEWAY or s.metadata.get("name") != GATEWAY_NAME:
            continue
        for listener in (s.props.get("spec") or {}).get("listeners") or []:
            host = listener.get("hostname")
            if listener.get("name") == SERVING_LISTENER:
                serving = host
            elif listener.get("name") == TEAM_LISTENER:
                domain = host[2:] if host and host.startswith("*.") else None
            elif host:
                reserved.add(host)
    return reserved, serving, domain


def _team_routes_own_paths(subjects, platform):
    teams = {s.metadata.get("name") for s in subjects if s.kind == "Namespace" and s.labels.get("plinth.dev/team")}
    reserved, serving, domain = gateway_hosts(subjects)
    for s in subjects:
        team = s.metadata.get("namespace")
        if s.type == HTTP_ROUTE and team in teams:
            for problem in team_route_problems(team, s.props.get("spec") or {}, reserved, serving, domain):
                yield s, problem


def _cloud_private_and_encrypted(subjects, platform):
    """S3 encryption and public access blocks are their own resources, matched to a bucket by their `bucket`
    input against the bucket's `bucket` input: in a preview the bucket's id is unknown, so Plinth names its
    buckets explicitly (`bucket=`) and passes that name (`bucket=b.bucket`) to the configuration resources."""
    encrypted = {c.props.get("bucket") for c in subjects if c.type in S3_ENCRYPTION
                 and any(_dig(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
                         for rule in c.props.get("rules") or [])}
    blocks: dict[Any, list[dict]] = {}
    for b in subjects:
        if b.type == S3_PUBLIC_ACCESS_BLOCK:
            blocks.setdefault(b.props.get("bucket"), []).append(b.props)
    for s in subjects:
        if s.type == EKS_CLUSTER:
            # EKS's default is a public endpoint: only an explicit false makes it private.
            if _dig(s.props, "vpcConfig", "endpointPublicAccess") is not False \
                    and not (s.props.get("tags") or {}).get(AWS_PUBLIC_ENDPOINT_REASON):
                yield s, (f"the API server endpoint is public (vpcConfig.endpointPublicAccess) without a "
                          f"{AWS_PUBLIC_ENDPOINT_REASON} tag")
        elif s.type in S3_BUCKETS:
            name = s.props.get("bucket")
            if not isinstance(name, str) or not name:
                yield s, "the bucket is not named explicitly (`bucket`), so its encryption and public access " \
                         "block cannot be matched to it"
                continue
            if name not in encrypted:
                yield s, f"no server-side encryption configuration for bucket {name}"
            found = blocks.get(name) or []
            if not found:
                yield s, f"no public access block for bucket {name}"
            elif not any(all(b.get(flag) is True for flag in S3_BLOCK_FLAGS) for b in found):
                off = [flag for flag in S3_BLOCK_FLAGS if found[0].get(flag) is not True]
                yield s, f"the public access block for bucket {name} leaves {', '.join(off)} off"
        elif s.type == GKE_CLUSTER:
            private = s.props.get("privateClusterConfig") or {}
            if private.get("enablePrivateNodes") is not True:
                yield s, "nodes are not private (privateClusterConfig.enablePrivateNodes)"
            if private.get("enablePrivateEndpoint") is not True \
                    and not (s.props.get("resourceLabels") or {}).get(GCP_PUBLIC_ENDPOINT_REASON):
                yield s, (f"the control-plane endpoint is public (privateClusterConfig.enablePrivateEndpoint) "
                          f"without a {GCP_PUBLIC_ENDPOINT_REASON} resource label")
        elif s.type == GCS_BUCKET:
            if s.props.get("uniformBucketLevelAccess") is not True:
                yield s, "uniform bucket-level access is off (uniformBucketLevelAccess)"
            if s.props.get("publicAccessPrevention") != "enforced":
                yield s, "public access prevention is not enforced (publicAccessPrevention)"


KSA_SUBJECT = re.compile(r"system:serviceaccount:[^:*\s]+:[^:*\s]+")
GKE_KSA_MEMBER = re.compile(r"serviceAccount:[^*\s\[\]]+\.svc\.id\.goog\[[^*\s/\[\]]+/[^*\s/\[\]]+\]")


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else [value] if value is not None else []


def _web_identity_trusts(policy: dict) -> Iterator[tuple[str, dict]]:
    """(OIDC provider host, the statement's Condition) for each Allow statement trusting a Federated principal
    with sts:AssumeRoleWithWebIdentity (or an action pattern covering it)."""
    for statement in _listed(policy.get("Statement")):
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        if not any(fnmatch.fnmatchcase("sts:assumerolewithwebidentity", str(a).lower())
                   for a in _listed(statement.get("Action"))):
            continue
        principal = statement.get("Principal")
        for provider in _listed(principal.get("Federated") if isinstance(principal, dict) else None):
            host = str(provider).split(":oidc-provider/", 1)[-1]
            yield host, condition if isinstance(condition := statement.get("Condition"), dict) else {}


def _condition(condition: dict, operator: str, key: str) -> Any:
    """The value a condition operator gives a key (IAM condition keys are case-insensitive)."""
    clauses = condition.get(operator)
    return next((v for k, v in clauses.items() if k.lower() == key.lower()), None) \
        if isinstance(clauses, dict) else None


def _workload_identity_scoped(subjects, platform):
    for s in subjects:
        if s.type == IAM_ROLE:
            document = s.props.get("assumeRolePolicy")
            if isinstance(document, str):
                try:
                    document = json.loads(document)
                except json.JSONDecodeError:
                    continue  # unknown during preview: judged when the engine knows it
            if not isinstance(document, dict):
                continue
            for host, condition in _web_identity_trusts(document):
                key = f"{host}:sub"
                subs = _listed(_condition(condition, "StringEquals", key))
                if not subs:
                    like = any(_condition(condition, op, key) is not None for op in condition if op.endswith("Like"))
                    yield s, (f"trusts {host} with StringLike on {key}: use StringEquals naming one service account"
                              if like else f"trusts {host} without a StringEquals condition on {key}")
                elif len(subs) != 1 or not KSA_SUBJECT.fullmatch(str(subs[0])):
                    yield s, (f"{key} must be exactly one system:serviceaccount:<namespace>:<name> without `*`, "
                              f"not {', '.join(map(str, subs))}")
        elif s.type in GCP_SA_BINDINGS and s.props.get("role") == WORKLOAD_IDENTITY_USER:
            members = _listed(s.props.get("members", s.props.get("member")))
            if len(members) != 1 or not GKE_KSA_MEMBER.fullmatch(str(members[0])):
                yield s, (f"{WORKLOAD_IDENTITY_USER} must go to exactly one "
                          f"serviceAccount:<project>.svc.id.goog[<namespace>/<name>] without `*`, "
                          f"not {', '.join(map(str, members)) or 'none'}")


# --- every object the charts render: exposure, Pod Security, host access, unsafe chart modes ------------
# These see Plinth's objects, the Helm releases' values and (with `plinth check --charts`) every object
# the charts render from those values. A finding on a chart object names the values key behind it where
# one can be told (`_values_key`), so the fix is in the spec, not the chart.

ROUTE_KINDS = frozenset({"HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"})
EXPOSED_TYPES = frozenset({"loadbalancer", "nodeport"})
PLATFORM_SECRET_NAMESPACES = frozenset({"kube-system", "cilium-secrets", GATEWAY_NAMESPACE})
"""Where the Gateway's TLS keys may be copied: Cilium's own secrets namespace, kube-system, the Gateway's."""

HOST_ACCESS_ALLOWLIST: dict[tuple[str, str, str], str] = {
    ("kube-system", "DaemonSet", "cilium"): "the CNI agent: programs eBPF on the node's network stack and mounts "
    "the BPF filesystem, cgroups and CNI configuration",
    ("kube-system", "DaemonSet", "cilium-envoy"): "Cilium's node proxy (Gateway, L7 policy): the node's network and "
    "the agent's sockets",
    ("kube-system", "DaemonSet", "cilium-node-init"): "on GKE, prepares each node for Cilium (the BPF filesystem, "
    "the node's network configuration) from the host's network and PID namespaces",
    ("kube-system", "Deployment", "cilium-operator"): "runs on the host network so it works before the CNI it "
    "manages is up",
    ("longhorn-system", "DaemonSet", "longhorn-manager"): "manages the node's disks and block devices (iSCSI, /dev, "
    "/proc) for replicated volumes",
    ("longhorn-system", "Job", "longhorn-pre-upgrade"): "Longhorn's upgrade check reads the node's /proc mounts",
    ("gpu-operator", "DaemonSet", "gpu-operator-node-feature-discovery-worker"): "labels GPU nodes from the "
    "node's PCI, kernel and OS facts (/sys, /boot, /usr/lib, os-release)",
    ("node-exporter", "DaemonSet", "kube-prometheus-stack-prometheus-node-exporter"): "node metrics: the host's "
    "network and PID namespaces and its /proc, /sys and root filesystem, read-only",
}
"""The only workloads that may run privileged or with host namespaces or hostPath: (namespace, kind, name) and
why. The GPU operator's own operands (driver, toolkit, device plugin) are created by the operator at run time,
not rendered, and are judged by admission (the admission module's allowlist is this one)."""


HOST_ACCESS_RELEASES = frozenset({"cilium", "longhorn", "gpu-operator"})
"""Releases whose values may ask for host access (their allowlisted workloads need it); the rendered objects
are still held to HOST_ACCESS_ALLOWLIST."""


def _release_values(subjects) -> dict[str, dict]:
    return {s.props.get("name"): s.props.get("values") or {} for s in subjects if s.type == HELM_RELEASE}


def _leaves(values: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(dotted path, key, value) of every scalar in a values tree."""
    if isinstance(values, dict):
        for key, value in values.items():
            here = f"{path}.{key}" if path else str(key)
            if isinstance(value, (dict, list)):
                yield from _leaves(value, here)
            else:
                yield here, str(key), value
    elif isinstance(values, list):
        for index, value in enumerate(values):
            yield from _leaves(value, f"{path}[{index}]")


def _values_key(values: dict | None, match: Callable[[str, str, Any], bool]) -> str | None:
    """The first values key (dotted) whose (path, key, value) matches."""
    return next((path for path, key, value in _leaves(values or {}) if match(path, key, value)), None)


def _enabled_under(word: str) -> Callable[[str, str, Any], bool]:
    """`<...word...>.enabled: true`, e.g. ingress.enabled, ui.ingress.enabled, prometheus.route.main.enabled."""
    return lambda path, key, value: key == "enabled" and value is True and \
        any(word in part.lower() for part in path.split(".")[:-1])


def _no_external_services(subjects, platform):
    values = _release_values(subjects)
    for s in subjects:
        spec = s.props.get("spec") or {}
        if s.kind == "Service" and str(spec.get("type", "")).lower() in EXPOSED_TYPES:
            yield s, f"a Service of type {spec['type']}", \
                _values_key(values.get(s.release),
                            lambda p, k, v, exposed=spec["type"]:  # type: ignore[misc]
                                isinstance(v, str) and v.lower() == exposed.lower())
        elif s.kind == "Ingress":
            yield s, "an Ingress: traffic enters through the platform Gateway only", \
                _values_key(values.get(s.release), _enabled_under("ingress"))
        elif s.kind == "Gateway" and s.release:
            yield s, "a Gateway of the chart's own: traffic enters through the platform Gateway only", \
                _values_key(values.get(s.release), _enabled_under("gateway"))
        elif s.kind in ROUTE_KINDS:
            if s.release:
                yield s, f"a {s.kind} of the chart's own: only Plinth's routes attach to the platform Gateway", \
                    _values_key(values.get(s.release), _enabled_under("route"))
                continue
            ns = s.metadata.get("namespace")
            for ref in spec.get("parentRefs") or []:
                if ref.get("kind", "Gateway") != "Gateway" or ref.get("namespace", ns) != GATEWAY_NAMESPACE:
                    yield s, f"attaches to {ref.get('kind', 'Gateway')} {ref.get('namespace', ns)}/" \
                             f"{ref.get('name')}, not the platform Gateway in {GATEWAY_NAMESPACE}"
        if s.type == HELM_RELEASE:
            release_values = s.props.get("values") or {}
            for path, _, value in _leaves(release_values):
                if isinstance(value, str) and value.lower() in EXPOSED_TYPES:
                    yield s, f"values {path} = {value}: the chart would expose a Service outside the cluster", path
            for word, what in (("ingress", "an Ingress"), ("route", "a route of its own")):
                for path, key, value in _leaves(release_values):
                    if _enabled_under(word)(path, key, value):
                        yield s, f"values {path} = true: the chart would create {what}; traffic enters through " \
                                 "the platform Gateway only", path


HOST_ACCESS_FIELDS = ("hostNetwork", "hostPID", "hostIPC")


def _pod_metadata(subject: Subject) -> dict:
    spec = subject.props.get("spec") or {}
    if subject.kind == "Pod":
        return subject.metadata
    template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") if subject.kind == "CronJob" \
        else spec.get("template")
    return (template or {}).get("metadata") or {}


def _host_values_key(values: dict | None, found: list[str]) -> str | None:
    """The values key most likely behind host access or a Pod Security finding."""
    def match(path, key, value):
        if key in HOST_ACCESS_FIELDS or key in ("privileged", "allowPrivilegeEscalation"):
            return value is True and any(key in f for f in found)
        if "hostPath" in path or key == "hostPath":
            return any("hostPath" in f for f in found)
        return key == "runAsUser" and value == 0 and any("runAsUser" in f or "runAsNonRoot" in f for f in found)
    return _values_key(values, match)


def _pod_security(subjects, platform):
    from plinth.governance import podsecurity

    levels = {s.metadata.get("name"): (s.labels.get("pod-security.kubernetes.io/enforce"), podsecurity.policy_version(
        s.labels.get("pod-security.kubernetes.io/enforce-version"))) for s in subjects if s.kind == "Namespace"}
    values = _release_values(subjects)
    for s in subjects:
        ns = s.metadata.get("namespace")
        level, version = levels.get(ns, (None, None))
        if level not in ("baseline", "restricted"):
            continue
        for pod in pod_specs(s):
            found = podsecurity.violations(level, pod, _pod_metadata(s).get("annotations") or {},
                                           version)  # type: ignore[arg-type]  # a level comes with its version
            if found:
                yield s, f"breaks Pod Security {level} (namespace {ns}): {'; '.join(found)}", \
                    _host_values_key(values.get(s.release), found)


def host_access(pod: dict) -> list[str]:
    """Privileged containers, host namespaces and hostPath volumes of a pod spec."""
    from plinth.governance.podsecurity import containers

    found = [f"{field}: true" for field in HOST_ACCESS_FIELDS if pod.get(field) is True]
    found += [f"hostPath volume {v.get('name')}" for v in pod.get("volumes") or [] if isinstance(v, dict)
              and "hostPath" in v]
    found += [f"container {c.get('name')}: privileged" for c in containers(pod)
              if ((c.get("securityContext") or {}).get("privileged")) is True]
    return found


def _host_access_allowlist(subjects, platform):
    values = _release_values(subjects)
    for s in subjects:
        key = (s.metadata.get("namespace"), s.kind, s.metadata.get("name"))
        for pod in pod_specs(s):
            found = host_access(pod)
            if found and key not in HOST_ACCESS_ALLOWLIST:
                yield s, f"{'; '.join(found)}: not an allowlisted platform workload", \
                    _host_values_key(values.get(s.release), found)
        if s.type == HELM_RELEASE:
            if s.props.get("name") in HOST_ACCESS_RELEASES:
                continue
            paths = set()
            for path, key_name, value in _leaves(s.props.get("values") or {}):
                if key_name in (*HOST_ACCESS_FIELDS, "privileged") and value is True:
                    yield s, f"values {path} = true: host access for a chart outside the allowlist", path
                elif ".hostPath." in f".{path}." and path.split(".hostPath.")[0] not in paths:
                    paths.add(path.split(".hostPath.")[0])
                    yield s, f"values {path.split('.hostPath.')[0]}.hostPath: a host path for a chart outside the " \
                             "allowlist", path


DEV_FLAG = re.compile(r"(^|\s)-dev(\s|$|=|-)")


def _vault_not_dev(subjects, platform):
    for s in subjects:
        if s.type == HELM_RELEASE and s.props.get("name") == "vault":
            values = s.props.get("values") or {}
            if _dig(values, "server", "dev", "enabled") in (True, "true"):
                yield s, "values server.dev.enabled = true: an in-memory Vault with a known root token", \
                    "server.dev.enabled"
            extra = _dig(values, "server", "extraArgs")
            if isinstance(extra, str) and DEV_FLAG.search(extra):
                yield s, f"values server.extraArgs {extra!r} starts Vault in dev mode", "server.extraArgs"
        elif s.release == "vault":
            for pod in pod_specs(s):
                for c in (pod.get("containers") or []):
                    line = " ".join(str(a) for a in (c.get("command") or []) + (c.get("args") or []))
                    env = {e.get("name") for e in c.get("env") or [] if isinstance(e, dict)}
                    if DEV_FLAG.search(line) or "VAULT_DEV_ROOT_TOKEN_ID" in env:
                        yield s, f"container {c.get('name')} runs Vault in dev mode"


def _cilium_enforcement(subjects, platform):
    for s in subjects:
        if s.type == HELM_RELEASE and s.props.get("name") == "cilium":
            values = s.props.get("values") or {}
            if str(values.get("policyEnforcementMode", "")).lower() == "never":
                yield s, "values policyEnforcementMode = never: every NetworkPolicy would be ignored", \
                    "policyEnforcementMode"
            secrets_ns = _dig(values, "gatewayAPI", "secretsNamespace", "name")
            if secrets_ns is not None and secrets_ns not in PLATFORM_SECRET_NAMESPACES:
                yield s, f"values gatewayAPI.secretsNamespace.name = {secrets_ns}: the Gateway's TLS keys would be " \
                         f"copied outside the platform namespaces ({', '.join(sorted(PLATFORM_SECRET_NAMESPACES))})", \
                    "gatewayAPI.secretsNamespace.name"
        elif s.release == "cilium" and s.kind == "ConfigMap" and s.metadata.get("name") == "cilium-config":
            data = s.props.get("data") or {}
            if str(data.get("enable-policy", "")).lower() == "never":
                yield s, "enable-policy: never (every NetworkPolicy ignored)"
            secrets_ns = data.get("gateway-api-secrets-namespace")
            if secrets_ns and secrets_ns not in PLATFORM_SECRET_NAMESPACES:
                yield s, f"gateway-api-secrets-namespace: {secrets_ns} (outside the platform namespaces)"


def _anonymous_ini(text: str) -> bool:
    section = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif section == "auth.anonymous" and "=" in line:
            key, _, value = line.partition("=")
            if key.strip() == "enabled" and value.strip().lower() == "true":
                return True
    return False


def _grafana_not_anonymous(subjects, platform):
    for s in subjects:
        if s.type == HELM_RELEASE and s.props.get("name") == "kube-prometheus-stack":
            grafana = (s.props.get("values") or {}).get("grafana") or {}
            if _dig(grafana, "grafana.ini", "auth.anonymous", "enabled") in (True, "true"):
                yield s, "values grafana.grafana.ini.auth.anonymous.enabled = true: Grafana without a login", \
                    "grafana.grafana.ini.auth.anonymous.enabled"
            if str((grafana.get("env") or {}).get("GF_AUTH_ANONYMOUS_ENABLED", "")).lower() == "true":
                yield s, "values grafana.env.GF_AUTH_ANONYMOUS_ENABLED = true: Grafana without a login", \
                    "grafana.env.GF_AUTH_ANONYMOUS_ENABLED"
        elif s.release and s.kind == "ConfigMap" and _anonymous_ini(str((s.props.get("data") or {}).get(
                "grafana.ini", ""))):
            yield s, "grafana.ini enables [auth.anonymous]"
        elif s.release:
            for pod in pod_specs(s):
                for c in pod.get("containers") or []:
                    if any(isinstance(e, dict) and e.get("name") == "GF_AUTH_ANONYMOUS_ENABLED" and
                           str(e.get("value")).lower() == "true" for e in c.get("env") or []):
                        yield s, f"container {c.get('name')} sets GF_AUTH_ANONYMOUS_ENABLED=true"


def _airgap_inside(subjects, platform):
    yield from _mirror_only(subjects, platform)
    yield from _chart_sources(subjects, platform)


def url_host(url: str) -> str | None:
    """host[:port] of a URL (oci://, https://), lower case; None for a local path."""
    from urllib.parse import urlsplit

    if "://" not in url:
        return None
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "?"
    host = f"[{host}]" if host and ":" in host else host or "?"
    return f"{host}:{port}" if port is not None else host


def _chart_sources(subjects, platform):
    """Air gap: every chart a release pulls and every manifest bundle comes from a host inside the perimeter."""
    if not platform.mirror:
        return
    inside = set(platform.perimeter) or {platform.mirror.split("/", 1)[0]}
    for s in subjects:
        if s.type == HELM_RELEASE:
            chart = str(s.props.get("chart") or "")
            repo = str((s.props.get("repositoryOpts") or {}).get("repo") or "")
            for source in (chart, repo):
                host = url_host(source) if source else None
                if host is not None and host not in inside:
                    yield s, f"chart source {source} is outside the perimeter ({', '.join(sorted(inside))})"
        elif s.type == "kubernetes:yaml/v2:ConfigGroup":
            for f in s.props.get("files") or []:
                host = url_host(str(f))
                if host is not None and host not in inside:
                    yield s, f"manifest {f} is outside the perimeter ({', '.join(sorted(inside))})"


# --- references between objects -----------------------------------------------------------------------

BUILTIN_PRIORITY_CLASSES = frozenset({"system-cluster-critical", "system-node-critical"})
"""PriorityClasses every cluster has."""
CNPG_CLUSTER_SECRETS = ("-app", "-ca", "-replication", "-server", "-superuser")
"""Secrets CloudNativePG creates for a `Cluster` <name> (<name>-app, ...), in the Cluster's namespace."""
USER_PROVIDED = "plinth.dev/user-provided"
"""Annotation on a workload: the objects of its namespace (Kind/name, comma-separated) its pods use that the spec
says the user creates (a model's repository claim and credentials Secret)."""
VAULT_SECRET_KINDS = frozenset({"VaultStaticSecret", "VaultDynamicSecret", "VaultPKISecret"})
"""Vault Secrets Operator kinds whose `spec.destination.name` Secret the operator creates."""


CLUSTER_SCOPED = frozenset({
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass", "StorageClass",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding", "APIService", "CSIDriver", "PersistentVolume", "IngressClass",
    "GatewayClass", "RuntimeClass", "ClusterIssuer", "CiliumClusterwideNetworkPolicy", "VolumeSnapshotClass",
    "NodeFeatureRule", "ClusterPolicy", "NVIDIADriver"})
"""Kinds without a namespace: a chart's namespaced objects get their release's; a reference to one of these
ignores any namespace (the engine may report `default` for a custom resource whose CRD it has not seen yet)."""


def _ref_index(subjects) -> set[tuple[str, str | None, str]]:
    """(kind, namespace, name) of every object the plan declares, and of every object a named operator creates
    from one of them: cert-manager a Certificate's `secretName`, the Vault Secrets Operator a destination
    Secret, CloudNativePG a Cluster's secrets, a StatefulSet its claims (<template>-<name>-<ordinal>, by
    template name)."""
    known: set[tuple[str, str | None, str]] = set()
    for s in subjects:
        if s.kind is None:
            continue
        ns, name, spec = s.metadata.get("namespace"), s.metadata.get("name"), s.props.get("spec") or {}
        known.add((s.kind, None if s.kind in CLUSTER_SCOPED else ns, name))
        if s.kind == "Certificate" and spec.get("secretName"):
            known.add(("Secret", ns, spec["secretName"]))
        elif s.kind in VAULT_SECRET_KINDS and _dig(spec, "destination", "name"):
            known.add(("Secret", ns, spec["destination"]["name"]))
        elif s.kind == "Cluster" and s.type.startswith("kubernetes:postgresql.cnpg.io"):
            known.update(("Secret", ns, f"{name}{suffix}") for suffix in CNPG_CLUSTER_SECRETS)
    return known


def _listeners(subjects) -> dict[tuple[str | None, str], set[str]]:
    return {(s.metadata.get("namespace"), s.metadata.get("name")):
            {str(lst.get("name")) for lst in (s.props.get("spec") or {}).get("listeners") or []}
            for s in subjects if s.kind == "Gateway"}


def _parent_refs(s: Subject) -> Iterator[dict]:
    """Gateway parentRefs of an HTTPRoute, and of an ACME issuer's HTTP-01 solver routes."""
    spec = s.props.get("spec") or {}
    if s.kind == "HTTPRoute":
        yield from spec.get("parentRefs") or []
    elif s.kind in ("Issuer", "ClusterIssuer"):
        for solver in _dig(spec, "acme", "solvers") or []:
            yield from _dig(solver, "http01", "gatewayHTTPRoute", "parentRefs") or []


def _pod_references(pod: dict) -> Iterator[tuple[str, str]]:
    """(kind, name) of every object a pod spec needs to start (optional references left out)."""
    if pod.get("serviceAccountName") not in (None, "default"):
        yield "ServiceAccount", pod["serviceAccountName"]
    if pod.get("priorityClassName"):
        yield "PriorityClass", pod["priorityClassName"]
    for secret in pod.get("imagePullSecrets") or []:
        yield "Secret", secret.get("name")
    for volume in pod.get("volumes") or []:
        sources = [volume, *(_dig(volume, "projected", "sources") or [])]
        for source in sources:
            if (source.get("secret") or {}).get("secretName") and not source["secret"].get("optional"):
                yield "Secret", source["secret"]["secretName"]
            if (source.get("secret") or {}).get("name") and not source["secret"].get("optional"):
                yield "Secret", source["secret"]["name"]
            if (source.get("configMap") or {}).get("name") and not source["configMap"].get("optional"):
                yield "ConfigMap", source["configMap"]["name"]
        if (volume.get("persistentVolumeClaim") or {}).get("claimName"):
            yield "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]
    for container in (pod.get("initContainers") or []) + (pod.get("containers") or []):
        for source in container.get("envFrom") or []:
            for key, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                if source.get(key) and not source[key].get("optional"):
                    yield kind, source[key].get("name")
        for env in container.get("env") or []:
            for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                ref = _dig(env, "valueFrom", key)
                if ref and not ref.get("optional"):
                    yield kind, ref.get("name")


def _service_ports(service: Subject) -> set[str]:
    return {str(p.get("name")) for p in (service.props.get("spec") or {}).get("ports") or [] if p.get("name")}


def _monitored_namespaces(monitor: Subject, namespaces: set[str | None]) -> set[str | None]:
    selector = (monitor.props.get("spec") or {}).get("namespaceSelector") or {}
    if selector.get("any"):
        return namespaces
    return set(selector.get("matchNames") or [monitor.metadata.get("namespace")])


def _chart_instance(selector: dict, namespaces: set, subjects) -> bool:
    """A selector naming a Helm release of these namespaces by its instance label, when that chart is not
    rendered: it selects the chart's objects, which only a render shows (`plinth check --charts`)."""
    instance = (selector.get("matchLabels") or {}).get("app.kubernetes.io/instance")
    return any(s.type == HELM_RELEASE and s.props.get("name") == instance and s.props.get("namespace") in namespaces
               for s in subjects) and not any(s.rendered and s.name == instance for s in subjects)


def _service(namespace: str, name: str, labels: dict, ports: tuple[str, ...]) -> Subject:
    return Subject("kubernetes:core/v1:Service", name, {
        "metadata": {"namespace": namespace, "name": name, "labels": labels},
        "spec": {"ports": [{"name": port} for port in ports]}})


KUBERNETES_SERVICE = _service("default", "kubernetes", {"component": "apiserver", "provider": "kubernetes"},
                              ("https",))
"""The API server's Service, in every cluster."""
KUBELET_SERVICE_ARG = "--kubelet-service="
KUBELET_SERVICE_LABELS = {"app.kubernetes.io/managed-by": "prometheus-operator", "app.kubernetes.io/name": "kubelet",
                          "k8s-app": "kubelet"}
KUBELET_SERVICE_PORTS = ("https-metrics", "http-metrics", "cadvisor")
"""The kubelets' Service the Prometheus operator maintains when run with --kubelet-service=<ns>/<name>."""


def _provided_services(subjects) -> Iterator[Subject]:
    """Services no plan or chart declares that exist anyway: the API server's, and those operators create."""
    yield KUBERNETES_SERVICE
    for s in subjects:
        for pod in pod_specs(s):
            for container in pod.get("containers") or []:
                for arg in container.get("args") or []:
                    if isinstance(arg, str) and arg.startswith(KUBELET_SERVICE_ARG) and "/" in arg:
                        ns, name = arg.removeprefix(KUBELET_SERVICE_ARG).split("/", 1)
                        yield _service(ns, name, KUBELET_SERVICE_LABELS, KUBELET_SERVICE_PORTS)


def _references_resolve(subjects, platform):
    known = _ref_index(subjects)
    candidates = [s for s in subjects if s.kind == "Service"] + list(_provided_services(subjects))
    listeners = _listeners(subjects)
    for s in subjects:
        ns = s.metadata.get("namespace")
        for ref in _parent_refs(s):
            if ref.get("kind", "Gateway") != "Gateway":
                continue
            gateway = (ref.get("namespace") or ns, ref.get("name"))
            where = f"Gateway {gateway[0]}/{gateway[1]}"
            if gateway not in listeners:
                yield s, f"parentRef names {where}, which the plan does not declare"
            elif ref.get("sectionName") and ref["sectionName"] not in listeners[gateway]:
                yield s, (f"parentRef names listener {ref['sectionName']!r} of {where}, which has only "
                          f"{', '.join(sorted(listeners[gateway]))}")
        if s.kind == "Certificate":
            issuer = (s.props.get("spec") or {}).get("issuerRef") or {}
            kind = issuer.get("kind", "Issuer")
            if (kind, None if kind == "ClusterIssuer" else ns, issuer.get("name")) not in known:
                yield s, f"issuerRef names {kind} {issuer.get('name')}, which the plan does not declare"
        if s.kind == "ServiceMonitor":
            spec = s.props.get("spec") or {}
            scope = _monitored_namespaces(s, {o.metadata.get("namespace") for o in subjects})
            services = [o for o in candidates if o.metadata.get("namespace") in scope
                        and _selects(spec.get("selector") or {}, o.labels)]
            if not services and _chart_instance(spec.get("selector") or {}, scope, subjects):
                continue  # the chart's Service: its objects are the chart tier's to check (README)
            if not services:
                yield s, f"selects no Service in {', '.join(sorted(map(str, scope)))}"
            for endpoint in spec.get("endpoints") or []:
                port = endpoint.get("port")
                if services and port and not any(port in _service_ports(o) for o in services):
                    yield s, f"endpoint port {port!r} is not a port name of the Service(s) it selects"
        provided = set(filter(None, str((s.metadata.get("annotations") or {}).get(USER_PROVIDED, "")).split(",")))
        for pod in pod_specs(s):
            for kind, name in _pod_references(pod):
                if (kind, None if kind == "PriorityClass" else ns, name) in known or f"{kind}/{name}" in provided:
                    continue
                if kind == "PriorityClass" and name in BUILTIN_PRIORITY_CLASSES:
                    continue
                yield s, f"its pods use {kind} {name}, which the plan does not declare and no operator creates"


POLICIES: tuple[Policy, ...] = (
    Policy("no-wildcard-rbac", "Roles and ClusterRoles name their API groups, resources and verbs (the charts' "
           "too, but for the upstream roles in plinth.governance.policies.CHART_WILDCARD_ROLES).",
           "list the exact apiGroups, resources and verbs the role needs", MANDATORY, _no_wildcard_rbac),
    Policy("team-namespace-isolation", "Every team namespace enforces Pod Security `restricted` and is "
           "default-deny for ingress and egress.", "keep the tenancy module's namespace labels and its "
           "default-deny NetworkPolicy", MANDATORY, _team_namespace_isolation),
    Policy("ownership-labels", "Every object carries managed-by, environment and cost-center labels, and "
           "the team label in a team's namespace.", "create objects with PlatformContext.metadata(...)",
           MANDATORY, _ownership_labels),
    Policy("airgap-mirror-only", "With air-gap on, every image (Plinth's and every chart's) comes from the mirror, "
           "and every chart and manifest bundle from a host inside the perimeter.",
           "set the image through plinth.catalog's mirror rule (ImageRef.mirrored); take charts from "
           "airgap.mirror.charts", MANDATORY, _airgap_inside),
    Policy("pinned-images", "No image runs `latest` or without a tag or digest.",
           "pin the image in plinth/catalog.py", MANDATORY, _pinned_images),
    Policy("prod-high-availability", "Production runs Vault raft HA (3+), Prometheus and Alertmanager with 2+ "
           "replicas and Longhorn with 3+ volume replicas; every Deployment, StatefulSet and operator-run "
           "workload (Prometheus, Alertmanager, CloudNativePG Cluster, OT Redis) runs 2+ replicas with a "
           "PodDisruptionBudget selecting its pods, unless HA_EXEMPTIONS names it with its reason.",
           "set secrets.vault.ha: true and keep the environment's replica defaults; give the workload 2+ "
           "replicas and a PodDisruptionBudget, or an HA_EXEMPTIONS entry saying why not", MANDATORY,
           _prod_high_availability),
    Policy("secrets-from-stack-config", "Every Secret's payload comes from stack secrets (or Vault), named by "
           f"its {SECRET_SOURCE} annotation; the program holds no secret data.",
           "create Secrets with plinth.objects.stack_secret from a StackSecrets field", MANDATORY,
           _secrets_from_stack_config),
    Policy("no-external-services", "Nothing is exposed with a LoadBalancer or NodePort Service, an Ingress, a "
           "Gateway or route of a chart's own (whatever values key asks for it): traffic enters through the "
           "platform Gateway, and Plinth's routes attach to it only.", "remove the values key; expose through an "
           "HTTPRoute on the platform Gateway (the service's hostname field)", MANDATORY, _no_external_services),
    Policy("pod-security", "Every pod (Plinth's and every chart's) meets the Pod Security level its namespace "
           "enforces (baseline or restricted, as the upstream standard defines them).", "remove the values key "
           "that weakens the pod's security context", MANDATORY, _pod_security),
    Policy("host-access-allowlist", "Only the allowlisted platform workloads (Cilium, Longhorn, the GPU "
           "operator's node discovery, node-exporter; plinth.governance.policies.HOST_ACCESS_ALLOWLIST) run "
           "privileged or with host namespaces or hostPath.", "remove the values key that asks for host access",
           MANDATORY, _host_access_allowlist),
    Policy("vault-not-dev", "Vault never runs in dev mode (in memory, unsealed, root token known).",
           "remove server.dev and any -dev flag from secrets.vault.values", MANDATORY, _vault_not_dev),
    Policy("cilium-policy-enforcement", "Cilium enforces network policy (never policyEnforcementMode: never) "
           "and keeps the Gateway's TLS keys in platform namespaces.", "remove policyEnforcementMode and "
           "gatewayAPI.secretsNamespace from network.cilium.values", MANDATORY, _cilium_enforcement),
    Policy("grafana-not-anonymous", "Grafana has no anonymous access.", "remove grafana.ini auth.anonymous (and "
           "GF_AUTH_ANONYMOUS_ENABLED) from monitoring.values", MANDATORY, _grafana_not_anonymous),
    Policy("gpu-workloads", f"Pods that ask for GPUs ({GPU}, nvidia.com/mig-*) set them as limits and tolerate the "
           f"GPU taint {GPU}=present:NoSchedule; other pods (DaemonSets aside) do not tolerate it.",
           "set GPUs under resources.limits and add the GPU toleration only to pods that ask for a GPU",
           MANDATORY, _gpu_workloads),
    Policy("served-model-reliability", f"Every model server (a Deployment labelled {MODEL_LABEL}, the serving "
           "module's label) has liveness and readiness probes, a PodDisruptionBudget selecting its pods and a "
           "PrometheusRule alerting on the model.", "keep the serving module's probes, PodDisruptionBudget and "
           "PrometheusRule for the model", MANDATORY, _served_model_reliability),
    Policy("cloud-private-and-encrypted", "Cloud clusters have private endpoints (EKS: unless tagged "
           f"{AWS_PUBLIC_ENDPOINT_REASON}; GKE: private nodes, and a private endpoint unless labelled "
           f"{GCP_PUBLIC_ENDPOINT_REASON}); S3 buckets are named explicitly and have server-side encryption and a "
           "full public access block (matched by the `bucket` name); GCS buckets have uniform access and enforced "
           "public access prevention.", "keep the eks/gke modules' private endpoints, bucket encryption and "
           "public access settings; a public endpoint needs the spec's override reason", MANDATORY,
           _cloud_private_and_encrypted),
    Policy("workload-identity-scoped", "Workload identity trusts exactly one Kubernetes service account: an IAM "
           "role's web-identity trust has StringEquals on <provider>:sub with one system:serviceaccount:<ns>:<sa>; "
           f"a GCP {WORKLOAD_IDENTITY_USER} grant names one <project>.svc.id.goog[<ns>/<sa>]; no `*`.",
           "bind each cloud identity to the one namespace/service account that uses it", MANDATORY,
           _workload_identity_scoped),
    Policy("references-resolve", "Every reference between objects resolves: an HTTPRoute's (or an ACME "
           "solver's) Gateway parentRef and sectionName name a declared Gateway listener; a Certificate's issuer "
           "exists; a ServiceMonitor selects a Service with its endpoint port names; a pod's ServiceAccount, "
           "Secrets, ConfigMaps, PVCs and PriorityClass are declared or created by a named operator "
           "(cert-manager, Vault Secrets Operator, CloudNativePG).", "declare the referenced object, or fix "
           "the name (take it from the constant of the module that owns it)", MANDATORY, _references_resolve),
)
POLICIES += (
    Policy("team-routes-own-paths", "A team's HTTPRoutes take only the team's own traffic: no platform host name "
           "(reserved to platform routes), only paths under /<team>/ on the serving host, and otherwise only the "
           "team's own host name <team>.<domain>.", "route the team's model under /<team>/ on the serving host, "
           "or on <team>.<domain>", MANDATORY, _team_routes_own_paths),
)
POLICY_NAMES = tuple(p.name for p in POLICIES)


def evaluate(subjects: list[Subject], levels: dict[str, str] | None = None
             ) -> list[tuple[Policy, str, list[Violation]]]:
    """Every policy at its effective level (`levels`: a stack's overrides), with its violations."""
    platform = Platform.of(subjects)
    out = []
    for policy in POLICIES:
        level = (levels or {}).get(policy.name, policy.level)
        out.append((policy, level, [] if level == DISABLED else policy.run(subjects, platform)))
    return out


def read_levels(config: dict, where: str) -> dict[str, str]:
    """Levels from a policy configuration in Pulumi's `--policy-pack-config` form:
    {"<policy>": "advisory"} or {"<policy>": {"enforcementLevel": "advisory"}}; "all" sets every policy.
    Raises ValueError naming the bad key."""
    levels: dict[str, str] = {}
    # "all" first, so a named policy's own level wins whatever the order in the file.
    for name, value in sorted(config.items(), key=lambda item: item[0] != "all"):
        level = value.get("enforcementLevel") if isinstance(value, dict) else value
        if name != "all" and name not in POLICY_NAMES:
            raise ValueError(f"{where}: unknown policy {name!r} (policies: {', '.join(POLICY_NAMES)})")
        if level not in LEVELS:
            raise ValueError(f"{where}: {name}: level {level!r} is not one of {', '.join(LEVELS)}")
        levels.update(dict.fromkeys(POLICY_NAMES if name == "all" else (name,), level))
    return levels
