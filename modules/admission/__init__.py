"""Admission: the rules that must hold after deployment too, enforced by the API server itself.

Kubernetes ValidatingAdmissionPolicies (admissionregistration.k8s.io/v1, CEL, built into the API server: no
webhook, no controller) and one binding each, installed right after the CRDs and before every service, so
nothing the services or anyone later create escapes them:

- plinth-mirror-only (air-gap only): every container image comes from the mirror;
- plinth-no-external-services: no LoadBalancer or NodePort Service and no Ingress outside the platform
  Gateway's namespace;
- plinth-host-access: privileged containers, host namespaces and hostPath only for the allowlisted platform
  workloads (plinth.vocabulary.HOST_ACCESS_ALLOWLIST) and in the operator-managed namespaces of
  HOST_ACCESS_NAMESPACES;
- plinth-team-rolebindings: a RoleBinding in a team's namespace binds only that team's groups, the
  namespace's own service accounts and the platform accounts the services name for it
  (PlatformService.team_accounts: retraining's Sensors);
- plinth-ownership-labels: workloads created in a team's namespace carry plinth.dev/team (the namespace's
  team) and plinth.dev/cost-center.

kube-system is the cluster's own (its CNI, kube-proxy, the control plane's static pods, a cloud's add-ons):
the image and host-access rules leave it out, so upgrading those components is never refused.
`admission.mode` picks the bindings' validationActions: deny ([Deny]) or audit ([Audit, Warn]).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import PLATFORM_NAMESPACES
from plinth.context import PlatformContext, resource_name
from plinth.objects import children
from plinth.service import PlatformService
from plinth.spec.models import PlatformSpec
from plinth.vocabulary import HOST_ACCESS_ALLOWLIST

COMPONENT = "admission"
CLUSTER_NAMESPACE = "kube-system"
ACTIONS = {"deny": ["Deny"], "audit": ["Audit", "Warn"]}
HOST_ACCESS_NAMESPACES: dict[str, str] = {
    PLATFORM_NAMESPACES["longhorn"]: "Longhorn creates its instance managers, engine images and CSI plugin at run "
    "time, privileged with the node's devices",
    PLATFORM_NAMESPACES["gpu-operator"]: "the GPU operator creates the driver, container toolkit, device plugin "
    "and validators at run time, privileged on GPU nodes",
}
"""Namespaces where admission allows host access to every workload (their operators create the privileged pods
at run time, under names the charts do not render), and why. No one but the platform deploys there."""

WORKLOADS = ["deployments", "statefulsets", "daemonsets", "replicasets"]
POD_SPEC = ("object.kind == 'Pod' ? object.spec : (object.kind == 'CronJob' ? "
            "object.spec.jobTemplate.spec.template.spec : object.spec.template.spec)")
NOT_A_MIRROR_POD = ("!(object.kind == 'Pod' && has(object.metadata.annotations) && "
                    "'kubernetes.io/config.mirror' in object.metadata.annotations)")


@dataclass(frozen=True)
class AdmissionArgs:
    mode: str
    mirror: str | None
    """Air-gap: the registry prefix every image must start with."""
    team_groups: tuple[tuple[str, tuple[str, ...]], ...]
    """Each team (its namespace) with the groups its RoleBindings may bind."""


def _pod_rules() -> list[dict]:
    return [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
             "resources": ["pods", "pods/ephemeralcontainers"]},
            {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": WORKLOADS},
            {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
             "resources": ["jobs", "cronjobs"]}]


def _every_container(condition: str) -> str:
    """CEL: `condition` (over `c`) holds for every container, init container and ephemeral container."""
    return (f"variables.pod.containers.all(c, {condition}) && "
            f"(!has(variables.pod.initContainers) || variables.pod.initContainers.all(c, {condition})) && "
            f"(!has(variables.pod.ephemeralContainers) || variables.pod.ephemeralContainers.all(c, {condition}))")


def _cel(value) -> str:
    """A JSON value as a CEL literal (lists, maps and strings read the same)."""
    return json.dumps(value, sort_keys=True)


def policies(args: AdmissionArgs, team_accounts: tuple[tuple[str, str], ...] = ()) -> list[tuple[str, dict, dict]]:
    """(name, policy spec, binding spec) of every admission policy for these facts; pure, for tests and docs."""
    out: list[tuple[str, dict, dict]] = []
    outside_cluster = {"namespaceSelector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [CLUSTER_NAMESPACE]}]}}
    teams = {"namespaceSelector": {"matchExpressions": [{"key": "plinth.dev/team", "operator": "Exists"}]}}
    if args.mirror:
        prefix = args.mirror.rstrip("/") + "/"
        out.append(("plinth-mirror-only", {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": _pod_rules()},
            "matchConditions": [{"name": "not-a-mirror-pod", "expression": NOT_A_MIRROR_POD}],
            "variables": [{"name": "pod", "expression": POD_SPEC}],
            "validations": [{
                "expression": _every_container(f"c.image.startsWith({_cel(prefix)})"),
                "message": f"plinth-mirror-only: air-gap mode: every image comes from the mirror {args.mirror}",
                "reason": "Forbidden"}],
        }, {"matchResources": outside_cluster}))
    out.append(("plinth-no-external-services", {
        "failurePolicy": "Fail",
        "matchConstraints": {"resourceRules": [
            {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["services"]},
            {"apiGroups": ["networking.k8s.io"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
             "resources": ["ingresses"]}]},
        "validations": [
            # dyn(): the API server type-checks each expression against every matched kind, and an Ingress has
            # no spec.type (the kind test short-circuits at run time, not at type checking).
            {"expression": "object.kind != 'Service' || !has(dyn(object).spec.type) || "
                           "!(dyn(object).spec.type in ['LoadBalancer', 'NodePort'])",
             "message": "plinth-no-external-services: no LoadBalancer or NodePort Service outside the platform "
                        "Gateway's namespace: expose through an HTTPRoute on the platform Gateway",
             "reason": "Forbidden"},
            {"expression": "object.kind != 'Ingress'",
             "message": "plinth-no-external-services: no Ingress: traffic enters through the platform Gateway",
             "reason": "Forbidden"}],
    }, {"matchResources": {"namespaceSelector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": [PLATFORM_NAMESPACES["gateway"]]}]}}}))
    allowlist: dict[str, list[str]] = {}
    for (namespace, kind, name) in sorted(HOST_ACCESS_ALLOWLIST):
        allowlist.setdefault(namespace, []).append(f"{kind}/{name}")
    host = ("(has(variables.pod.hostNetwork) && variables.pod.hostNetwork) || "
            "(has(variables.pod.hostPID) && variables.pod.hostPID) || "
            "(has(variables.pod.hostIPC) && variables.pod.hostIPC) || "
            "(has(variables.pod.volumes) && variables.pod.volumes.exists(v, has(v.hostPath))) || "
            "!(" + _every_container("!has(c.securityContext) || !has(c.securityContext.privileged) || "
                                    "!c.securityContext.privileged") + ")")
    # Who the object is, for the allowlist: a workload itself, or a pod's / ReplicaSet's controller.
    identity = ("(object.kind == 'Pod' || object.kind == 'ReplicaSet') ? (has(object.metadata.ownerReferences) ? "
                "object.metadata.ownerReferences.filter(r, has(r.controller) && r.controller)"
                ".map(r, r.kind + '/' + r.name) : []) : [object.kind + '/' + object.metadata.name]")
    allowed = ("request.namespace in variables.namespaces || (request.namespace in variables.allowlist && "
               "variables.identity.exists(w, variables.allowlist[request.namespace].exists(a, w == a || "
               "(a.startsWith('Deployment/') && w.startsWith('ReplicaSet/' + a.substring(11) + '-')))))")
    out.append(("plinth-host-access", {
        "failurePolicy": "Fail",
        "matchConstraints": {"resourceRules": _pod_rules()},
        "matchConditions": [{"name": "not-a-mirror-pod", "expression": NOT_A_MIRROR_POD}],
        "variables": [{"name": "pod", "expression": POD_SPEC},
                      {"name": "identity", "expression": identity},
                      {"name": "allowlist", "expression": _cel(allowlist)},
                      {"name": "namespaces", "expression": _cel(sorted(HOST_ACCESS_NAMESPACES))}],
        "validations": [{
            "expression": f"!({host}) || {allowed}",
            "message": "plinth-host-access: privileged containers, host namespaces and hostPath are for the "
                       "allowlisted platform workloads only",
            "reason": "Forbidden"}],
    }, {"matchResources": outside_cluster}))
    if args.team_groups:
        # The platform's own accounts a team's namespace binds (e.g. retraining's Sensors), by team.
        platform_accounts: dict[str, list[str]] = {}
        for team, account in team_accounts:
            platform_accounts.setdefault(team, []).append(account)
        out.append(("plinth-team-rolebindings", {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [
                {"apiGroups": ["rbac.authorization.k8s.io"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                 "resources": ["rolebindings"]}]},
            "variables": [{"name": "groups", "expression": _cel({team: list(groups)
                                                                 for team, groups in args.team_groups})},
                          {"name": "accounts", "expression": _cel(platform_accounts)}],
            "validations": [{
                "expression": "!has(object.subjects) || object.subjects.all(s, (s.kind == 'Group' && "
                              "request.namespace in variables.groups && s.name in variables.groups[request.namespace]) "
                              "|| (s.kind == 'ServiceAccount' && (!has(s.namespace) || s.namespace == "
                              "request.namespace || (request.namespace in variables.accounts && "
                              "s.namespace + '/' + s.name in variables.accounts[request.namespace]))))",
                "message": "plinth-team-rolebindings: a RoleBinding in a team's namespace binds only that team's "
                           "groups, the namespace's own service accounts and the platform's named ones",
                "reason": "Forbidden"}],
        }, {"matchResources": teams}))
        out.append(("plinth-ownership-labels", {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": _pod_rules()},
            # Objects a controller creates (a Deployment's ReplicaSets and pods) carry their template's labels.
            "matchConditions": [{"name": "not-controller-owned", "expression":
                                 "!has(object.metadata.ownerReferences) || !object.metadata.ownerReferences.exists("
                                 "r, has(r.controller) && r.controller)"}],
            "validations": [{
                "expression": "has(object.metadata.labels) && 'plinth.dev/team' in object.metadata.labels && "
                              "object.metadata.labels['plinth.dev/team'] == "
                              "namespaceObject.metadata.labels['plinth.dev/team'] && "
                              "'plinth.dev/cost-center' in object.metadata.labels && "
                              "object.metadata.labels['plinth.dev/cost-center'] != ''",
                "message": "plinth-ownership-labels: a workload in a team's namespace carries plinth.dev/team (the "
                           "namespace's team) and plinth.dev/cost-center",
                "reason": "Forbidden"}],
        }, {"matchResources": teams}))
    for _, _, binding in out:
        binding["validationActions"] = ACTIONS[args.mode]
    return out


class Admission(PlatformService):
    """plinth:admission:Admission: the ValidatingAdmissionPolicies and their bindings."""

    @classmethod
    def enabled(cls, spec: PlatformSpec) -> bool:
        return spec.admission.enabled

    @classmethod
    def block(cls, spec: PlatformSpec) -> AdmissionArgs:
        mirror = spec.airgap.mirror.registry if spec.airgap.enabled and spec.airgap.mirror else None
        # The groups as the API server names them (identity.oidc's groups prefix): what the RoleBindings bind.
        groups = tuple((team.name, tuple(sorted({spec.identity.kubernetes_group(g) for role in (
            team.groups.ml_engineer, team.groups.data_scientist, team.groups.viewer) for g in role})))
                       for team in spec.teams)
        return AdmissionArgs(spec.admission.mode, mirror, groups)

    def __init__(self, name: str, args: AdmissionArgs, ctx: PlatformContext,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:admission:Admission", name, None, opts)
        child = children(self, ctx, opts)
        for policy_name, spec, binding in policies(args, ctx.team_accounts):
            policy = k8s.admissionregistration.v1.ValidatingAdmissionPolicy(
                resource_name(name, policy_name), metadata=ctx.metadata(policy_name, COMPONENT), spec=spec, opts=child)
            k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding(
                resource_name(name, policy_name, "binding"), metadata=ctx.metadata(policy_name, COMPONENT),
                spec={"policyName": policy_name, **binding},
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[policy])))
        self.register_outputs({})
