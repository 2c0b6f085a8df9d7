"""Plinth's policies: pure functions over resources as the engine sees them, with two runners.

A policy sees `Subject`s (Pulumi type token, name, input properties in the engine's form). The
same functions run in `pulumi preview --policy-pack policies` (policies/__main__.py, over what
the real engine is about to deploy) and in `plinth check` (plinth/governance/check.py, over the
offline plan). Platform facts a policy needs (environment, air-gap mirror, levels) come from the
platform ledger ConfigMap the program declares (modules/governance), so both runners read them
from the resources themselves and never from a second description.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

MANDATORY, ADVISORY, DISABLED = "mandatory", "advisory", "disabled"
LEVELS = (MANDATORY, ADVISORY, DISABLED)

LEDGER_NAME = "plinth-ledger"
LEDGER_NAMESPACE = "plinth-system"
SECRET_SOURCE = "plinth.dev/secret-source"
"""Annotation on every Secret Plinth creates: the stack secret (or Kubernetes source) its payload comes from."""
OWNERSHIP_LABELS = ("app.kubernetes.io/managed-by", "plinth.dev/environment", "plinth.dev/cost-center")

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
WORKLOAD_KINDS = {"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}


@dataclass(frozen=True)
class Subject:
    """One resource: its Pulumi type token, name and inputs (camelCase, as the engine holds them)."""

    type: str
    name: str
    props: dict = field(default_factory=dict)
    upstream: bool = False
    """An object of an upstream manifest bundle (a ConfigGroup's child, e.g. the Gateway API CRDs), which
    the real engine registers and the offline plan does not see: not authored by Plinth, so not labelled."""

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
        return f"{self.kind or self.type.rsplit(':', 1)[-1]} {ns + '/' if ns else ''}{self.metadata.get('name') or self.name}"


@dataclass(frozen=True)
class Violation:
    policy: str
    subject: str
    """The resource, as `Kind namespace/name`; empty for the stack as a whole."""
    message: str


@dataclass(frozen=True)
class Platform:
    """The facts policies need about the platform, from its ledger."""

    environment: str = "dev"
    mirror: str | None = None

    @classmethod
    def of(cls, subjects: Iterable[Subject]) -> Platform:
        for s in subjects:
            if s.kind == "ConfigMap" and s.metadata.get("name") == LEDGER_NAME:
                data = s.props.get("data") or {}
                facts = json.loads(data.get("platform.json", "{}"))
                return cls(facts.get("environment", "dev"), facts.get("mirror"))
        return cls()


@dataclass(frozen=True)
class Policy:
    name: str
    description: str
    remediation: str
    level: str
    check: Callable[[list[Subject], Platform], Iterator[tuple[Subject | None, str]]]

    def run(self, subjects: list[Subject], platform: Platform) -> list[Violation]:
        return [Violation(self.name, subject.display if subject else "", message)
                for subject, message in self.check(subjects, platform)]


# --- helpers --------------------------------------------------------------------------------------


def pod_specs(subject: Subject) -> Iterator[dict]:
    spec = subject.props.get("spec") or {}
    if subject.kind == "Pod":
        yield spec
    elif subject.kind == "CronJob":
        yield (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
    elif subject.kind in WORKLOAD_KINDS:
        yield (spec.get("template") or {}).get("spec") or {}


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


def _no_wildcard_rbac(subjects, platform):
    for s in subjects:
        if s.kind not in ("Role", "ClusterRole"):
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


def _dig(values: dict, *path: str) -> Any:
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


def _secrets_from_stack_config(subjects, platform):
    for s in subjects:
        if s.kind != "Secret":
            continue
        if not (s.metadata.get("annotations") or {}).get(SECRET_SOURCE):
            yield s, f"a Secret without the {SECRET_SOURCE} annotation naming where its payload comes from"


def _no_external_services(subjects, platform):
    exposed = {"loadbalancer", "nodeport"}
    for s in subjects:
        if s.kind == "Service" and str((s.props.get("spec") or {}).get("type", "")).lower() in exposed:
            yield s, f"a Service of type {s.props['spec']['type']}"
        if s.type == HELM_RELEASE:
            for path, value in _typed(s.props.get("values") or {}):
                if value.lower() in exposed:
                    yield s, f"values {path} = {value}: the chart would expose a Service outside the cluster"


def _typed(values: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(values, dict):
        for key, value in values.items():
            here = f"{path}.{key}" if path else str(key)
            if key == "type" and isinstance(value, str):
                yield here, value
            else:
                yield from _typed(value, here)


POLICIES: tuple[Policy, ...] = (
    Policy("no-wildcard-rbac", "Roles and ClusterRoles name their API groups, resources and verbs.",
           "list the exact apiGroups, resources and verbs the role needs", MANDATORY, _no_wildcard_rbac),
    Policy("team-namespace-isolation", "Every team namespace enforces Pod Security `restricted` and is "
           "default-deny for ingress and egress.", "keep the tenancy module's namespace labels and its "
           "default-deny NetworkPolicy", MANDATORY, _team_namespace_isolation),
    Policy("ownership-labels", "Every object carries managed-by, environment and cost-center labels, and "
           "the team label in a team's namespace.", "create objects with PlatformContext.metadata(...)",
           MANDATORY, _ownership_labels),
    Policy("airgap-mirror-only", "With air-gap on, every image comes from the mirror.",
           "set the image through plinth.catalog's mirror rule (ImageRef.mirrored)", MANDATORY, _mirror_only),
    Policy("pinned-images", "No image runs `latest` or without a tag or digest.",
           "pin the image in plinth/catalog.py", MANDATORY, _pinned_images),
    Policy("prod-high-availability", "Production runs Vault raft HA (3+), Prometheus and Alertmanager with 2+ "
           "replicas and Longhorn with 3+ volume replicas.", "set secrets.vault.ha: true and keep the "
           "environment's replica defaults", MANDATORY, _prod_high_availability),
    Policy("secrets-from-stack-config", "Every Secret's payload comes from stack secrets (or Vault), named by "
           f"its {SECRET_SOURCE} annotation; the program holds no secret data.",
           "create Secrets with plinth.objects.stack_secret from a StackSecrets field", MANDATORY,
           _secrets_from_stack_config),
    Policy("no-external-services", "Nothing is exposed with a LoadBalancer or NodePort Service: traffic "
           "enters through the platform Gateway.", "expose through an HTTPRoute on the platform Gateway",
           MANDATORY, _no_external_services),
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
