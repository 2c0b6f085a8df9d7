"""Tenancy: one namespace per team with RBAC, quota, limits and default-deny networking."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from plinth.context import PULL_SECRET, PlatformContext, resource_name
from plinth.modules.cluster.signon import (
    AUTHENTICATION_KEY,
    AUTHENTICATION_NAMESPACE,
    authentication_config_map,
    authentication_yaml,
)
from plinth.modules.tenancy.roles import PLATFORM_ADMIN, TEAM_ROLES, platform_admin_name, policy_rules
from plinth.objects import children, network_policy, peer_policy, pull_secret
from plinth.objects import namespace as platform_namespace
from plinth.service import Peer
from plinth.spec import models
from plinth.targets import WORKLOAD_SERVICE_ACCOUNT

COMPONENT = "tenancy"


@dataclass(frozen=True)
class TenancyArgs:
    teams: tuple
    """The spec's teams (plinth.spec.models.Team)."""
    platform_admin_group: str
    """Group bound to the plinth:<platform>:platform-admin ClusterRole."""
    ingress_from: tuple[Peer, ...] = ()
    """Platform namespaces allowed to reach team pods (monitoring scrapes, the model gateway)."""
    egress_to: tuple[Peer, ...] = ()
    """Platform services team pods may reach (Vault, Feast)."""
    identity: models.SignOn = models.SignOn()
    """identity: with identity.oidc, the Kubernetes API names the provider's groups with its groups prefix, and
    every binding here names them so."""

    def admin_groups(self) -> list[str]:
        """The platform admins' groups: rbac.platformAdminGroup as the provider's group (prefixed) and, unprefixed,
        as the group the cluster's other authenticators map admins to (the eks access entry, a break-glass client
        certificate)."""
        return list(dict.fromkeys((self.platform_admin_group,
                                   self.identity.kubernetes_group(self.platform_admin_group))))


class Tenancy(pulumi.ComponentResource):
    """The platform-admin role plus one Team component per spec team."""

    namespaces: dict[str, pulumi.Output[str]]
    teams: dict[str, Team]
    """Each team's component, by team name: services wait on it before adding objects to the namespace."""

    def __init__(self, name: str, args: TenancyArgs, ctx: PlatformContext,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:tenancy:Tenancy", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=ctx.provider)
        admin = platform_admin_name(ctx.platform)
        admin_role = k8s.rbac.v1.ClusterRole(
            resource_name(name, "platform-admin"),
            metadata=ctx.metadata(admin, COMPONENT),
            rules=policy_rules(PLATFORM_ADMIN),
            opts=child,
        )
        k8s.rbac.v1.ClusterRoleBinding(
            resource_name(name, "platform-admin"),
            metadata=ctx.metadata(admin, COMPONENT),
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": admin},
            subjects=[{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}
                      for group in args.admin_groups()],
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[admin_role])),
        )
        oidc = args.identity.oidc
        if oidc and ctx.target.type == "existing":
            # The file the API server runs with (--authentication-config), kept where the operator copies it from.
            k8s.core.v1.ConfigMap(
                resource_name(name, "authentication"),
                metadata=ctx.metadata(authentication_config_map(ctx.platform), COMPONENT,
                                      namespace=AUTHENTICATION_NAMESPACE),
                data={AUTHENTICATION_KEY: authentication_yaml(oidc, ctx.kubernetes_version)},
                opts=child,
            )
        teams = [Team(resource_name(name, team.name), team, args, ctx, pulumi.ResourceOptions(parent=self))
                 for team in args.teams]
        self.teams = {team.name: t for team, t in zip(args.teams, teams)}
        self.namespaces = {team.name: t.namespace for team, t in zip(args.teams, teams)}
        self.register_outputs({"namespaces": self.namespaces})


class Team(pulumi.ComponentResource):
    """One team's namespace and everything that makes it a governed tenant."""

    namespace: pulumi.Output[str]

    def __init__(self, name: str, team: models.Team, args: TenancyArgs, ctx: PlatformContext,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:tenancy:Team", name, None, opts)
        ns_name = team.name

        def meta(obj_name: str, **extra) -> dict:
            return ctx.metadata(obj_name, COMPONENT, namespace=ns_name, team=team.name,
                                cost_center=team.cost_center, **extra)

        namespace = platform_namespace(name, ns_name, COMPONENT, ctx, children(self, ctx), team=team.name,
                                       cost_center=team.cost_center)
        self.namespace = namespace.metadata.apply(lambda m: m["name"])
        # Everything else lives in the namespace, so it waits for it.
        child = pulumi.ResourceOptions(parent=self, provider=ctx.provider, depends_on=[namespace])

        pulls = pull_secret(name, meta(PULL_SECRET), ctx, child)

        k8s.core.v1.ServiceAccount(
            resource_name(name, "workloads"),
            # On a cloud target the team's model servers read their model repositories as this account.
            metadata=meta(WORKLOAD_SERVICE_ACCOUNT,
                          annotations=ctx.target.annotations(ns_name, WORKLOAD_SERVICE_ACCOUNT)),
            automount_service_account_token=False,
            image_pull_secrets=[{"name": PULL_SECRET}] if pulls else None,
            opts=child,
        )

        groups_by_role = {
            "viewer": team.groups.viewer,
            "data-scientist": team.groups.data_scientist,
            "ml-engineer": team.groups.ml_engineer,
        }
        for role, rules in TEAM_ROLES.items():
            role_name = f"plinth:{role}"
            # A role only where the team names groups for it: no Role bound to no one.
            if groups_by_role[role]:
                k8s.rbac.v1.Role(resource_name(name, role), metadata=meta(role_name), rules=policy_rules(rules),
                                 opts=child)
                k8s.rbac.v1.RoleBinding(
                    resource_name(name, role),
                    metadata=meta(role_name),
                    role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role_name},
                    subjects=[{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                               "name": args.identity.kubernetes_group(group)} for group in groups_by_role[role]],
                    opts=child,
                )

        quota = team.quota
        k8s.core.v1.ResourceQuota(
            resource_name(name, "quota"),
            metadata=meta("team-quota"),
            spec={"hard": {
                "pods": str(quota.pods),
                "requests.cpu": quota.cpu,
                "requests.memory": quota.memory,
                "requests.nvidia.com/gpu": str(quota.gpu),
                "requests.storage": quota.storage,
            }},
            opts=child,
        )
        defaults = team.container_defaults
        k8s.core.v1.LimitRange(
            resource_name(name, "limits"),
            metadata=meta("container-defaults"),
            spec={"limits": [{
                "type": "Container",
                "default": {"cpu": defaults.cpu_limit, "memory": defaults.memory_limit},
                "defaultRequest": {"cpu": defaults.cpu_request, "memory": defaults.memory_request},
            }]},
            opts=child,
        )
        for kind, policy_name, policy_spec in network_policies(args, ctx):
            network_policy(kind, resource_name(name, policy_name), policy_spec, meta(policy_name), ctx, child)
        self.register_outputs({"namespace": self.namespace})


def network_policies(args: TenancyArgs, ctx: PlatformContext) -> list[tuple[str, str, dict]]:
    """Default-deny plus only the allows the platform needs, as (kind, name, spec)."""
    policies: list[tuple[str, str, dict] | None] = [
        ("NetworkPolicy", "default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        ("NetworkPolicy", "allow-same-namespace", {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {}}]}],
            "egress": [{"to": [{"podSelector": {}}]}],
        }),
        ("NetworkPolicy", "allow-dns", {
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{
                "to": [{
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
                }],
                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
            }],
        }),
    ]
    policies += [peer_policy("Ingress", peer, ctx) for peer in args.ingress_from]
    policies += [peer_policy("Egress", peer, ctx) for peer in args.egress_to]
    return [p for p in policies if p]

