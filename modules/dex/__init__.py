"""Dex (identity.dex): the platform's own OpenID Connect provider in namespace dex, on the platform Gateway at
identity.oidc's issuer, brokering an on-prem directory (LDAP, Active Directory). Its state (signing keys, sessions,
refresh tokens) lives in Kubernetes objects (Dex's `kubernetes` storage), so its replicas are stateless.

No secret is in its configuration: Dex expands $VARIABLES in a connector's settings (the bind password) and reads a
static client's secret from the variable `secretEnv` names; the variables come from the Secret dex-credentials,
built from the stack secrets. Why each choice: README.md beside this file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import ImageRef
from plinth.context import PlatformContext, StackSecret, resource_name
from plinth.modules.helm import HelmService
from plinth.modules.mlflow import OIDC_CLIENT_SECRET as MLFLOW_CLIENT_SECRET
from plinth.modules.monitoring import GRAFANA_OIDC_CLIENT_SECRET
from plinth.modules.notebooks import CLIENT_SECRET as JUPYTERHUB_CLIENT_SECRET
from plinth.modules.pipelines.sso import CLIENT_SECRET as ARGO_CLIENT_SECRET
from plinth.modules.registry.projects import OIDC_CLIENT_SECRET as HARBOR_CLIENT_SECRET
from plinth.modules.secrets.configure import CLI_REDIRECT as VAULT_CLI_REDIRECT
from plinth.modules.secrets.configure import OIDC_CLIENT_SECRET as VAULT_CLIENT_SECRET
from plinth.modules.signon import CLIENT_SECRET as UI_PROXY_CLIENT_SECRET
from plinth.objects import gateway_route, stack_secret, whole_host_rule
from plinth.securitycontext import restricted_container, restricted_pod
from plinth.service import GatewayHost, Need, Peer, gateway_hostname_rules
from plinth.spec.errors import Violation
from plinth.vocabulary import platform_listener

BIND_PASSWORD = StackSecret(
    "dexLdapBindPassword", "map of Dex's LDAP connector name to the password of its bindDN",
    entries=lambda spec: tuple(ldap.name for ldap in spec.identity.dex.ldap))
CREDENTIALS = "dex-credentials"
"""The bind passwords and the static clients' secrets, each one Dex's environment variable of the same name."""
CA_CONFIG_MAP = "dex-ldap-ca"
CA_DIR = "/etc/ldap-ca"
"""The directories' CAs (public), one file per connector: <name>.crt (beside the chart's config at /etc/dex, not in
it: that volume is read-only)."""
HTTP_PORT = 5556
"""Dex's HTTP port (its pods' and its Service's `http`)."""
KUBECTL_REDIRECTS = ("http://localhost:8000", "http://localhost:18000")
"""Where kubectl's OIDC login (kubelogin) listens for the redirect: its default port and its fallback."""
RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
STORAGE_RESOURCES = ["authcodes", "authrequests", "connectors", "devicerequests", "devicetokens", "oauth2clients",
                     "offlinesessionses", "passwords", "refreshtokens", "signingkeies"]
"""Dex's kinds (dex.coreos.com) as its Kubernetes storage names them (the odd plurals are Dex's own)."""
STORAGE_RULES = [{"apiGroups": ["dex.coreos.com"], "resources": STORAGE_RESOURCES,
                  "verbs": ["create", "delete", "get", "list", "update"]}]
"""What Dex's storage does with its objects, in its own namespace (the chart's Role would grant every verb on
every resource of the group)."""
CRD_RULES = [{"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
              "verbs": ["create", "list"]}]
"""Dex creates its CustomResourceDefinitions itself at start, where listing its kinds fails."""


def _entry(key: str) -> Callable[[dict], str]:
    """One entry of a map stack secret."""
    return lambda found: str(found[key])


def env_name(*parts: str) -> str:
    """An environment variable's name: DEX_<PARTS>, upper case, '-' as '_'."""
    return "DEX_" + "_".join(re.sub(r"[^A-Za-z0-9]", "_", p).upper() for p in parts)


@dataclass(frozen=True)
class StaticClient:
    """A client of identity.oidc.clients, registered with Dex."""

    key: str
    """Its field under identity.oidc.clients."""
    client_id: str
    redirects: tuple[str, ...]
    secret: StackSecret | None
    """None: a public client (kubectl's: it keeps no secret)."""
    trusted_peers: tuple[str, ...] = ()
    """Clients that may ask Dex for a token with this client's audience (scope
    `audience:server:client_id:<this>`): JupyterHub, for MLflow."""

    def config(self) -> dict:
        entry: dict = {"id": self.client_id, "name": self.key, "redirectURIs": list(self.redirects)}
        if self.secret is None:
            entry["public"] = True
        else:
            entry["secretEnv"] = env_name("client", self.key, "secret")
        if self.trusted_peers:
            entry["trustedPeers"] = list(self.trusted_peers)
        return entry


def static_clients(spec) -> tuple[StaticClient, ...]:
    """Every client of identity.oidc.clients, with the redirect URIs its surface uses and its stack secret."""
    oidc = spec.identity.oidc
    if oidc is None:
        return ()
    clients, found = oidc.clients, [StaticClient("kubernetes", oidc.clients.kubernetes, KUBECTL_REDIRECTS, None)]
    grafana = spec.monitoring.grafana.hostname if spec.monitoring.enabled else None
    if clients.grafana and grafana:
        found.append(StaticClient("grafana", clients.grafana, (f"https://{grafana}/login/generic_oauth",),
                                  GRAFANA_OIDC_CLIENT_SECRET))
    proxy = spec.identity.ui_proxy
    proxied = [host for host in proxy.hosts.model_dump().values() if host] if proxy.enabled else []
    if clients.ui_proxy and proxied:
        found.append(StaticClient("uiProxy", clients.ui_proxy,
                                  tuple(f"https://{host}/oauth2/callback" for host in proxied),
                                  UI_PROXY_CLIENT_SECRET))
    vault = spec.secrets.vault.address
    if clients.vault and vault:
        found.append(StaticClient("vault", clients.vault, (f"{vault.rstrip('/')}/ui/vault/auth/oidc/oidc/callback",
                                                           VAULT_CLI_REDIRECT), VAULT_CLIENT_SECRET))
    harbor = spec.registry.harbor.hostname
    if clients.harbor and harbor:
        found.append(StaticClient("harbor", clients.harbor, (f"https://{harbor}/c/oidc/callback",),
                                  HARBOR_CLIENT_SECRET))
    argo = spec.pipelines.argo.hostname
    if clients.argo and argo:
        found.append(StaticClient("argo", clients.argo, (f"https://{argo}/oauth2/callback",), ARGO_CLIENT_SECRET))
    mlflow = spec.registry.mlflow.hostname if spec.registry.mlflow.enabled else None
    jupyterhub = spec.notebooks.jupyterhub.hostname if spec.notebooks.jupyterhub.enabled else None
    if clients.mlflow and mlflow:
        # The notebook servers sign on to MLflow with the person's token: JupyterHub may ask for MLflow's audience.
        peers = (clients.jupyterhub,) if clients.jupyterhub and jupyterhub else ()
        found.append(StaticClient("mlflow", clients.mlflow, (f"https://{mlflow}/callback",), MLFLOW_CLIENT_SECRET,
                                  peers))
    if clients.jupyterhub and jupyterhub:
        found.append(StaticClient("jupyterhub", clients.jupyterhub, (f"https://{jupyterhub}/hub/oauth_callback",),
                                  JUPYTERHUB_CLIENT_SECRET))
    return tuple(found)


@dataclass(frozen=True)
class DexArgs:
    """What Dex needs from the spec."""

    dex: Any
    """identity.dex (plinth.spec.models.Dex)."""
    clients: tuple[StaticClient, ...]

    @property
    def issuer(self) -> str:
        return f"https://{self.dex.hostname}"


def connector(ldap) -> dict:
    """A Dex LDAP connector: TLS always (from the start, or StartTLS), the directory's certificate verified, the
    bind password by reference ($VARIABLE, expanded by Dex from its environment)."""
    users, groups = ldap.user_search, ldap.group_search
    config: dict = {
        "host": ldap.host,
        "insecureNoSSL": False,
        "insecureSkipVerify": False,
        "startTLS": ldap.start_tls,
        "bindDN": ldap.bind_dn,
        "bindPW": "$" + env_name("ldap", ldap.name, "bind", "pw"),
        "usernamePrompt": "User name",
        "userSearch": {"baseDN": users.base_dn, "filter": users.filter, "username": users.username,
                       "idAttr": users.id_attr, "emailAttr": users.email_attr, "nameAttr": users.name_attr},
        "groupSearch": {"baseDN": groups.base_dn, "filter": groups.filter,
                        "userMatchers": [{"userAttr": groups.user_attr, "groupAttr": groups.group_attr}],
                        "nameAttr": groups.name_attr},
    }
    if ldap.certificate_authority:
        config["rootCA"] = f"{CA_DIR}/{ldap.name}.crt"
    return {"type": "ldap", "id": ldap.name, "name": ldap.name, "config": config}


def dex_config(args: DexArgs) -> dict:
    """Dex's configuration (the chart's `config`, its Secret `dex`): no secret in it."""
    return {
        "issuer": args.issuer,
        # Kubernetes objects in Dex's namespace: nothing on the pods' disks, so any replica serves any request.
        "storage": {"type": "kubernetes", "config": {"inCluster": True}},
        "web": {"http": f"0.0.0.0:{HTTP_PORT}"},
        "telemetry": {"http": "0.0.0.0:5558"},
        "oauth2": {"skipApprovalScreen": True, "responseTypes": ["code"]},
        # The directory is the only source of people: no local users.
        "enablePasswordDB": False,
        "connectors": [connector(ldap) for ldap in args.dex.ldap],
        "staticClients": [client.config() for client in args.clients],
    }


def dex_rules(spec) -> Iterator[Violation]:
    dex, oidc, at = spec.identity.dex, spec.identity.oidc, ("identity", "dex")
    if not dex.enabled:
        return
    if not dex.hostname:
        yield Violation((*at, "hostname"), "Dex signs people on at its own host name on the platform Gateway, and "
                        "hostname is not set", "dex-hostname", "set identity.dex.hostname (a name under "
                        "network.gateway.hostname)")
    else:
        yield from gateway_hostname_rules(spec, at, dex.hostname, "dex")
        issuer = f"https://{dex.hostname}"
        if oidc is None:
            yield Violation((*at, "enabled"), "Dex is the platform's identity provider, and identity.oidc is not set",
                            "dex-issuer", f"set identity.oidc with issuer {issuer}")
        elif oidc.issuer != issuer:
            yield Violation(("identity", "oidc", "issuer"), f"Dex issues the platform's tokens as {issuer}, not "
                            f"{oidc.issuer}", "dex-issuer", f"set issuer: {issuer}")
    if oidc and oidc.groups_claim != "groups":
        yield Violation(("identity", "oidc", "groupsClaim"), "Dex puts the groups in the claim groups",
                        "dex-claims", "remove groupsClaim (default groups)")
    if not dex.ldap:
        yield Violation((*at, "ldap"), "Dex without a connector signs nobody in", "dex-connector",
                        "add a directory under identity.dex.ldap")


class Dex(HelmService):
    """Dex (plinth:identity:Dex)."""

    type_token = "plinth:identity:Dex"
    chart_key = "dex"
    spec_path = ("identity", "dex")
    # Dex runs as its image's non-root user, read-only root, every capability dropped, RuntimeDefault seccomp.
    pod_security = "restricted"
    secrets = (BIND_PASSWORD, GRAFANA_OIDC_CLIENT_SECRET, UI_PROXY_CLIENT_SECRET, ARGO_CLIENT_SECRET,
               VAULT_CLIENT_SECRET, HARBOR_CLIENT_SECRET, MLFLOW_CLIENT_SECRET, JUPYTERHUB_CLIENT_SECRET)

    @classmethod
    def enabled(cls, spec) -> bool:
        # Only a Dex that can work (the rules report the rest): its host name and the issuer it serves.
        dex, oidc = spec.identity.dex, spec.identity.oidc
        return bool(dex.enabled and dex.hostname and oidc and oidc.issuer == f"https://{dex.hostname}")

    @classmethod
    def block(cls, spec) -> DexArgs:
        return DexArgs(spec.identity.dex, static_clients(spec))

    @classmethod
    def needs(cls, spec) -> tuple[Need, ...]:
        if not spec.identity.dex.enabled:
            return ()
        return (Need("gateway", ("identity", "dex", "enabled"), "Dex signs people on at its host name on the "
                     "platform Gateway", "dex", "turn Dex off"),)

    @classmethod
    def rules(cls, spec) -> Iterator[Violation]:
        yield from dex_rules(spec)

    @classmethod
    def gateway_host(cls, spec) -> GatewayHost | None:
        dex = spec.identity.dex
        return GatewayHost(cls.chart().namespace, dex.hostname, ("identity", "dex", "hostname")) \
            if dex.enabled and dex.hostname else None

    @classmethod
    def needed_secrets(cls, spec) -> tuple[StackSecret, ...]:
        if not cls.enabled(spec):
            return ()
        clients = tuple(c.secret for c in cls.block(spec).clients if c.secret)
        return ((BIND_PASSWORD,) if spec.identity.dex.ldap else ()) + clients

    @classmethod
    def user_values(cls, block: DexArgs) -> dict:
        return dict(block.dex.values)

    @classmethod
    def images(cls, block: DexArgs, ctx: PlatformContext) -> tuple[str, ...]:
        return cls.chart().images

    @classmethod
    def endpoints(cls, block: DexArgs, ctx: PlatformContext) -> dict[str, str]:
        return {"issuer": block.issuer}

    @classmethod
    def ingress(cls, block: DexArgs, ctx: PlatformContext) -> tuple[Peer, ...]:
        return (Peer("gateway", ports=(HTTP_PORT,), entity="ingress"),)

    @classmethod
    def owned_values(cls, block: DexArgs, ctx: PlatformContext) -> dict:
        image = ImageRef.parse(cls.chart().images[0]).mirrored(ctx.mirror_registry)
        replicas = ctx.replicas(block.dex.replicas)
        env = [{"name": env_name("ldap", ldap.name, "bind", "pw"), "valueFrom": {"secretKeyRef": {
            "name": CREDENTIALS, "key": env_name("ldap", ldap.name, "bind", "pw")}}} for ldap in block.dex.ldap]
        env += [{"name": env_name("client", c.key, "secret"), "valueFrom": {"secretKeyRef": {
            "name": CREDENTIALS, "key": env_name("client", c.key, "secret")}}} for c in block.clients if c.secret]
        values: dict = {
            "image": {"repository": f"{image.registry}/{image.repository}", "tag": image.tag, "digest": ""},
            "imagePullSecrets": [{"name": s} for s in ctx.image_pull_secrets],
            "replicaCount": replicas,
            "podDisruptionBudget": {"enabled": replicas > 1, "maxUnavailable": 1},
            "configSecret": {"create": True, "name": ""},
            "config": dex_config(block),
            "envVars": env,
            # Plinth's Role (explicit kinds and verbs) and ClusterRole (its CRDs), not the chart's wildcard.
            "rbac": {"create": False},
            "serviceAccount": {"create": True, "name": "dex"},
            "podSecurityContext": restricted_pod(),
            "securityContext": {**restricted_container(read_only_root=True), "runAsNonRoot": True},
            "resources": RESOURCES,
            "https": {"enabled": False},
            "grpc": {"enabled": False},
            # Plinth's route on the platform Gateway and the platform's own network policies.
            "ingress": {"enabled": False},
            "networkPolicy": {"enabled": False},
        }
        # The image's entrypoint renders the configuration (a gomplate template) into a file under /tmp first.
        values["volumes"] = [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}]
        values["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
        if any(ldap.certificate_authority for ldap in block.dex.ldap):
            values["volumes"].append({"name": "ldap-ca", "configMap": {"name": CA_CONFIG_MAP}})
            values["volumeMounts"].append({"name": "ldap-ca", "mountPath": CA_DIR, "readOnly": True})
        return values

    def prerequisites(self, name: str, block: DexArgs, ctx: PlatformContext,
                      opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        ns = self.chart().namespace
        made: list[pulumi.Resource] = []
        credentials: dict[str, Any] = {}
        if block.dex.ldap:
            passwords = ctx.secrets.dex_ldap_bind_password
            if passwords is None:
                raise ValueError("Dex's LDAP connectors need the stack secret plinth:dexLdapBindPassword")
            for ldap in block.dex.ldap:
                credentials[env_name("ldap", ldap.name, "bind", "pw")] = pulumi.Output.secret(passwords).apply(
                    _entry(ldap.name))
        for client in block.clients:
            if client.secret:
                value = getattr(ctx.secrets, client.secret.field)
                if value is None:
                    raise ValueError(f"Dex's client {client.key} needs the stack secret plinth:{client.secret.key}")
                credentials[env_name("client", client.key, "secret")] = value
        sources = ", ".join(f"plinth:{key}" for key in dict.fromkeys(
            [*((BIND_PASSWORD.key,) if block.dex.ldap else ()), *(c.secret.key for c in block.clients if c.secret)]))
        made.append(stack_secret(resource_name(name, "credentials"), ctx.metadata(CREDENTIALS, name, namespace=ns),
                                 sources or "none", credentials, opts))
        cas = {f"{ldap.name}.crt": ldap.certificate_authority for ldap in block.dex.ldap if ldap.certificate_authority}
        if cas:
            made.append(k8s.core.v1.ConfigMap(resource_name(name, "ldap-ca"),
                                              metadata=ctx.metadata(CA_CONFIG_MAP, name, namespace=ns), data=cas,
                                              opts=opts))
        role = k8s.rbac.v1.Role(resource_name(name, "storage"), metadata=ctx.metadata("dex", name, namespace=ns),
                                rules=STORAGE_RULES, opts=opts)
        made.append(k8s.rbac.v1.RoleBinding(
            resource_name(name, "storage"), metadata=ctx.metadata("dex", name, namespace=ns),
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "dex"},
            subjects=[{"kind": "ServiceAccount", "name": "dex", "namespace": ns}],
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[role]))))
        crds = f"plinth:{ctx.platform}:dex-crds"
        cluster_role = k8s.rbac.v1.ClusterRole(resource_name(name, "crds"), metadata=ctx.metadata(crds, name),
                                               rules=CRD_RULES, opts=opts)
        made.append(k8s.rbac.v1.ClusterRoleBinding(
            resource_name(name, "crds"), metadata=ctx.metadata(crds, name),
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": crds},
            subjects=[{"kind": "ServiceAccount", "name": "dex", "namespace": ns}],
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[cluster_role]))))
        return made

    def objects(self, name: str, block: DexArgs, ctx: PlatformContext, opts: pulumi.ResourceOptions) -> None:
        ns = self.chart().namespace
        gateway_route(resource_name(name, "route"), ctx.metadata("dex", name, namespace=ns), platform_listener(ns),
                      [whole_host_rule("dex", HTTP_PORT, "60s")], opts, hostname=block.dex.hostname)
