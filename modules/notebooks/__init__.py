"""JupyterHub (notebooks.jupyterhub): the hub, its proxy and a notebook server per person in namespace jupyterhub,
on the platform Gateway, signing people on through identity.oidc (its GenericOAuthenticator).

Nothing secret is in the values or the plan: the client secret reaches the hub as OAUTH_CLIENT_SECRET from the
Secret jupyterhub-oidc (built from the stack secret); the proxy's token, the cookie secret and the auth-state keys
are the chart's own, generated once into its Secret `hub` and kept by Helm's lookup on every upgrade. Why each
choice: README.md beside this file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import ImageRef
from plinth.context import PlatformContext, StackSecret, resource_name
from plinth.modules.helm import HelmService
from plinth.modules.mlflow import NAMESPACE as MLFLOW_NAMESPACE
from plinth.modules.mlflow import POD_PORT as MLFLOW_PORT
from plinth.modules.mlflow import client_env
from plinth.modules.mlflow import client_policy as mlflow_client
from plinth.modules.mlflow import server_selector as mlflow_server
from plinth.objects import gateway_route, stack_secret, whole_host_rule
from plinth.securitycontext import restricted_container, restricted_pod
from plinth.service import GatewayHost, Need, Peer, gateway_hostname_rules, gateway_serves
from plinth.spec.errors import Violation
from plinth.spec.models import PlatformSpec, quantity_value
from plinth.vocabulary import JUPYTERHUB_SERVICE, platform_listener

CLIENT_SECRET = StackSecret("jupyterhubOidcClientSecret", "client secret of JupyterHub's client at the identity "
                            "provider (identity.oidc.clients.jupyterhub)")
NAMESPACE = JUPYTERHUB_SERVICE[0]
OIDC_SECRET = "jupyterhub-oidc"
"""The client secret (key `client-secret`): the hub's OAUTH_CLIENT_SECRET, which the authenticator reads when its
client_secret is not configured (so the chart's Secret `hub`, which holds every value, never holds it)."""
OIDC_CA = "jupyterhub-oidc-ca"
OIDC_CA_DIR = "/etc/jupyterhub/oidc-ca"
"""identity.oidc.certificateAuthority (public), for the hub's calls to the provider's token endpoint."""
PROXY_SERVICE = JUPYTERHUB_SERVICE[1]
SERVICE_PORT = 80
PROXY_PORT = 8000
"""The proxy's container port (its Service's target): what NetworkPolicies name."""
UID, GID = 1000, 100
"""The notebook image's user (jovyan) and the group its home volume is shared with (the chart's defaults)."""
HUB_RESOURCES = {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}
PROXY_RESOURCES = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
HUB_DATABASE_SIZE = "1Gi"
"""The hub's SQLite database (users, servers, groups): the chart's default size."""
CULL_EVERY = 300
"""How often (seconds) the idle culler looks for idle servers."""
NOTEBOOK_LABELS = {"app": "jupyterhub", "component": "singleuser-server", "release": "jupyterhub"}
"""The notebook servers' pods (KubeSpawner's labels for release `jupyterhub`; the chart's singleuser policy
selects the same): what MLflow admits."""
HOOKS = Path(__file__).with_name("hub_hooks.py")
"""The hub's hooks for MLflow's sign-on: its source goes into hub.extraConfig."""
CROSS_CLIENT_SCOPE = "audience:server:client_id:"
"""Dex's scope for a token whose audience is another client's (one that trusts JupyterHub's: trustedPeers)."""


@dataclass(frozen=True)
class JupyterHubArgs:
    """What JupyterHub needs from the spec: its block and facts of other blocks."""

    jupyterhub: Any
    """notebooks.jupyterhub (plinth.spec.models.JupyterHub)."""
    oidc: Any
    """identity.oidc (plinth.spec.models.Oidc): the service is enabled only with its client and endpoints."""
    admin_group: str
    """rbac.platformAdminGroup: JupyterHub's admins."""
    team_groups: tuple[str, ...]
    """Every team's groups (every role's): who else may sign on."""
    storage_class: str
    """StorageClass of the home volumes and the hub's database: `storageClass`, `longhorn` with Longhorn, or ""."""
    airgap: bool = False
    """Air-gap mode: the notebook servers reach nothing outside the cluster either."""
    mlflow: bool = False
    """registry.mlflow is on: each notebook server has MLFLOW_TRACKING_URI and its way to MLflow's server."""
    mlflow_audience: str | None = None
    """identity.oidc.clients.mlflow when MLflow signs on: each server has the person's token for MLflow."""
    cross_client: bool = False
    """Dex is the provider and MLflow's client there trusts JupyterHub's: JupyterHub asks for MLflow's audience."""

    @property
    def hostname(self) -> str:
        return self.jupyterhub.hostname


def team_groups(spec) -> tuple[str, ...]:
    return tuple(sorted({group for team in spec.teams for role in (
        team.groups.ml_engineer, team.groups.data_scientist, team.groups.viewer) for group in role}))


def authenticator_config(block: JupyterHubArgs) -> dict:
    """hub.config.GenericOAuthenticator: sign-on through identity.oidc (authorization code with PKCE), the person
    and their groups from the ID token, only the teams' groups and the platform admins let in."""
    oidc = block.oidc
    scope = list(oidc.scopes)
    if block.mlflow_audience and block.cross_client:
        # The person's tokens carry MLflow's audience beside JupyterHub's: MLflow accepts them.
        scope.append(CROSS_CLIENT_SCOPE + block.mlflow_audience)
    elif block.mlflow_audience and oidc.mlflow_scope:
        # The provider issues the access token for MLflow's API (Entra ID, Okta): the hook passes that one.
        scope.append(oidc.mlflow_scope)
    config: dict = {
        "client_id": oidc.clients.jupyterhub,
        "oauth_callback_url": f"https://{block.hostname}/hub/oauth_callback",
        "authorize_url": oidc.endpoints.authorization,
        "token_url": oidc.endpoints.token,
        # The ID token comes straight from the token endpoint over verified TLS: no userinfo call.
        "userdata_from_id_token": True,
        "username_claim": oidc.username_claim,
        "scope": scope,
        "enable_pkce": True,
        "validate_server_cert": True,
        "login_service": "Single sign-on",
        # The token's groups become JupyterHub's groups on every sign-on: who may sign on and who administers.
        "manage_groups": True,
        "auth_state_groups_key": f"oauth_user.{oidc.groups_claim}",
        "allowed_groups": sorted({*block.team_groups, block.admin_group}),
        "admin_groups": [block.admin_group],
    }
    if oidc.certificate_authority:
        config["http_request_kwargs"] = {"ca_certs": f"{OIDC_CA_DIR}/ca.crt"}
    if block.mlflow_audience:
        # The tokens kept (encrypted with the chart's CryptKeeper keys) for the spawner's hook; refreshed, and
        # so checked, before every spawn: an expired one means signing on again, never a server with it.
        config |= {"enable_auth_state": True, "refresh_pre_spawn": True}
    return config


def hub_hooks(audience: str) -> str:
    """hub.extraConfig's entry: the hooks' source, then the lines that install them."""
    return (f"{HOOKS.read_text()}\n\n# Installed by Plinth (modules/notebooks/hub_hooks.py).\n"
            f"c.KubeSpawner.auth_state_hook = mlflow_token_hook({audience!r})\n"
            "c.GenericOAuthenticator.refresh_user_hook = refresh_user_hook\n")


def mlflow_egress() -> list[dict]:
    """singleuser.networkPolicy.egress: the notebook servers reach MLflow's server port, nothing else of its
    namespace (the chart's own policy, so no second one selects the notebook servers)."""
    return [{"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": MLFLOW_NAMESPACE}},
                     "podSelector": {"matchLabels": mlflow_server()}}],
             "ports": [{"protocol": "TCP", "port": MLFLOW_PORT}]}]


def spawner_config() -> dict:
    """hub.config.KubeSpawner: every notebook server restricted (non-root, RuntimeDefault seccomp, no capability,
    no privilege escalation), so the namespace enforces Pod Security `restricted`."""
    return {"pod_security_context": restricted_pod(fs_group=GID),
            "container_security_context": {**restricted_container(), "runAsNonRoot": True,
                                           "seccompProfile": {"type": "RuntimeDefault"}}}


def egress_rules(airgap: bool) -> dict:
    """The chart's egress allowances of the notebook servers: DNS, and outside an air gap the internet; never
    the cloud's metadata server nor other private addresses (the platform's services, the nodes)."""
    return {"cloudMetadataServer": False, "dnsPortsCloudMetadataServer": False, "dnsPortsKubeSystemNamespace": True,
            "dnsPortsPrivateIPs": True, "nonPrivateIPs": not airgap, "privateIPs": False}


def jupyterhub_rules(spec) -> Iterator[Violation]:
    """JupyterHub needs its host name and its sign-on (it has no login of its own worth having: the chart's
    default lets anyone in); a client for JupyterHub needs JupyterHub."""
    hub, oidc, at = spec.notebooks.jupyterhub, spec.identity.oidc, ("notebooks", "jupyterhub")
    client = bool(oidc and oidc.clients.jupyterhub)
    if hub.enabled:
        if not hub.hostname:
            yield Violation((*at, "hostname"), "people reach JupyterHub and come back from signing on at its host "
                            "name on the platform Gateway, and hostname is not set", "jupyterhub-hostname",
                            "set notebooks.jupyterhub.hostname (a name under network.gateway.hostname)")
        else:
            yield from gateway_hostname_rules(spec, at, hub.hostname, "jupyterhub")
        if not client:
            yield Violation((*at, "enabled"), "JupyterHub signs people on through identity.oidc only, and "
                            "identity.oidc.clients.jupyterhub is not set", "jupyterhub-sign-on",
                            "set identity.oidc.clients.jupyterhub (and the stack secret "
                            "plinth:jupyterhubOidcClientSecret)" if oidc else "set identity.oidc with "
                            "clients.jupyterhub (and the stack secret plinth:jupyterhubOidcClientSecret)")
        elif not oidc.endpoints:
            yield Violation(("identity", "oidc", "clients", "jupyterhub"), "JupyterHub reads no discovery "
                            "document, and identity.oidc.endpoints is not set", "jupyterhub-sign-on-endpoints",
                            "set identity.oidc.endpoints.authorization and .token as the provider's "
                            "<issuer>/.well-known/openid-configuration lists them")
    elif client:
        yield Violation(("identity", "oidc", "clients", "jupyterhub"), "a client for JupyterHub, and "
                        "notebooks.jupyterhub is off", "jupyterhub-sign-on-unused",
                        "enable notebooks.jupyterhub, or remove clients.jupyterhub")
    if oidc and oidc.mlflow_scope:
        at_scope = ("identity", "oidc", "mlflowScope")
        if not oidc.clients.mlflow:
            yield Violation(at_scope, "mlflowScope asks for tokens for MLflow, and their audience, "
                            "identity.oidc.clients.mlflow, is not set", "mlflow-scope-audience",
                            "set identity.oidc.clients.mlflow, or remove mlflowScope")
        if spec.identity.dex.enabled:
            yield Violation(at_scope, "Dex gives JupyterHub's tokens MLflow's audience itself (its cross-client "
                            "scope), and would refuse every sign-on asking for a scope it does not know",
                            "mlflow-scope-dex", "remove mlflowScope")
        if not (hub.enabled and spec.registry.mlflow.enabled):
            yield Violation(at_scope, "only JupyterHub asks for MLflow's scope (for its notebook servers), and "
                            "notebooks.jupyterhub or registry.mlflow is off", "mlflow-scope-unused",
                            "enable both, or remove mlflowScope")


class JupyterHub(HelmService):
    """JupyterHub (plinth:notebooks:JupyterHub)."""

    type_token = "plinth:notebooks:JupyterHub"
    chart_key = "jupyterhub"
    spec_path = ("notebooks", "jupyterhub")
    # The hub, the proxy and every notebook server run non-root, RuntimeDefault seccomp, no capability, no
    # privilege escalation; PVC, Secret and ConfigMap volumes only (the privileged metadata-blocking init
    # container is off: a NetworkPolicy blocks the metadata server instead).
    pod_security = "restricted"
    secrets = (CLIENT_SECRET,)

    @classmethod
    def enabled(cls, spec: PlatformSpec) -> bool:
        # Only a JupyterHub that can sign people on (the rules report the rest): it has no other safe login.
        hub, oidc = spec.notebooks.jupyterhub, spec.identity.oidc
        return bool(hub.enabled and hub.hostname and oidc and oidc.clients.jupyterhub and oidc.endpoints
                    and gateway_serves(spec))

    @classmethod
    def block(cls, spec: PlatformSpec) -> JupyterHubArgs:
        from plinth.modules.dex import static_clients  # Dex imports this module

        hub, oidc = spec.notebooks.jupyterhub, spec.identity.oidc
        storage_class = spec.storage.volume_class(hub.storage_class)
        mlflow = spec.registry.mlflow.enabled
        audience = oidc.clients.mlflow if mlflow and oidc and oidc.clients.mlflow else None
        client = oidc.clients.jupyterhub if oidc else None
        cross_client = bool(client and spec.identity.dex.enabled and any(
            c.key == "mlflow" and client in c.trusted_peers for c in static_clients(spec)))
        return JupyterHubArgs(hub, oidc, spec.rbac.platform_admin_group, team_groups(spec), storage_class,
                              spec.airgap.enabled, mlflow, audience, cross_client)

    @classmethod
    def needs(cls, spec) -> tuple[Need, ...]:
        if not spec.notebooks.jupyterhub.enabled:
            return ()
        return (Need("gateway", ("notebooks", "jupyterhub", "enabled"), "people reach JupyterHub at its host name "
                     "on the platform Gateway", "jupyterhub", "turn JupyterHub off"),)

    @classmethod
    def rules(cls, spec) -> Iterator[Violation]:
        yield from jupyterhub_rules(spec)

    @classmethod
    def gateway_host(cls, spec) -> GatewayHost | None:
        hub = spec.notebooks.jupyterhub
        return GatewayHost(NAMESPACE, hub.hostname, ("notebooks", "jupyterhub", "hostname")) \
            if hub.enabled and hub.hostname else None

    @classmethod
    def user_values(cls, block: JupyterHubArgs) -> dict:
        return dict(block.jupyterhub.values)

    @classmethod
    def endpoints(cls, block: JupyterHubArgs, ctx: PlatformContext) -> dict[str, str]:
        return {"url": f"https://{block.hostname}"}

    @classmethod
    def ingress(cls, block: JupyterHubArgs, ctx: PlatformContext) -> tuple[Peer, ...]:
        return (Peer("gateway", ports=(PROXY_PORT,), entity="ingress"),)

    @classmethod
    def owned_values(cls, block: JupyterHubArgs, ctx: PlatformContext) -> dict:
        hub_ref, proxy_ref, notebook_ref = cls.chart().images
        hub = block.jupyterhub
        cpu, memory = quantity_value(hub.cpu), int(quantity_value(hub.memory))
        env: dict = {"OAUTH_CLIENT_SECRET": {"valueFrom": {"secretKeyRef": {"name": OIDC_SECRET,
                                                                            "key": "client-secret"}}}}
        hub_values: dict = {
            "image": _image(hub_ref, ctx),
            "config": {
                # JupyterHub's own default, which the chart turns on: admins manage people's servers (start, stop,
                # cull) but do not open them, so nobody's notebooks, data or credentials are an admin's to read.
                "JupyterHub": {"authenticator_class": "generic-oauth", "admin_access": False},
                "GenericOAuthenticator": authenticator_config(block),
                "KubeSpawner": spawner_config(),
            },
            **({"extraConfig": {"plinth-mlflow-token": hub_hooks(block.mlflow_audience)}}
               if block.mlflow_audience else {}),
            "extraEnv": env,
            "resources": HUB_RESOURCES,
            "podSecurityContext": restricted_pod(fs_group=UID),
            "containerSecurityContext": {**restricted_container(), "runAsUser": UID, "runAsGroup": UID},
            "db": {"type": "sqlite-pvc", "pvc": {"storage": HUB_DATABASE_SIZE,
                                                 **_if(block.storage_class, "storageClassName")}},
            # Plinth's namespace policies (default-deny ingress, the Gateway to the proxy) and, in an air gap, its
            # egress policy; the chart's would allow the hub every address but no Cilium identity (the API server).
            "networkPolicy": {"enabled": False},
        }
        if block.oidc.certificate_authority:
            hub_values["extraVolumes"] = [{"name": "oidc-ca", "configMap": {"name": OIDC_CA}}]
            hub_values["extraVolumeMounts"] = [{"name": "oidc-ca", "mountPath": OIDC_CA_DIR, "readOnly": True}]
        return {
            "imagePullSecrets": list(ctx.image_pull_secrets),
            "hub": hub_values,
            "proxy": {
                # Behind the Gateway only: the route sends to this Service.
                "service": {"type": "ClusterIP"},
                "chp": {"image": _image(proxy_ref, ctx), "resources": PROXY_RESOURCES,
                        "networkPolicy": {"enabled": False}},
                "https": {"enabled": False},
            },
            "singleuser": {
                "image": _image(notebook_ref, ctx),
                "uid": UID,
                "fsGid": GID,
                "allowPrivilegeEscalation": False,
                "cpu": {"limit": cpu, "guarantee": round(cpu / 10, 3)},
                "memory": {"limit": memory, "guarantee": memory},
                "storage": {"type": "dynamic", "capacity": hub.storage,
                            "dynamic": _if(block.storage_class, "storageClass")},
                # Its init container needs NET_ADMIN and root: the NetworkPolicy below blocks the metadata server.
                "cloudMetadata": {"blockWithIptables": False, "ip": "169.254.169.254"},
                "networkPolicy": {"enabled": True, "egressAllowRules": egress_rules(block.airgap),
                                  **({"egress": mlflow_egress()} if block.mlflow else {})},
                # The platform's MLflow, in the cluster (its public name, if any, is the Gateway's).
                **({"extraEnv": client_env()} if block.mlflow else {}),
            },
            # kube-scheduler as a second scheduler (cluster-wide rights), placeholder pods and image-pulling
            # DaemonSets on every node: none is needed to start a notebook server.
            "scheduling": {"userScheduler": {"enabled": False}, "userPlaceholder": {"enabled": False},
                           "podPriority": {"enabled": False}},
            "prePuller": {"hook": {"enabled": False}, "continuous": {"enabled": False}},
            "cull": {"enabled": True, "timeout": hub.idle_timeout_minutes * 60, "every": CULL_EVERY},
            # Plinth's HTTPRoute on the platform Gateway.
            "ingress": {"enabled": False},
            "httpRoute": {"enabled": False},
        }

    def prerequisites(self, name: str, block: JupyterHubArgs, ctx: PlatformContext,
                      opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        secret = ctx.secrets.jupyterhub_oidc_client_secret
        if secret is None:
            raise ValueError("JupyterHub's sign-on needs the stack secret plinth:jupyterhubOidcClientSecret")
        made: list[pulumi.Resource] = [stack_secret(
            resource_name(name, "oidc"), ctx.metadata(OIDC_SECRET, name, namespace=NAMESPACE),
            f"plinth:{CLIENT_SECRET.key}", {"client-secret": secret}, opts)]
        if block.oidc.certificate_authority:
            made.append(k8s.core.v1.ConfigMap(
                resource_name(name, "oidc-ca"), metadata=ctx.metadata(OIDC_CA, name, namespace=NAMESPACE),
                data={"ca.crt": block.oidc.certificate_authority}, opts=opts))
        return made

    def objects(self, name: str, block: JupyterHubArgs, ctx: PlatformContext, opts: pulumi.ResourceOptions) -> None:
        # A notebook's kernel talks over one long-lived WebSocket: no request timeout ("0s" turns it off).
        gateway_route(resource_name(name, "route"), ctx.metadata("jupyterhub", name, namespace=NAMESPACE),
                      platform_listener(NAMESPACE), [whole_host_rule(PROXY_SERVICE, SERVICE_PORT, "0s")], opts,
                      hostname=block.hostname)
        if block.mlflow:
            # MLflow's namespace admits the notebook servers (not the hub, not the proxy) on its server's port.
            mlflow_client(resource_name(name, "mlflow-ingress"), "notebooks", NAMESPACE, NOTEBOOK_LABELS, name,
                          ctx, opts)


def _if(value: str, key: str) -> dict:
    """{key: value} when a value is set (an empty StorageClass name leaves the cluster's default)."""
    return {key: value} if value else {}


def _image(ref: str, ctx: PlatformContext) -> dict:
    """The chart's {name, tag} of a catalog image, mirrored in air-gap mode."""
    image = ImageRef.parse(ref).mirrored(ctx.mirror_registry)
    return {"name": f"{image.registry}/{image.repository}", "tag": image.tag}
