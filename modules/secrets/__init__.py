"""Secrets: HashiCorp Vault (raft HA in prod), TLS from the platform CA, the agent injector, telemetry;
the Vault Secrets Operator and each team's door into Vault (operator.py)."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import CHARTS
from plinth.context import PlatformContext, resource_name
from plinth.modules.backups.alerts import alert_rule, cronjob_rules
from plinth.modules.certs import certificate
from plinth.modules.helm import HelmService, image_values
from plinth.modules.secrets.snapshots import NAME as SNAPSHOT
from plinth.modules.secrets.snapshots import snapshot_objects, snapshots_on
from plinth.securitycontext import restricted_container, restricted_pod
from plinth.service import Need, Peer
from plinth.spec import models
from plinth.targets import Identity, TargetFacts, vault_uses_target_key

TLS_SECRET = "vault-server-tls"
TLS_DIR = f"/vault/userconfig/{TLS_SECRET}"
API_PORT = 8200
METRICS_PORT = 8202
"""Vault's metrics listener: unauthenticated /v1/sys/metrics, reachable from the monitoring namespace only."""
METRICS_SERVICE = "vault-metrics"
TRANSIT_TOKEN_SECRET = "vault-transit-token"
"""transit auto-unseal: a Secret you create (key `token`) holding the token for the unsealing Vault."""

ALERTS = [
    {"alert": "VaultSealed", "expr": "vault_core_unsealed == 0", "for": "5m",
     "labels": {"severity": "critical"},
     "annotations": {"summary": "Vault {{ $labels.pod }} is sealed: secrets cannot be read"}},
    {"alert": "VaultLeaderLost", "expr": "max(vault_core_active) == 0", "for": "2m",
     "labels": {"severity": "critical"},
     "annotations": {"summary": "No active Vault server: the raft cluster has no leader"}},
]


def _seal(unseal, target: TargetFacts) -> str:
    """The seal stanza for auto-unseal; credentials come from the platform (IRSA, workload identity, a Secret).
    On eks and gke without a key of its own, Vault uses the key the target creates (and its region)."""
    key = unseal.key or target.unseal_key
    if unseal.type == "awskms":
        region = f'  region = "{target.region}"\n' if target.type == "eks" else ""
        return f'seal "awskms" {{\n  kms_key_id = "{key}"\n{region}}}\n'
    if unseal.type == "gcpckms":
        # projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>
        parts = key.split("/")  # type: ignore[union-attr]  # a gcpckms seal always has a key (validated)
        fields = dict(zip(parts[::2], parts[1::2]))
        return (f'seal "gcpckms" {{\n  project = "{fields.get("projects", "")}"\n  region = '
                f'"{fields.get("locations", "")}"\n  key_ring = "{fields.get("keyRings", "")}"\n'
                f'  crypto_key = "{fields.get("cryptoKeys", "")}"\n}}\n')
    if unseal.type == "transit":
        return (f'seal "transit" {{\n  address = "{unseal.address}"\n  key_name = "{unseal.key}"\n'
                f'  mount_path = "transit/"\n  tls_ca_cert = "{TLS_DIR}/ca.crt"\n}}\n')
    return ""


def server_config(block: models.Vault, service: str, namespace: str, target: TargetFacts = TargetFacts()) -> str:
    """Vault's HCL: TLS listener, raft (HA) or file storage, Kubernetes service registration, telemetry."""
    tls = f'  tls_cert_file = "{TLS_DIR}/tls.crt"\n  tls_key_file = "{TLS_DIR}/tls.key"\n'
    # The API listener (teams, the secrets operator) answers /v1/sys/metrics only to a token allowed to read
    # it; Prometheus scrapes the metrics listener, which only the monitoring namespace may reach.
    listener = (f'listener "tcp" {{\n  address = "[::]:{API_PORT}"\n  cluster_address = "[::]:8201"\n{tls}}}\n'
                f'listener "tcp" {{\n  address = "[::]:{METRICS_PORT}"\n{tls}'
                f'  telemetry {{\n    unauthenticated_metrics_access = "true"\n  }}\n}}\n')
    if block.ha:
        joins = "".join(
            f'  retry_join {{\n    leader_api_addr = "https://{service}-{i}.{service}-internal:8200"\n'
            f'    leader_ca_cert_file = "{TLS_DIR}/ca.crt"\n  }}\n' for i in range(block.replicas))
        storage = f'storage "raft" {{\n  path = "/vault/data"\n{joins}}}\n'
    else:
        storage = 'storage "file" {\n  path = "/vault/data"\n}\n'
    return (f"ui = true\n{listener}{storage}service_registration \"kubernetes\" {{}}\n"
            f'telemetry {{\n  prometheus_retention_time = "30s"\n  disable_hostname = true\n}}\n'
            + _seal(block.auto_unseal, target))


VAULT_UID, VAULT_GID = 100, 1000
"""The vault and vault-k8s images' user and group (the chart's server.uid/gid, injector.uid/gid defaults)."""
RESTRICTED_POD = restricted_pod(VAULT_UID, VAULT_GID, VAULT_GID)
RESTRICTED_CONTAINER = restricted_container()
"""What Pod Security `restricted` (the vault namespace's level) asks of a pod and its containers; the chart's
defaults lack the seccomp profile and, on the server, the dropped capabilities (the chart sets SKIP_SETCAP and
disable_mlock, so the server needs no IPC_LOCK)."""


def vault_address() -> str:
    """Vault's API in the cluster (TLS from the platform CA: its listener's certificate)."""
    vault = CHARTS["vault"]
    return f"https://{vault.name}.{vault.namespace}.svc:{API_PORT}"


SERVICE_ACCOUNT = (CHARTS["vault"].namespace, "vault")
"""The server's ServiceAccount (the chart's default name, kept by Plinth)."""


class Vault(HelmService):
    """HashiCorp Vault (plinth:secrets:Vault)."""

    type_token = "plinth:secrets:Vault"
    chart_key = "vault"
    spec_path = ("secrets", "vault")
    # A sealed Vault is never ready until an operator (or auto-unseal) unseals it.
    awaits_readiness = False

    @classmethod
    def endpoints(cls, block: models.Vault, ctx: PlatformContext) -> dict[str, str]:
        return {"address": vault_address()}

    @classmethod
    def identities(cls, spec) -> tuple[Identity, ...]:
        return (Identity("vault", *SERVICE_ACCOUNT, "unseal"),) if vault_uses_target_key(spec) else ()

    @classmethod
    def needs(cls, spec) -> tuple[Need, ...]:
        if not spec.secrets.vault.enabled:
            return ()
        return (Need("cert-manager", ("secrets", "vault", "enabled"),
                     "Vault's listener takes its TLS certificate from cert-manager", "vault"),)

    @classmethod
    def ingress(cls, block, ctx: PlatformContext) -> tuple[Peer, ...]:
        peers = [cls.webhook(8080)]  # the agent injector
        if block.secrets_operator:
            peers.append(Peer("secrets-operator", CHARTS["vault-secrets-operator"].namespace, (API_PORT,)))
        return tuple(peers)

    @classmethod
    def owned_values(cls, block: models.Vault, ctx: PlatformContext) -> dict:
        chart = cls.chart()
        server, injector = chart.images
        config = server_config(block, chart.name, chart.namespace, ctx.target)
        mode = ({"ha": {"enabled": True, "replicas": block.replicas,
                        "raft": {"enabled": True, "setNodeId": True, "config": config}},
                 "standalone": {"enabled": False}} if block.ha else
                {"ha": {"enabled": False}, "standalone": {"enabled": True, "config": config}})
        env = {"VAULT_CACERT": f"{TLS_DIR}/ca.crt"}
        secret_env = ([{"envName": "VAULT_TRANSIT_SEAL_TOKEN", "secretName": TRANSIT_TOKEN_SECRET,
                        "secretKey": "token"}] if block.auto_unseal.type == "transit" else [])
        # On a cloud target: the identity that may use the unseal key.
        identity = ctx.target.annotations(*SERVICE_ACCOUNT)
        return {
            # The chart's ServiceMonitor scrapes the API listener; Plinth's (objects) the metrics listener.
            "global": {"tlsDisable": False, "imagePullSecrets": [{"name": s} for s in ctx.image_pull_secrets],
                       "serverTelemetry": {"prometheusOperator": False}},
            "server": {
                **({"serviceAccount": {"annotations": identity}} if identity else {}),
                "image": image_values(server, ctx),
                "extraVolumes": [{"type": "secret", "name": TLS_SECRET}],
                "extraEnvironmentVars": env,
                "extraSecretEnvironmentVars": secret_env,
                "statefulSet": {"securityContext": {"pod": RESTRICTED_POD, "container": RESTRICTED_CONTAINER}},
                **mode,
            },
            "injector": {
                "enabled": True,
                "replicas": 2 if ctx.prod_like else 1,
                # The injector's webhook admits pods: one replica stays up through a drain.
                "podDisruptionBudget": {"maxUnavailable": 1} if ctx.prod_like else {},
                "securityContext": {"pod": RESTRICTED_POD, "container": RESTRICTED_CONTAINER},
                "image": image_values(injector, ctx),
                "agentImage": image_values(server, ctx),
                "metrics": {"enabled": ctx.monitoring},
            },
            "serverTelemetry": {
                "serviceMonitor": {"enabled": False},
                "prometheusRules": {"enabled": ctx.monitoring, "rules": ALERTS if ctx.monitoring else []},
            },
        }

    @classmethod
    def tenant_egress(cls, block: models.Vault, ctx: PlatformContext) -> tuple[Peer, ...]:
        return (Peer("vault", cls.chart().namespace, (API_PORT,)),)

    def objects(self, name: str, block: models.Vault, ctx: PlatformContext, opts: pulumi.ResourceOptions) -> None:
        if snapshots_on(ctx.backups, block):
            from plinth.modules.secrets.operator import AUDIENCE, AUTH_MOUNT

            snapshot_objects(name, ctx, self.chart().images[0], TLS_SECRET, VAULT_GID, API_PORT,
                             AUTH_MOUNT, AUDIENCE, opts)
        if not ctx.monitoring:
            return
        chart = self.chart()
        if snapshots_on(ctx.backups, block):
            alert_rule(resource_name(name, "snapshot-alerts"), ctx.metadata(f"{SNAPSHOT}-backups", name,
                                                                            namespace=chart.namespace),
                       "plinth-backups-vault", cronjob_rules("VaultSnapshot", "Vault raft snapshot", chart.namespace,
                                                             SNAPSHOT, ctx.backups.vault.schedule), opts)
        # Every server, so VaultSealed sees each one (the chart's own monitor scrapes the leader only).
        pods = {"app.kubernetes.io/name": chart.name, "app.kubernetes.io/instance": chart.name, "component": "server"}
        meta = ctx.metadata(METRICS_SERVICE, name, namespace=chart.namespace, labels={"plinth.dev/metrics": "vault"})
        service = k8s.core.v1.Service(
            resource_name(name, "metrics"), metadata=meta,
            spec={"type": "ClusterIP", "selector": pods, "ports": [
                {"name": "metrics", "port": METRICS_PORT, "targetPort": METRICS_PORT, "protocol": "TCP"}]},
            opts=opts)
        k8s.apiextensions.CustomResource(
            resource_name(name, "monitor"), api_version="monitoring.coreos.com/v1", kind="ServiceMonitor",
            metadata=meta,
            spec={"selector": {"matchLabels": {"plinth.dev/metrics": "vault"}},
                  "namespaceSelector": {"matchNames": [chart.namespace]},
                  "endpoints": [{"port": "metrics", "scheme": "https", "path": "/v1/sys/metrics",
                                 "params": {"format": ["prometheus"]}, "interval": "30s",
                                 # Pods are scraped by address: verify the certificate for the Service's name.
                                 "tlsConfig": {"ca": {"secret": {"name": TLS_SECRET, "key": "ca.crt"}},
                                               "serverName": f"{chart.name}.{chart.namespace}.svc"}}]},
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[service])))

    def prerequisites(self, name: str, block: models.Vault, ctx: PlatformContext,
                      opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        chart = self.chart()
        service, ns = chart.name, chart.namespace
        dns = [service, f"{service}.{ns}", f"{service}.{ns}.svc", f"{service}-active.{ns}.svc",
               f"*.{service}-internal", f"*.{service}-internal.{ns}.svc"]
        # The listener certificate, from the platform CA, before the servers that mount it.
        return [certificate(resource_name(name, "tls"), ctx.metadata(TLS_SECRET, name, namespace=ns), TLS_SECRET,
                            dns, ["server auth", "client auth"], opts, ip_addresses=("127.0.0.1",))]
