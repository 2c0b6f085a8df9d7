"""What every object of the platform must be: RBAC without wildcards, isolated team namespaces, ownership
labels, pinned images, Secrets from stack secrets."""

from __future__ import annotations

from plinth.catalog import ImageRef
from plinth.governance.policies.core import MANDATORY, OWNERSHIP_LABELS, Policy, images
from plinth.vocabulary import SECRET_SOURCE

CHART_WILDCARD_ROLES: dict[tuple[str, str], str] = {
    ("ClusterRole", "longhorn-role"): "Longhorn's manager: every verb on its own CRDs, volumes, storage and the "
    "RBAC of the CSI components it deploys at run time",
    ("Role", "longhorn"): "Longhorn's manager: every verb on the workloads it runs in longhorn-system",
    ("ClusterRole", "kube-prometheus-stack-operator"): "the Prometheus operator: every verb on monitoring.coreos.com "
    "objects and the StatefulSets, ConfigMaps and Secrets it generates from them",
    ("Role", "velero-server"): "Velero's server: every verb in its own namespace (its backups, restores, "
    "repositories and their maintenance Jobs); cluster-wide it is bound to cluster-admin, which backing up and "
    "restoring any object takes",
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


def _pinned_images(subjects, platform):
    for s in subjects:
        for ref in images(s):
            image = ImageRef.parse(ref)
            if image.tag == "latest":
                yield s, f"image {ref} uses the tag `latest`"
            elif not image.pinned:
                yield s, f"image {ref} has neither a tag nor a digest"


def _secrets_from_stack_config(subjects, platform):
    for s in subjects:
        if s.kind != "Secret" or s.release:
            continue  # the policy governs the Secrets Plinth authors; a chart's own are the chart's
        if not (s.metadata.get("annotations") or {}).get(SECRET_SOURCE):
            yield s, f"a Secret without the {SECRET_SOURCE} annotation naming where its payload comes from"


NO_WILDCARD_RBAC_POLICY = Policy(
    "no-wildcard-rbac", "Roles and ClusterRoles name their API groups, resources and verbs (the charts' "
    "too, but for the upstream roles in plinth.governance.policies.baseline.CHART_WILDCARD_ROLES).",
    "list the exact apiGroups, resources and verbs the role needs", MANDATORY, _no_wildcard_rbac)
TEAM_NAMESPACE_ISOLATION_POLICY = Policy(
    "team-namespace-isolation", "Every team namespace enforces Pod Security `restricted` and is "
    "default-deny for ingress and egress.", "keep the tenancy module's namespace labels and its "
    "default-deny NetworkPolicy", MANDATORY, _team_namespace_isolation)
OWNERSHIP_LABELS_POLICY = Policy(
    "ownership-labels", "Every object carries managed-by, environment and cost-center labels, and "
    "the team label in a team's namespace.", "create objects with PlatformContext.metadata(...)",
    MANDATORY, _ownership_labels)
PINNED_IMAGES_POLICY = Policy(
    "pinned-images", "No image runs `latest` or without a tag or digest.",
    "pin the image in plinth/catalog.py", MANDATORY, _pinned_images)
SECRETS_FROM_STACK_CONFIG_POLICY = Policy(
    "secrets-from-stack-config", "Every Secret's payload comes from stack secrets (or Vault), named by "
    f"its {SECRET_SOURCE} annotation; the program holds no secret data.",
    "create Secrets with plinth.objects.stack_secret from a StackSecrets field", MANDATORY,
    _secrets_from_stack_config)
