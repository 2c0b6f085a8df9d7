"""`plinth diff`: resources matched by what they are in the platform, not by the stack in their URN."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support import ROOT
from plinth.plan import Plan, Resource, diff_lines, diff_plans, resource_key

PLINTH = str(Path(sys.executable).parent / "plinth")


def quota(stack: str, gpu: str, project: str = "plinth") -> Resource:
    prefix = f"urn:pulumi:{stack}::{project}::"
    return Resource(urn=f"{prefix}plinth:tenancy:Tenancy$kubernetes:core/v1:ResourceQuota::tenancy-fraud-quota",
                    type="kubernetes:core/v1:ResourceQuota", name="tenancy-fraud-quota",
                    parent=f"{prefix}plinth:tenancy:Tenancy::tenancy", custom=True,
                    dependencies=(f"{prefix}plinth:tenancy:Tenancy$kubernetes:core/v1:Namespace::fraud",),
                    inputs={"kind": "ResourceQuota", "metadata": {"name": "team-quota", "namespace": "fraud"},
                            "spec": {"hard": {"requests.nvidia.com/gpu": gpu}},
                            "x-ref": {"resource": f"{prefix}plinth:tenancy:Tenancy::tenancy"}})


def plan_of(*resources: Resource, stack: str = "dev") -> Plan:
    return Plan("p", "dev", f"stack:{stack}", resources)


def test_the_key_drops_stack_and_project_only():
    urn = "urn:pulumi:prod::plinth::plinth:tenancy:Tenancy$kubernetes:core/v1:Namespace::fraud"
    assert resource_key(urn) == "plinth:tenancy:Tenancy$kubernetes:core/v1:Namespace::fraud"
    assert resource_key("not-a-urn") == "not-a-urn"


def test_the_same_resources_in_two_stacks_are_no_change():
    # Their URNs (and the URNs in parent, dependencies and resource references) differ in every character
    # of the stack, and in the project; nothing the platform declares does.
    assert diff_plans(plan_of(quota("dev", "2")), plan_of(quota("offline", "2", project="other"))) == []


def test_a_real_difference_between_stacks_is_one_change():
    changes = diff_plans(plan_of(quota("dev", "1")), plan_of(quota("prod", "8")))
    assert diff_lines(changes) == [
        "~ ResourceQuota fraud/team-quota  (tenancy-fraud-quota)",
        '    spec.hard.requests.nvidia.com/gpu: "1" -> "8"',
        "0 added, 1 changed, 0 removed",
    ]


def diff(old: str, new: str) -> subprocess.CompletedProcess:
    return subprocess.run([PLINTH, "diff", old, new], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PLINTH_DEBUG": ""})


def marked(lines: list[str], mark: str) -> list[str]:
    return [line for line in lines if line.startswith(f"{mark} ")]


def test_two_stacks_show_only_what_differs():
    result = diff("stack:dev", "stack:prod")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # prod drops the fraud team's viewer group (so its role and binding) and adds team recsys (no data-scientist
    # group: no such role); everything else is the same resource.
    assert marked(lines, "-") == ["- Role fraud/plinth:viewer  (tenancy-fraud-viewer)",
                                  "- RoleBinding fraud/plinth:viewer  (tenancy-fraud-viewer)"]
    added = marked(lines, "+")
    assert len(added) == 12 and all("recsys" in line for line in added)
    assert lines[-1].startswith("12 added, ") and lines[-1].endswith(" changed, 2 removed")
    at = lines.index("~ ResourceQuota fraud/team-quota  (tenancy-fraud-quota)")
    assert '    spec.hard.requests.nvidia.com/gpu: "1" -> "8"' in lines[at + 1:at + 4]


def test_a_blueprint_and_its_stack_compare_like_with_like():
    # stacks/Pulumi.dev.yaml is minimal.yaml with the fraud team's GPU quota lowered to 1.
    result = diff("blueprints/minimal.yaml", "stack:dev")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert marked(lines, "+") == marked(lines, "-") == []
    at = lines.index("~ ResourceQuota fraud/team-quota  (tenancy-fraud-quota)")
    assert lines[at + 1] == '    spec.hard.requests.nvidia.com/gpu: "4" -> "1"'
    assert not any(line.startswith("~ ") and "tenancy" in line and "quota" not in line for line in lines)
