"""`plinth check`: the policies over the offline plan, the same functions the policy pack runs."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from plinth.engine.charts import Rendered
from plinth.governance.policies import MANDATORY, Policy, Subject, Violation, evaluate, read_levels
from plinth.plan import Plan


@dataclass(frozen=True)
class Result:
    policy: Policy
    level: str
    violations: tuple[Violation, ...]

    @property
    def failed(self) -> bool:
        return self.level == MANDATORY and bool(self.violations)


CLUSTER_SCOPED = frozenset({
    "APIService", "ClusterIssuer", "ClusterRole", "ClusterRoleBinding", "CSIDriver", "CustomResourceDefinition",
    "GatewayClass", "IngressClass", "MutatingWebhookConfiguration", "Namespace", "PersistentVolume",
    "PriorityClass", "RuntimeClass", "StorageClass", "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding", "ValidatingWebhookConfiguration"})
"""Kinds without a namespace (a chart's namespaced objects get their release's namespace)."""


def subjects(plan: Plan, rendered: Iterable[Rendered] = ()) -> list[Subject]:
    """What the policy pack would see: every custom resource with its inputs; with `rendered` (the charts
    rendered by `helm template`), also each chart's objects, named by their release."""
    found = [Subject(r.type, r.name, r.inputs) for r in plan.resources if r.custom]
    for item in rendered:
        release, namespace = item.resource.inputs.get("name"), item.resource.inputs.get("namespace")
        for obj in item.objects:
            found.append(chart_subject(obj, str(release or item.resource.name), namespace))
    return found


def chart_subject(obj: dict, release: str, namespace: str | None) -> Subject:
    """A chart's object as the engine would hold it: `kubernetes:<group>/<version>:<Kind>`, in its release's
    namespace unless it names one (or has none)."""
    api = str(obj.get("apiVersion", ""))
    kind = str(obj.get("kind", ""))
    metadata = dict(obj.get("metadata") or {})
    if namespace and kind not in CLUSTER_SCOPED:
        metadata.setdefault("namespace", namespace)
    return Subject(f"kubernetes:{api if '/' in api else 'core/' + api}:{kind}", release,
                   {**obj, "metadata": metadata}, rendered=True)


def policy_config(project_dir: Path, stack: str | None) -> tuple[Path | None, dict[str, str]]:
    """A stack's policy levels: `stacks/policy.<stack>.json`, the file `pulumi preview --policy-pack-config`
    takes too. Raises ValueError (naming the file) for a malformed one."""
    if stack is None:
        return None, {}
    path = project_dir / "stacks" / f"policy.{stack}.json"
    if not path.is_file():
        return None, {}
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON policy configuration ({exc})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected an object of policy name -> level")
    return path, read_levels(config, str(path))


def check(plan: Plan, levels: dict[str, str] | None = None, rendered: Iterable[Rendered] = ()) -> list[Result]:
    return [Result(policy, level, tuple(found))
            for policy, level, found in evaluate(subjects(plan, rendered), levels)]


def as_json(results: list[Result]) -> str:
    return json.dumps([{
        "policy": r.policy.name, "level": r.level, "description": r.policy.description,
        "remediation": r.policy.remediation,
        "violations": [{"resource": v.subject, "message": v.message} for v in r.violations],
    } for r in results], indent=2) + "\n"
