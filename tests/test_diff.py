"""`plinth diff`: resources matched by what they are in the platform, not by the stack in their URN."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import MINIMAL, ROOT
from plinth.diff import diff_lines, diff_plans, render
from plinth.plan import Plan, Resource, resource_key

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
        "0 to add, 1 to change, 0 to replace, 0 to delete",
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
    # prod drops the fraud team's viewer group (so its role and binding), adds team recsys (no data-scientist
    # group: no such role) and signs people on through the identity provider (the API server's configuration,
    # the groups bound with its prefix); everything else is the same resource.
    assert marked(lines, "-") == ["- Role fraud/plinth:viewer  (tenancy-fraud-viewer)",
                                  "- RoleBinding fraud/plinth:viewer  (tenancy-fraud-viewer)"]
    added = marked(lines, "+")
    assert added[0] == "+ ConfigMap kube-system/plinth-ml-prod-authentication  (tenancy-authentication)"
    assert len(added) == 13 and all("recsys" in line for line in added[1:])
    assert lines[-1].startswith("13 to add, ") and lines[-1].endswith(" to change, 2 to replace, 2 to delete")
    at = lines.index("~ RoleBinding fraud/plinth:ml-engineer  (tenancy-fraud-ml-engineer)")
    assert lines[at + 3:at + 5] == [
        '    subjects[fraud-ml-engineers]: {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": '
        '"fraud-ml-engineers"} -> (none)',
        '    subjects[oidc:fraud-ml-engineers]: (none) -> {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", '
        '"name": "oidc:fraud-ml-engineers"}']
    # Kubernetes cannot rename an object: the platform-admin ClusterRole (named after the platform) and its
    # binding are replaced, and say why.
    assert marked(lines, "+-") == [
        "+- ClusterRole plinth:ml-prod:platform-admin  (tenancy-platform-admin)  "
        "[replace: metadata.name cannot change in place]",
        "+- ClusterRoleBinding plinth:ml-prod:platform-admin  (tenancy-platform-admin)  "
        "[replace: metadata.name cannot change in place; roleRef cannot change in place]"]
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


def resource(kind: str, api: str, inputs: dict, name: str = "r") -> Resource:
    token = f"kubernetes:{api}:{kind}"
    return Resource(urn=f"urn:pulumi:dev::plinth::{token}::{name}", type=token, name=name, parent=None, custom=True,
                    inputs={"kind": kind, "metadata": {"name": name, "namespace": "fraud"}, **inputs})


def changes_of(old: Resource, new: Resource):
    return diff_plans(plan_of(old), plan_of(new))


def route(weight: int) -> Resource:
    refs = [{"name": "scorer", "port": 8000, "weight": 100 - weight},
            {"name": "scorer-canary", "port": 8000, "weight": weight}]
    return resource("HTTPRoute", "gateway.networking.k8s.io/v1", {"spec": {"rules": [{"backendRefs": refs}]}})


def test_list_items_are_matched_by_name_and_each_field_is_one_line():
    assert diff_lines(changes_of(route(10), route(25))) == [
        "~ HTTPRoute fraud/r  (r)",
        "    spec.rules[0].backendRefs[scorer].weight: 90 -> 75",
        "    spec.rules[0].backendRefs[scorer-canary].weight: 10 -> 25",
        "0 to add, 1 to change, 0 to replace, 0 to delete",
    ]


def deployment(selector: str, image: str) -> Resource:
    return resource("Deployment", "apps/v1", {"spec": {"selector": {"matchLabels": {"app": selector}}, "template": {
        "spec": {"containers": [{"name": "server", "image": image}]}}}})


@pytest.mark.parametrize("old, new, kind, reasons", [
    (deployment("a", "img:1"), deployment("a", "img:2"), "changed", ()),
    (deployment("a", "img:1"), deployment("b", "img:1"), "replaced", ("spec.selector cannot change in place",)),
    (resource("Service", "core/v1", {"spec": {"clusterIP": "None"}}),
     resource("Service", "core/v1", {"spec": {"clusterIP": "10.0.0.9"}}), "replaced",
     ("spec.clusterIP cannot change in place",)),
    (resource("StatefulSet", "apps/v1", {"spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}}]}}),
     resource("StatefulSet", "apps/v1", {"spec": {"volumeClaimTemplates": [{"metadata": {"name": "d2"}}]}}),
     "replaced", ("spec.volumeClaimTemplates cannot change in place",)),
    (resource("StorageClass", "storage.k8s.io/v1", {"parameters": {"numberOfReplicas": "2"}}),
     resource("StorageClass", "storage.k8s.io/v1", {"parameters": {"numberOfReplicas": "3"}}), "replaced",
     ("parameters cannot change in place",)),
    (resource("ConfigMap", "core/v1", {"data": {"a": "1"}}), resource("ConfigMap", "core/v1", {"data": {"a": "2"}}),
     "changed", ()),  # the provider runs with enable_config_map_mutable
    (resource("Job", "batch/v1", {"spec": {"template": {"spec": {"restartPolicy": "Never"}}}}),
     resource("Job", "batch/v1", {"spec": {"template": {"spec": {"restartPolicy": "OnFailure"}}}}), "replaced",
     ("spec.template cannot change in place",)),
])
def test_what_kubernetes_cannot_change_in_place_is_a_replacement(old, new, kind, reasons):
    (change,) = changes_of(old, new)
    assert (change.kind, change.reasons) == (kind, reasons)
    assert diff_lines([change])[0].startswith("+- " if reasons else "~ ")


def test_secret_data_is_never_shown_in_any_format():
    old = resource("Secret", "core/v1", {"stringData": {"password": "hunter2-old"}})
    new = resource("Secret", "core/v1", {"stringData": {"password": "hunter2-new"}})
    changes = changes_of(old, new)
    assert changes[0].kind == "replaced"
    for fmt in ("text", "json", "markdown"):
        out = render(changes, fmt)
        assert "hunter2" not in out and "(sensitive value)" in out, fmt


def test_embedded_json_diffs_by_field_and_text_by_line():
    old = resource("ConfigMap", "core/v1", {"data": {"spec.json": json.dumps({"teams": [{"name": "fraud", "gpu": 4}]}),
                                                     "notes.txt": "one\ntwo\nthree\n"}})
    new = resource("ConfigMap", "core/v1", {"data": {"spec.json": json.dumps({"teams": [{"name": "fraud", "gpu": 6}]}),
                                                     "notes.txt": "one\n2\nthree\n"}})
    assert diff_lines(changes_of(old, new))[1:-1] == [
        "    data.notes.txt:", "        @@ -1,3 +1,3 @@", "         one", "        -two", "        +2", "         three",
        "    data.spec.json:", "        teams[fraud].gpu: 4 -> 6",
    ]


def test_markdown_is_a_summary_and_a_collapsible_table_per_component():
    out = render(changes_of(route(10), route(25)), "markdown").splitlines()
    assert out[0] == "**Plan:** 0 to add, 1 to change, 0 to replace, 0 to delete"
    assert out[2] == "<details><summary><code>HTTPRoute</code>: 1 change</summary>"
    assert "| ~ | `HTTPRoute fraud/r` | `spec.rules[0].backendRefs[scorer-canary].weight` | `10` | `25` |" in out
    assert out[-1] == "</details>"
    doc = json.loads(render(changes_of(route(10), route(25)), "json"))
    assert doc["summary"] == "0 to add, 1 to change, 0 to replace, 0 to delete"
    assert doc["changes"][0]["fields"][1] == {"path": "spec.rules[0].backendRefs[scorer-canary].weight",
                                              "old": 10, "new": 25}


def test_markdown_shows_a_long_one_line_value_below_the_table_as_old_and_new():
    long = "The canary of fraud/scorer answers more errors than stable over the last ten minutes: %s"
    old = resource("ConfigMap", "core/v1", {"data": {"summary": long % "2026-11-01"}})
    new = resource("ConfigMap", "core/v1", {"data": {"summary": long % "2026-12-01"}})
    out = render(changes_of(old, new), "markdown")
    block = out.split("```diff\n", 1)[1].split("\n```", 1)[0].splitlines()
    assert block == [f"- {json.dumps(long % '2026-11-01')}", f"+ {json.dumps(long % '2026-12-01')}"]


def test_colour_only_on_a_terminal(write):
    changes = changes_of(route(10), route(25))
    assert "\033[33m~ HTTPRoute" in render(changes, "text", colour=True)
    assert "\033" not in render(changes, "text")
    old, new = write("old.yaml", MINIMAL), write("new.yaml", MINIMAL.replace("gpu: 2", "gpu: 3"))
    piped = subprocess.run([PLINTH, "diff", str(old), str(new), "--format", "markdown"], capture_output=True,
                           text=True, timeout=120)
    assert piped.returncode == 0 and "\033" not in piped.stdout and piped.stdout.startswith("**Plan:** ")
    bad = subprocess.run([PLINTH, "diff", str(old), str(new), "--format", "html"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
