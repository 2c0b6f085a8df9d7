"""`plinth check`: the policies over the offline plan, the same functions the policy pack runs."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from plinth.governance.policies import MANDATORY, Policy, Subject, Violation, evaluate, read_levels
from plinth.plan import Plan
from plinth.spec.yamltree import read_input


@dataclass(frozen=True)
class Result:
    policy: Policy
    level: str
    violations: tuple[Violation, ...]

    @property
    def failed(self) -> bool:
        return self.level == MANDATORY and bool(self.violations)


def subjects(plan: Plan) -> list[Subject]:
    """What the policy pack would see: every custom resource with its inputs."""
    return [Subject(r.type, r.name, r.inputs) for r in plan.resources if r.custom]


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


def check(plan: Plan, levels: dict[str, str] | None = None) -> list[Result]:
    return [Result(policy, level, tuple(found)) for policy, level, found in evaluate(subjects(plan), levels)]


def as_json(results: list[Result]) -> str:
    return json.dumps([{
        "policy": r.policy.name, "level": r.level, "description": r.policy.description,
        "remediation": r.policy.remediation,
        "violations": [{"resource": v.subject, "message": v.message} for v in r.violations],
    } for r in results], indent=2) + "\n"
