"""RBAC rules for team roles and the platform admin: explicit verbs and resources, never "*".

Each team role includes everything of the role before it (viewer <
data-scientist < ml-engineer). No role can read Secrets (secrets come from
Vault), create Roles, bind, escalate or impersonate.
"""

from __future__ import annotations

READ = ["get", "list", "watch"]
WRITE = ["create", "update", "patch", "delete"]

# (apiGroup, resources, verbs)
Rule = tuple[str, tuple[str, ...], list[str]]

VIEWER: list[Rule] = [
    ("", ("configmaps", "endpoints", "events", "persistentvolumeclaims", "pods", "pods/log", "resourcequotas",
          "limitranges", "serviceaccounts", "services"), READ),
    ("apps", ("deployments", "replicasets", "statefulsets"), READ),
    ("batch", ("cronjobs", "jobs"), READ),
    ("autoscaling", ("horizontalpodautoscalers",), READ),
    ("networking.k8s.io", ("networkpolicies",), READ),
    ("gateway.networking.k8s.io", ("httproutes",), READ),
]

DATA_SCIENTIST: list[Rule] = VIEWER + [
    ("", ("configmaps", "persistentvolumeclaims", "pods"), WRITE),
    ("", ("pods/portforward",), ["create"]),
    ("batch", ("cronjobs", "jobs"), WRITE),
]

ML_ENGINEER: list[Rule] = DATA_SCIENTIST + [
    ("", ("pods/exec",), ["create"]),
    ("", ("services",), WRITE),
    ("apps", ("deployments", "statefulsets"), WRITE),
    ("apps", ("deployments/scale", "statefulsets/scale"), ["get", "patch", "update"]),
    ("autoscaling", ("horizontalpodautoscalers",), WRITE),
    ("gateway.networking.k8s.io", ("httproutes",), WRITE),
]

TEAM_ROLES: dict[str, list[Rule]] = {
    "viewer": VIEWER,
    "data-scientist": DATA_SCIENTIST,
    "ml-engineer": ML_ENGINEER,
}
"""Role name -> rules; the keys match the spec's `groups` fields (camelCase there)."""

PLATFORM_ADMIN: list[Rule] = [
    ("", ("namespaces", "resourcequotas", "limitranges", "serviceaccounts", "configmaps", "services"),
     READ + WRITE),
    ("", ("nodes", "pods", "pods/log", "events", "persistentvolumes", "persistentvolumeclaims"), READ),
    ("rbac.authorization.k8s.io", ("roles", "rolebindings"), READ + WRITE),
    ("rbac.authorization.k8s.io", ("clusterroles", "clusterrolebindings"), READ),
    ("networking.k8s.io", ("networkpolicies",), READ + WRITE),
    ("apps", ("daemonsets", "deployments", "replicasets", "statefulsets"), READ + WRITE),
    ("apiextensions.k8s.io", ("customresourcedefinitions",), READ),
    ("gateway.networking.k8s.io", ("gateways", "httproutes"), READ + WRITE),
]


def platform_admin_name(platform: str) -> str:
    """`plinth:<platform>:platform-admin`: ClusterRoles and their bindings are cluster-scoped, so the
    name carries the platform (spec metadata.name) and two platforms on one cluster never overwrite
    each other's admin role or binding."""
    return f"plinth:{platform}:platform-admin"


def policy_rules(rules: list[Rule]) -> list[dict]:
    """Rules as Kubernetes PolicyRule objects, merged per (group, verbs) and sorted for stable output."""
    merged: dict[tuple[str, tuple[str, ...]], set[str]] = {}
    for group, resources, verbs in rules:
        merged.setdefault((group, tuple(sorted(verbs))), set()).update(resources)
    return [
        {"apiGroups": [group], "resources": sorted(resources), "verbs": list(verbs)}
        for (group, verbs), resources in sorted(merged.items())
    ]
