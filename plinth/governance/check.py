"""`plinth check`: the policies over the offline plan, the same functions the policy pack runs."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from plinth.engine.charts import HELM_RELEASE, Rendered
from plinth.governance.policies import evaluate, read_levels
from plinth.governance.policies.core import MANDATORY, Policy, Subject, Violation
from plinth.governance.policies.references import CLUSTER_SCOPED
from plinth.plan import Plan
from plinth.spec.models import PlatformSpec
from plinth.spec.yamltree import read_input


@dataclass(frozen=True)
class Result:
    policy: Policy
    level: str
    violations: tuple[Violation, ...]

    @property
    def failed(self) -> bool:
        return self.level == MANDATORY and bool(self.violations)


def subjects(plan: Plan, charts: list[Rendered] | None = None) -> list[Subject]:
    """What the policy pack would see: every custom resource with its inputs; with `charts` (the releases
    rendered by `helm template`), every object each chart renders too."""
    out = [Subject(r.type, r.name, r.inputs) for r in plan.resources if r.custom]
    for rendered in charts or ():
        release = rendered.resource.inputs.get("name") if rendered.resource.type == HELM_RELEASE else None
        namespace = rendered.resource.inputs.get("namespace")
        for obj in rendered.objects:
            out.append(chart_subject(obj, release or rendered.resource.name, namespace))
    return out


def chart_subject(obj: dict, release: str, namespace: str | None) -> Subject:
    """A rendered object as the engine would register it: `kubernetes:<group>/<version>:<Kind>`, in the
    release's namespace unless the chart names one (cluster-scoped kinds keep none)."""
    api = str(obj.get("apiVersion", ""))
    group_version = api if "/" in api else f"core/{api}"
    meta = dict(obj.get("metadata") or {})
    if namespace and "namespace" not in meta and obj.get("kind") not in CLUSTER_SCOPED:
        meta["namespace"] = namespace
    return Subject(f"kubernetes:{group_version}:{obj.get('kind')}", str(meta.get("name")), {**obj, "metadata": meta},
                   upstream=True, release=release)



def policy_config(project_dir: Path, stack: str | None) -> tuple[Path | None, dict[str, str]]:
    """A stack's policy levels: `stacks/policy.<stack>.json`, the file `pulumi preview --policy-pack-config`
    takes too. Raises ValueError (naming the file) for a malformed one."""
    if stack is None:
        return None, {}
    path = project_dir / "stacks" / f"policy.{stack}.json"
    if not os.path.lexists(path):
        return None, {}
    try:  # read like a spec file: a FIFO or device in its place is refused, not waited on
        config = json.loads(read_input(path, str(path), what="a policy configuration", field="policy"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: not a JSON policy configuration ({exc})") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected an object of policy name -> level")
    return path, read_levels(config, str(path))


def check(plan: Plan, levels: dict[str, str] | None = None, charts: list[Rendered] | None = None) -> list[Result]:
    return [Result(policy, level, tuple(found)) for policy, level, found in evaluate(subjects(plan, charts), levels)]


def as_json(results: list[Result]) -> str:
    return json.dumps([{
        "policy": r.policy.name, "level": r.level, "description": r.policy.description,
        "remediation": r.policy.remediation,
        "violations": [{"resource": v.subject, "message": v.message,
                        **({"values": f"{v.release}: {v.values_key}"} if v.values_key else {}),
                        **({"at": v.at} if v.at else {})} for v in r.violations],
    } for r in results], indent=2) + "\n"


def with_locations(results: list[Result], spec: PlatformSpec, tree) -> list[Result]:
    """Each violation naming a release's values key, with the spec key and file:line:col that set it (when the
    key is the spec's `values` escape hatch; a key Plinth sets is named without a place)."""
    from dataclasses import replace

    from plinth.modules.helm import HelmService
    from plinth.program import SERVICES, platform_context
    from plinth.spec.load import locate

    ctx = platform_context(spec)
    services = {service.chart().name: service for _, service in SERVICES
                if isinstance(service, type) and issubclass(service, HelmService) and service.enabled(spec)}

    def place(violation: Violation) -> Violation:
        service = services.get(violation.release)  # type: ignore[arg-type]  # None: no release, no service
        if service is None or not violation.values_key:
            return violation
        block = service.block(spec)
        path = split_key(service.user_values(block), violation.values_key)
        if path is None:
            owned = split_key(service.release_values(block, ctx), violation.values_key) is not None
            return replace(violation, at="set by Plinth" if owned else None)
        loc, readable = locate(tree, (*service.spec_path, "values", *path))
        return replace(violation, at=f"{readable} at {loc}" if loc else readable)

    return [replace(r, violations=tuple(place(v) for v in r.violations)) for r in results]


def split_key(values, dotted: str) -> tuple | None:
    """The path of a dotted values key in a values tree, keys with dots of their own included
    (`grafana.grafana.ini.auth.anonymous.enabled`); None when the tree does not hold it."""
    if dotted == "":
        return ()
    if not isinstance(values, dict):
        return None
    for key in sorted(values, key=lambda k: -len(str(k))):
        key_text = str(key)
        if dotted == key_text:
            return (key,)
        if dotted.startswith(key_text + "."):
            rest = split_key(values[key], dotted[len(key_text) + 1:])
            if rest is not None:
                return (key, *rest)
    return None
