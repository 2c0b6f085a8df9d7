"""What every policy works on: the subjects (resources as the engine sees them), the platform facts
from the ledger, violations; and the helpers reading pod specs and images out of a subject."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from plinth.vocabulary import LEDGER_NAME

MANDATORY, ADVISORY, DISABLED = "mandatory", "advisory", "disabled"
LEVELS = (MANDATORY, ADVISORY, DISABLED)

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
    """In air-gap mode, the host[:port]s inside the perimeter (plinth.spec.models.perimeter_hosts)."""
    lineage_required: bool = False
    """serving.lineageRequired (policy served-model-lineage)."""
    sign_on: bool = False
    """identity.oidc is set (policy ui-sign-on)."""

    @classmethod
    def of(cls, subjects: Iterable[Subject]) -> Platform:
        for s in subjects:
            if s.kind == "ConfigMap" and s.metadata.get("name") == LEDGER_NAME and not s.release:
                data = s.props.get("data") or {}
                facts = json.loads(data.get("platform.json", "{}"))
                return cls(facts.get("environment", "dev"), facts.get("mirror"), tuple(facts.get("perimeter") or ()),
                           bool(facts.get("servedModelLineage")), bool(facts.get("signOn")))
        return cls()


@dataclass(frozen=True)
class Policy:
    name: str
    description: str
    remediation: str
    level: str
    check: Callable[[list[Subject], Platform], Iterator[tuple[Subject | None, str]]]

    def run(self, subjects: list[Subject], platform: Platform) -> list[Violation]:
        """A check yields (subject, message), or (subject, message, values key) naming the release value behind it."""
        out = []
        key: list[str]
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
    (Charts that split `registry` from `repository` are checked by `value_registries`.)"""
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


def value_registries(values: Any) -> Iterator[str]:
    if isinstance(values, dict):
        for key, value in values.items():
            if key in ("registry", "imageRegistry") and isinstance(value, str) and value:
                yield value
            else:
                yield from value_registries(value)
    elif isinstance(values, list):
        for value in values:
            yield from value_registries(value)


PDB = "kubernetes:policy/v1:PodDisruptionBudget"


def dig(values: Any, *path: str) -> Any:
    for key in path:
        values = values.get(key) if isinstance(values, dict) else None
    return values


def selects(selector: Any, labels: dict) -> bool:
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
