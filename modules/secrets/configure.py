"""The configure stage of Vault: the KV mount, Kubernetes auth, one policy and role per team and, with raft
snapshots on (snapshots.py), the snapshot-only policy and role of the snapshot job.

Runs once Vault is initialised and unsealed (`vault operator init` is an operator's act; Plinth
never holds root tokens or unseal keys). The provider authenticates from the environment of
whoever runs the stage (VAULT_TOKEN of an admin, VAULT_CACERT for the platform CA), so no Vault
credential is ever in stack config or state inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_vault as vault

from plinth.catalog import CHARTS
from plinth.context import PlatformContext, resource_name
from plinth.modules.secrets import vault_address
from plinth.modules.secrets.operator import (
    AUDIENCE,
    AUTH_MOUNT,
    KV_MOUNT,
    SERVICE_ACCOUNT,
    TeamVaultAccess,
    VaultSecretsOperator,
)
from plinth.modules.secrets.snapshots import NAME as SNAPSHOT
from plinth.modules.secrets.snapshots import POLICY_HCL as SNAPSHOT_POLICY
from plinth.modules.secrets.snapshots import snapshots_on
from plinth.service import PlatformService
from plinth.spec.models import PlatformSpec

SNAPSHOT_NAMESPACE = CHARTS["vault"].namespace
TOKEN_TTL = 3600
"""Lifetime of the Vault token a team's login gets (seconds); the operator renews it."""


@dataclass(frozen=True)
class VaultTeamsArgs:
    address: str
    """Where the stage reaches Vault."""
    teams: tuple[str, ...]
    snapshots: bool = False
    """Whether the snapshot job's role is made (backups on, Vault on raft)."""


def _snapshots(spec: PlatformSpec) -> bool:
    backups = spec.backups if spec.backups.active(spec.metadata.environment) else None
    return snapshots_on(backups, spec.secrets.vault)


class VaultTeams(PlatformService):
    """Vault's side of every team's access (plinth:secrets:VaultTeams)."""

    @classmethod
    def enabled(cls, spec: PlatformSpec) -> bool:
        # Vault's side of what the operator's VaultAuths and the snapshot job use.
        return VaultSecretsOperator.enabled(spec) or _snapshots(spec)

    @classmethod
    def block(cls, spec: PlatformSpec) -> VaultTeamsArgs:
        teams = tuple(t.name for t in spec.teams) if VaultSecretsOperator.enabled(spec) else ()
        return VaultTeamsArgs(spec.secrets.vault.address or vault_address(), teams, _snapshots(spec))

    def __init__(self, name: str, args: VaultTeamsArgs, ctx: PlatformContext,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:secrets:VaultTeams", name, None, opts)
        provider = vault.Provider(name, address=args.address, skip_child_token=False,
                                  opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        kv = vault.Mount(resource_name(name, "kv"), path=KV_MOUNT, type="kv", options={"version": "2"},
                         description="Team secrets: one path per team (teams/<team>/...)", opts=child)
        auth = vault.AuthBackend(resource_name(name, "kubernetes"), type="kubernetes", path=AUTH_MOUNT,
                                 description="Kubernetes ServiceAccounts of this platform", opts=child)
        # In-cluster Vault reviews tokens with its own ServiceAccount (the chart binds auth-delegator).
        config = vault.kubernetes.AuthBackendConfig(
            resource_name(name, "kubernetes-config"), backend=auth.path,
            kubernetes_host="https://kubernetes.default.svc", disable_local_ca_jwt=False, opts=child)
        for team in args.teams:
            access = TeamVaultAccess(team)
            policy = vault.Policy(resource_name(name, access.policy), name=access.policy,
                                  policy=access.policy_hcl(), opts=child)
            vault.kubernetes.AuthBackendRole(
                resource_name(name, access.role),
                backend=auth.path,
                role_name=access.role,
                # Exactly one ServiceAccount in exactly one namespace: never a glob.
                bound_service_account_names=[SERVICE_ACCOUNT],
                bound_service_account_namespaces=[team],
                audience=AUDIENCE,
                token_policies=[policy.name],
                token_ttl=TOKEN_TTL,
                token_max_ttl=4 * TOKEN_TTL,
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[config, kv])),
            )
        if args.snapshots:
            # Read a raft snapshot, nothing else; the job's ServiceAccount in Vault's namespace, no glob.
            policy = vault.Policy(resource_name(name, SNAPSHOT), name=SNAPSHOT, policy=SNAPSHOT_POLICY, opts=child)
            vault.kubernetes.AuthBackendRole(
                resource_name(name, f"{SNAPSHOT}-role"), backend=auth.path, role_name=SNAPSHOT,
                bound_service_account_names=[SNAPSHOT], bound_service_account_namespaces=[SNAPSHOT_NAMESPACE],
                audience=AUDIENCE, token_policies=[policy.name], token_ttl=600, token_max_ttl=1800,
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[config])))
        self.register_outputs({})
