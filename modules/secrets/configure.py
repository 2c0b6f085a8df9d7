"""The configure stage of Vault: the KV mount, Kubernetes auth, one policy and role per team, with
identity.oidc.clients.vault the oidc auth method and one sign-on role per team, with storage.objectStore each
team's object-store keys in its KV path (modules/objectstore/teamkeys.py) and, with raft snapshots on
(snapshots.py), the snapshot-only policy and role of the snapshot job.

Runs once Vault is initialised and unsealed (`vault operator init` is an operator's act; Plinth
never holds root tokens or unseal keys). The provider authenticates from the environment of
whoever runs the stage (VAULT_TOKEN of an admin, VAULT_CACERT for the platform CA), so no Vault
credential is ever in stack config or state inputs.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import pulumi
import pulumi_vault as vault

from plinth.catalog import CHARTS
from plinth.context import PlatformContext, StackSecret, resource_name
from plinth.modules.objectstore import SEED as OBJECT_STORE_SEED
from plinth.modules.objectstore.teamkeys import TeamKeys
from plinth.modules.secrets import vault_address
from plinth.modules.secrets.operator import (
    AUDIENCE,
    AUTH_MOUNT,
    KV_MOUNT,
    SERVICE_ACCOUNT,
    TeamVaultAccess,
    VaultSecretsOperator,
    store_keys,
)
from plinth.modules.secrets.snapshots import NAME as SNAPSHOT
from plinth.modules.secrets.snapshots import POLICY_HCL as SNAPSHOT_POLICY
from plinth.modules.secrets.snapshots import snapshots_on
from plinth.service import PlatformService
from plinth.spec.errors import Violation
from plinth.spec.models import Oidc, PlatformSpec

SNAPSHOT_NAMESPACE = CHARTS["vault"].namespace
TOKEN_TTL = 3600
"""Lifetime of the Vault token a team's login gets (seconds); the operator renews it."""
OIDC_MOUNT = "oidc"
"""Where people sign on (auth/oidc): the mount path is part of the UI's redirect URI."""
CLI_REDIRECT = "http://localhost:8250/oidc/callback"
"""Where `vault login -method=oidc` listens for the provider's redirect (the CLI's default port)."""
OIDC_CLIENT_SECRET = StackSecret(
    "vaultOidcClientSecret", "client secret of Vault's client at the identity provider (identity.oidc.clients.vault)")


@dataclass(frozen=True)
class VaultSignOn:
    """Vault's oidc auth method: the provider, Vault's client and each team's groups."""

    oidc: Oidc
    """identity.oidc (clients.vault set)."""
    address: str
    """Vault's address as people reach it: the UI's redirect URI is below it."""
    groups: tuple[tuple[str, tuple[str, ...]], ...]
    """(team, every group of its roles), for the teams with groups."""

    @property
    def redirect_uris(self) -> list[str]:
        return [f"{self.address}/ui/vault/auth/{OIDC_MOUNT}/oidc/callback", CLI_REDIRECT]


@dataclass(frozen=True)
class VaultTeamsArgs:
    address: str
    """Where the stage reaches Vault."""
    teams: tuple[str, ...]
    snapshots: bool = False
    """Whether the snapshot job's role is made (backups on, Vault on raft)."""
    sign_on: VaultSignOn | None = None
    """People sign on through identity.oidc (clients.vault set); None: they do not."""
    platform: str = ""
    """metadata.name: the object store's buckets and keys are named from it."""
    store_keys: tuple[TeamKeys, ...] = ()
    """The object-store keys each of `teams` gets in its KV path (storage.objectStore on); empty: none."""


def _snapshots(spec: PlatformSpec) -> bool:
    backups = spec.backups if spec.backups.active(spec.metadata.environment) else None
    return snapshots_on(backups, spec.secrets.vault)


def _signs_on(spec: PlatformSpec) -> bool:
    oidc = spec.identity.oidc
    return bool(spec.secrets.vault.enabled and oidc and oidc.clients.vault)


def team_groups(team) -> tuple[str, ...]:
    """Every group of a team's roles, each once, in the spec's order."""
    groups = team.groups
    return tuple(dict.fromkeys((*groups.ml_engineer, *groups.data_scientist, *groups.viewer)))


def vault_sign_on_rules(spec: PlatformSpec) -> Iterator[Violation]:
    """Vault's client needs Vault, and each team's groups must survive the role's comma-separated claim list."""
    oidc = spec.identity.oidc
    if not (oidc and oidc.clients.vault):
        return
    at = ("identity", "oidc", "clients", "vault")
    if not spec.secrets.vault.enabled:
        yield Violation(at, "Vault signs people on through the provider, and secrets.vault is not enabled",
                        "vault-sign-on", "enable secrets.vault, or remove clients.vault")
        return
    for index, team in enumerate(spec.teams):
        for role, key in (("ml_engineer", "mlEngineer"), ("data_scientist", "dataScientist"), ("viewer", "viewer")):
            for position, group in enumerate(getattr(team.groups, role)):
                if "," in group:
                    yield Violation(("teams", index, "groups", key, position), f"group {group!r} has a comma, and "
                                    "Vault's sign-on role binds a team's groups as one comma-separated list",
                                    "vault-sign-on-group", "name the group without a comma at the provider, or "
                                    "remove identity.oidc.clients.vault")


class VaultTeams(PlatformService):
    """Vault's side of every team's access (plinth:secrets:VaultTeams)."""

    secrets = (OIDC_CLIENT_SECRET, OBJECT_STORE_SEED)

    @classmethod
    def enabled(cls, spec: PlatformSpec) -> bool:
        # Vault's side of what the operator's VaultAuths, people's sign-on and the snapshot job use.
        return VaultSecretsOperator.enabled(spec) or _signs_on(spec) or _snapshots(spec)

    @classmethod
    def block(cls, spec: PlatformSpec) -> VaultTeamsArgs:
        address = spec.secrets.vault.address or vault_address()
        teams = tuple(t.name for t in spec.teams) if VaultSecretsOperator.enabled(spec) else ()
        sign_on = None
        if _signs_on(spec):
            groups = tuple((t.name, team_groups(t)) for t in spec.teams if team_groups(t))
            sign_on = VaultSignOn(spec.identity.oidc, address, groups)  # type: ignore[arg-type]  # _signs_on
        return VaultTeamsArgs(address, teams, _snapshots(spec), sign_on, spec.metadata.name, store_keys(spec))

    @classmethod
    def needed_secrets(cls, spec: PlatformSpec) -> tuple[StackSecret, ...]:
        # The team keys are derived here from the seed, as the object store derives them (the same value as the
        # configured stack's).
        return (*((OIDC_CLIENT_SECRET,) if _signs_on(spec) else ()),
                *((OBJECT_STORE_SEED,) if store_keys(spec) else ()))

    @classmethod
    def rules(cls, spec: PlatformSpec) -> Iterator[Violation]:
        return vault_sign_on_rules(spec)

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
        # One policy per team, shared by its ServiceAccount's role and its people's sign-on role.
        signing_on = tuple(team for team, _ in args.sign_on.groups) if args.sign_on else ()
        policies = {}
        for team in dict.fromkeys((*args.teams, *signing_on)):
            access = TeamVaultAccess(team)
            policies[team] = vault.Policy(resource_name(name, access.policy), name=access.policy,
                                          policy=access.policy_hcl(), opts=child)
        for team in args.teams:
            access, policy = TeamVaultAccess(team), policies[team]
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
        if args.store_keys:
            self._store_keys(name, args, kv, ctx, child)
        if args.sign_on:
            self._sign_on(name, args.sign_on, policies, ctx, pulumi.ResourceOptions.merge(
                child, pulumi.ResourceOptions(depends_on=[kv])))
        if args.snapshots:
            # Read a raft snapshot, nothing else; the job's ServiceAccount in Vault's namespace, no glob.
            policy = vault.Policy(resource_name(name, SNAPSHOT), name=SNAPSHOT, policy=SNAPSHOT_POLICY, opts=child)
            vault.kubernetes.AuthBackendRole(
                resource_name(name, f"{SNAPSHOT}-role"), backend=auth.path, role_name=SNAPSHOT,
                bound_service_account_names=[SNAPSHOT], bound_service_account_namespaces=[SNAPSHOT_NAMESPACE],
                audience=AUDIENCE, token_policies=[policy.name], token_ttl=600, token_max_ttl=1800,
                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[config])))
        self.register_outputs({})

    @staticmethod
    def _store_keys(name: str, args: VaultTeamsArgs, kv: vault.Mount, ctx: PlatformContext,
                    opts: pulumi.ResourceOptions) -> None:
        """Each team's object-store keys in its own KV path (`teams/<team>/<kind>`), derived from the seed inside
        a secret Output: the plan and the state show `(secret)`. Only the team's policy (and the admin running
        this stage) reads them; the secrets operator copies them into the team's namespace."""
        seed = ctx.secrets.object_store_seed
        if seed is None:
            raise ValueError("the object store's team keys need the stack secret plinth:objectStoreSeed in the "
                             "configure stage (the same value as the configured stack's)")
        platform = args.platform
        for team in args.teams:
            for keys in args.store_keys:
                data = pulumi.Output.secret(seed).apply(functools.partial(keys.data_json, platform, team))
                vault.kv.SecretV2(resource_name(name, team, keys.kv_name), mount=kv.path, name=keys.path(team),
                                  data_json=data, opts=opts)

    @staticmethod
    def _sign_on(name: str, sign_on: VaultSignOn, policies: dict, ctx: PlatformContext,
                 opts: pulumi.ResourceOptions) -> None:
        """The oidc auth method (no default role: people name their team's) and one role per team, bound to
        Vault's client and the team's groups, with the team's policy. No platform-admin role: Plinth defines
        no Vault admin policy (administration stays with the operator's own token)."""
        secret = ctx.secrets.vault_oidc_client_secret
        if secret is None:
            raise ValueError("Vault's sign-on needs the stack secret plinth:vaultOidcClientSecret")
        oidc = sign_on.oidc
        backend = vault.jwt.AuthBackend(
            resource_name(name, OIDC_MOUNT), type="oidc", path=OIDC_MOUNT, oidc_discovery_url=oidc.issuer,
            oidc_discovery_ca_pem=oidc.certificate_authority, oidc_client_id=oidc.clients.vault,
            oidc_client_secret=pulumi.Output.secret(secret),
            description="People of the identity provider: one role per team (team-<team>)", opts=opts)
        # Vault always asks for openid; the others put the user and groups claims in the ID token.
        scopes = [scope for scope in oidc.scopes if scope != "openid"]
        for team, groups in sign_on.groups:
            access = TeamVaultAccess(team)
            vault.jwt.AuthBackendRole(
                resource_name(name, OIDC_MOUNT, access.role), backend=backend.path, role_name=access.role,
                role_type="oidc", bound_audiences=[oidc.clients.vault], user_claim=oidc.username_claim,
                groups_claim=oidc.groups_claim, oidc_scopes=scopes,
                # The provider's group names, exactly (no prefix: that is the Kubernetes API's naming).
                bound_claims={oidc.groups_claim: ",".join(groups)}, bound_claims_type="string",
                allowed_redirect_uris=sign_on.redirect_uris, token_policies=[policies[team].name],
                token_ttl=TOKEN_TTL, token_max_ttl=4 * TOKEN_TTL, opts=opts)
