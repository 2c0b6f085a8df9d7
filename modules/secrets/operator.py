"""Secrets to workloads: the Vault Secrets Operator, and each team's own door into Vault.

Per team (by construction, team A cannot read team B's secrets):
- Kubernetes side (this module): a ServiceAccount `vault-secrets` in the team namespace and a
  `VaultAuth` named `vault` there that logs in with that ServiceAccount to the team's role,
  usable from the team namespace only (`allowedNamespaces`).
- Vault side (the configure stage, `plinth.configure`): the role `team-<name>` bound to exactly
  that ServiceAccount in exactly that namespace, with one policy granting `teams/<name>/*` only.
Both sides take their names from `TeamVaultAccess`, so they cannot drift apart.

With storage.objectStore, each team's object-store keys take the same door: the configure stage writes them
into the team's path, a `VaultStaticSecret` per kind of key (modules/objectstore/teamkeys.py) copies them into
a Secret of the team's namespace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from plinth.context import PlatformContext, resource_name
from plinth.modules.certs import certificate
from plinth.modules.helm import HelmService, image_values
from plinth.modules.objectstore import ObjectStore
from plinth.modules.objectstore.teamkeys import REFRESH, TeamKeys, team_keys
from plinth.modules.secrets import vault_address
from plinth.securitycontext import restricted_container, restricted_pod
from plinth.spec import models
from plinth.spec.models import PlatformSpec, Team

KV_MOUNT = "teams"
"""The KV v2 mount holding every team's secrets, one path per team."""
AUTH_MOUNT = "kubernetes"
"""Vault's Kubernetes auth mount."""
AUDIENCE = "vault"
"""Audience of the ServiceAccount tokens the operator presents; the Vault roles require it."""
SERVICE_ACCOUNT = "vault-secrets"
"""The ServiceAccount in each team namespace that the team's Vault role is bound to."""
VAULT_AUTH = "vault"
"""Name of the VaultAuth in each team namespace (`vaultAuthRef: vault` in a VaultStaticSecret)."""
CA_SECRET = "vault-ca"
"""Secret (key ca.crt) in the operator's namespace: the platform CA the connection to Vault trusts."""
CONNECTION = "default"
"""The chart's VaultConnection in the operator's namespace; every team's VaultAuth uses it."""


@dataclass(frozen=True)
class TeamVaultAccess:
    """The names both sides of one team's Vault access agree on."""

    team: str

    @property
    def role(self) -> str:
        return f"team-{self.team}"

    @property
    def policy(self) -> str:
        return f"team-{self.team}"

    @property
    def path(self) -> str:
        """The team's KV path below the mount."""
        return f"{KV_MOUNT}/{self.team}"

    def policy_hcl(self) -> str:
        """Read the team's KV v2 path and nothing else (data and metadata below `teams/<team>/`)."""
        return (f'path "{KV_MOUNT}/data/{self.team}/*" {{\n  capabilities = ["read"]\n}}\n'
                f'path "{KV_MOUNT}/metadata/{self.team}/*" {{\n  capabilities = ["read", "list"]\n}}\n')


@dataclass(frozen=True)
class SecretsOperatorArgs:
    vault: models.Vault
    """secrets.vault."""
    store_keys: tuple[TeamKeys, ...] = ()
    """The object-store keys every team gets from its KV path (storage.objectStore on); empty: none."""


def store_keys(spec: PlatformSpec) -> tuple[TeamKeys, ...]:
    """The object store's team keys that travel through Vault: with the store, the operator and teams."""
    vault = spec.secrets.vault
    if not (ObjectStore.enabled(spec) and vault.enabled and vault.secrets_operator and spec.teams):
        return ()
    return team_keys(spec.pipelines.argo.enabled)


class VaultSecretsOperator(HelmService):
    """HashiCorp Vault Secrets Operator (plinth:secrets:VaultSecretsOperator)."""

    type_token = "plinth:secrets:VaultSecretsOperator"
    chart_key = "vault-secrets-operator"
    spec_path = ("secrets", "vault")
    capability = "secrets-operator"
    capability_fix = "enable secrets.vault with secretsOperator: true (its default)"

    @classmethod
    def enabled(cls, spec: PlatformSpec) -> bool:
        vault = spec.secrets.vault
        return vault.enabled and vault.secrets_operator

    @classmethod
    def block(cls, spec: PlatformSpec) -> SecretsOperatorArgs:
        return SecretsOperatorArgs(spec.secrets.vault, store_keys(spec))

    @classmethod
    def user_values(cls, block: SecretsOperatorArgs) -> dict:
        return {}  # `secrets.vault.values` are Vault's

    @classmethod
    def owned_values(cls, block: SecretsOperatorArgs, ctx: PlatformContext) -> dict:
        manager, proxy = cls.chart().images
        return {
            "controller": {
                "replicas": 2 if ctx.prod_like else 1,
                # One controller keeps running through a drain. The chart renders both bounds unless one is
                # empty, and its maxUnavailable "0" would block every drain.
                "podDisruptionBudget": {"enabled": ctx.prod_like, "minAvailable": "1", "maxUnavailable": ""},
                "imagePullSecrets": [{"name": s} for s in ctx.image_pull_secrets],
                "manager": {"image": image_values(manager, ctx)},
                "kubeRbacProxy": {"image": image_values(proxy, ctx)},
                # Pod Security `restricted` (the chart's defaults stop at runAsNonRoot).
                "podSecurityContext": restricted_pod(),
                "securityContext": restricted_container(read_only_root=True),
            },
            "defaultVaultConnection": {"enabled": True, "address": vault_address(), "caCertSecret": CA_SECRET,
                                       "skipTLSVerify": False},
            # No default auth: a team's secrets use the team's own VaultAuth, never a shared one.
            "defaultAuthMethod": {"enabled": False},
            "telemetry": {"serviceMonitor": {"enabled": ctx.monitoring}},
        }

    def prerequisites(self, name: str, block: SecretsOperatorArgs, ctx: PlatformContext,
                      opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        # A client certificate from the platform CA: its Secret carries ca.crt, the CA Vault's listener uses.
        ns = self.chart().namespace
        return [certificate(resource_name(name, "vault-ca"), ctx.metadata(CA_SECRET, name, namespace=ns),
                            CA_SECRET, [f"{self.chart().name}.{ns}.svc"], ["client auth"], opts)]

    def team_objects(self, name: str, block: SecretsOperatorArgs, ctx: PlatformContext, team: Team,
                     opts: pulumi.ResourceOptions) -> None:
        access = TeamVaultAccess(team.name)
        meta: dict[str, Any] = dict(namespace=team.name, team=team.name, cost_center=team.cost_center)
        account = k8s.core.v1.ServiceAccount(
            resource_name(name, team.name, SERVICE_ACCOUNT),
            metadata=ctx.metadata(SERVICE_ACCOUNT, name, **meta),
            automount_service_account_token=False,
            opts=opts,
        )
        auth = k8s.apiextensions.CustomResource(
            resource_name(name, team.name, "vault-auth"),
            api_version="secrets.hashicorp.com/v1beta1",
            kind="VaultAuth",
            metadata=ctx.metadata(VAULT_AUTH, name, **meta),
            spec={
                "vaultConnectionRef": f"{self.chart().namespace}/{CONNECTION}",
                "method": "kubernetes",
                "mount": AUTH_MOUNT,
                "kubernetes": {"role": access.role, "serviceAccount": SERVICE_ACCOUNT, "audiences": [AUDIENCE]},
                "allowedNamespaces": [team.name],
            },
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[account, self.release])),
        )
        for keys in block.store_keys:
            # The team's own keys from its own path, through its own VaultAuth (same namespace). Until the
            # configure stage has written them, the operator retries and the Secret does not exist yet.
            k8s.apiextensions.CustomResource(
                resource_name(name, team.name, keys.secret),
                api_version="secrets.hashicorp.com/v1beta1",
                kind="VaultStaticSecret",
                metadata=ctx.metadata(keys.secret, name, **meta),
                spec={
                    "vaultAuthRef": VAULT_AUTH,
                    "mount": KV_MOUNT,
                    "type": "kv-v2",
                    "path": keys.path(team.name),
                    "refreshAfter": REFRESH,
                    # Only the secret's fields: no `_raw` copy of Vault's response (not an environment name).
                    "destination": {"name": keys.secret, "create": True, "transformation": {"excludeRaw": True}},
                },
                opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[auth])),
            )
