"""The private registry (registry.harbor): Harbor for images and OCI charts, behind the platform Gateway.

Every value the chart would generate at render time (secrets, the token certificate, the
registry's htpasswd) is supplied by Plinth instead, from the stack secret
plinth:harborAdminPassword and cert-manager, so a second preview shows no changes. How each
one is pinned, and why the choices below: see README.md beside this file. The per-team
projects are the configure stage's (plinth.modules.registry.projects).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import string
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import CHARTS, ImageRef
from plinth.context import ISSUER, PlatformContext, StackSecret, resource_name
from plinth.modules.backups import database_identities, instance_monitor, postgres_cluster
from plinth.modules.featurestore import cluster_spec
from plinth.modules.helm import HelmService, image_values
from plinth.objects import gateway_route, stack_secret, whole_host_rule
from plinth.service import GatewayHost, Need, Peer, gateway_hostname_rules
from plinth.spec.errors import Violation
from plinth.spec.models import PlatformSpec
from plinth.targets import Identity
from plinth.vocabulary import SECRET_SOURCE, platform_listener

ADMIN_PASSWORD = StackSecret("harborAdminPassword", "password of Harbor's admin user (registry.harbor)")
"""The one stack secret of Harbor: the admin password, and the seed of every other secret (`derive`)."""
ADMIN_SECRET = "harbor-admin"
ADMIN_KEY = "HARBOR_ADMIN_PASSWORD"
CORE_SECRET = "harbor-core-keys"
"""core.existingSecret (key `secret`, fixed by the chart), core.existingXsrfSecret, existingSecretSecretKey."""
JOBSERVICE_SECRET = "harbor-jobservice-keys"
REGISTRY_SECRET = "harbor-registry-keys"
"""registry.existingSecret and registry.credentials.existingSecret (REGISTRY_PASSWD, REGISTRY_HTPASSWD)."""
TOKEN_SECRET = "harbor-token"
"""core.secretName: the key core signs registry tokens with, from a cert-manager Certificate."""
REGISTRY_USER = "harbor_registry_user"
"""The internal account core and jobservice use towards the registry (basic auth, htpasswd)."""
DATABASE = "harbor-postgres"
"""The platform CloudNativePG Cluster holding Harbor's database: Service `<name>-rw` (primary), Secrets
`<name>-app` (the owner's credentials, key `password`) and `<name>-ca` (the server CA, key `ca.crt`)."""
DATABASE_NAME = "registry"
"""The database and its owner (the chart's default `coreDatabase`)."""
POD_PORT = 8080
"""nginx's and core's container port: what NetworkPolicies name (they match pod ports, not Service ports)."""
SERVICE_PORT = 80
OIDC_CA = "harbor-oidc-ca"
"""uaaSecretName: identity.oidc.certificateAuthority (key `ca.crt`, a public certificate) for core's calls to the
identity provider. The chart mounts this Secret in core only, as the CA of UAA (which Harbor reads in UAA mode
only); caBundleSecretName, its one bundle for every component, already holds the database's runtime CA."""
OIDC_CA_DIR = "/etc/core/auth-ca"
"""Where the chart mounts uaaSecretName's `ca.crt` (as auth-ca.crt)."""
GO_CA_DIRS = ("/etc/ssl/certs", "/etc/pki/tls/certs")
"""Go's own CA directories on Linux: core's SSL_CERT_DIR keeps them and adds OIDC_CA_DIR (the variable replaces
them, and Harbor's images extend a bundle file in /etc/pki/tls/certs with the database's CA)."""

# Lengths: the chart's own where it generates the value (core's secretKey is an AES key: exactly 16).
KEY_LENGTHS = {"core-secret": 16, "xsrf-key": 32, "secret-key": 16, "jobservice-secret": 16,
               "registry-http-secret": 16, "registry-password": 32}
SECRETS: dict[str, dict[str, str]] = {
    ADMIN_SECRET: {ADMIN_KEY: "admin-password"},
    CORE_SECRET: {"secret": "core-secret", "CSRF_KEY": "xsrf-key", "secretKey": "secret-key"},
    JOBSERVICE_SECRET: {"JOBSERVICE_SECRET": "jobservice-secret"},
    REGISTRY_SECRET: {"REGISTRY_HTTP_SECRET": "registry-http-secret", "REGISTRY_PASSWD": "registry-password",
                      "REGISTRY_HTPASSWD": "registry-htpasswd"},
}
"""The Secrets Plinth creates before the release: name -> key the chart reads -> what the value is."""
_ALPHANUM = string.digits + string.ascii_letters
_BCRYPT_ALPHABET = str.maketrans(string.ascii_uppercase + string.ascii_lowercase + string.digits + "+/",
                                 "./" + string.ascii_uppercase + string.ascii_lowercase + string.digits)


# --- deterministic secrets --------------------------------------------------------------------------


def derive(seed: str, platform: str, purpose: str) -> str:
    """A secret for one purpose: alphanumerics of HMAC-SHA256(seed, "<platform>/harbor/<purpose>").

    The same seed always gives the same value (no diff between previews); each purpose gets an
    independent value, and none reveals the seed or another purpose's value.
    """
    digest = hmac.new(seed.encode(), f"{platform}/harbor/{purpose}".encode(), hashlib.sha256).digest()
    number, chars = int.from_bytes(digest, "big"), []
    for _ in range(KEY_LENGTHS[purpose]):
        number, index = divmod(number, len(_ALPHANUM))
        chars.append(_ALPHANUM[index])
    return "".join(chars)


def htpasswd_line(seed: str, platform: str) -> str:
    """The registry's htpasswd line for REGISTRY_USER: bcrypt (the only scheme the registry reads) with a
    salt derived like the password, where the chart's `htpasswd` function would draw a new salt per render."""
    import bcrypt  # only Harbor needs it: imported where used

    raw = hmac.new(seed.encode(), f"{platform}/harbor/registry-htpasswd-salt".encode(), hashlib.sha256).digest()
    salt = "$2b$10$" + base64.b64encode(raw[:16]).decode().rstrip("=").translate(_BCRYPT_ALPHABET)
    hashed = bcrypt.hashpw(derive(seed, platform, "registry-password").encode(), salt.encode()).decode()
    return f"{REGISTRY_USER}:{hashed}"


def secret_value(seed: str, platform: str, purpose: str) -> str:
    """The value of one SECRETS entry: the admin password is the stack secret itself, the rest derived from it."""
    if purpose == "admin-password":
        return seed
    if purpose == "registry-htpasswd":
        return htpasswd_line(seed, platform)
    return derive(seed, platform, purpose)


def _secret(seed: pulumi.Input[str], platform: str, purpose: str) -> pulumi.Output[str]:
    return pulumi.Output.secret(pulumi.Output.secret(seed).apply(lambda s: secret_value(s, platform, purpose)))


# --- values -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HarborArgs:
    """What Harbor needs from the spec: its own block and two facts of other blocks."""

    harbor: Any
    """registry.harbor (plinth.spec.models.Harbor)."""
    gateway: bool
    """The platform Gateway is on (network.cilium with gatewayApi): a `hostname` gets an HTTPRoute."""
    storage_class: str
    """StorageClass of every volume: `storageClass`, Longhorn's `longhorn` when it is on, else "" (the default)."""
    oidc_ca: str | None = None
    """identity.oidc.certificateAuthority when Harbor signs people on (clients.harbor): core must trust it."""

    @property
    def routed(self) -> bool:
        return bool(self.harbor.hostname and self.gateway)


class Harbor(HelmService):
    """Harbor (plinth:registry:Harbor)."""

    type_token = "plinth:registry:Harbor"
    chart_key = "harbor"
    spec_path = ("registry", "harbor")
    # Every Harbor container runs as non-root with no privilege escalation, all capabilities
    # dropped and the RuntimeDefault seccomp profile (the chart's containerSecurityContext), on
    # configMap, secret, emptyDir and PVC volumes only: the restricted level admits all of them.
    pod_security = "restricted"
    secrets = (ADMIN_PASSWORD,)

    @classmethod
    def enabled(cls, spec: PlatformSpec) -> bool:
        return spec.registry.harbor.enabled

    @classmethod
    def identities(cls, spec) -> tuple[Identity, ...]:
        return database_identities(spec, cls.chart().namespace, DATABASE) if cls.enabled(spec) else ()

    @classmethod
    def needs(cls, spec) -> tuple[Need, ...]:
        harbor, at = spec.registry.harbor, ("registry", "harbor")
        if not harbor.enabled:
            return ()
        needs = [Need("cert-manager", (*at, "enabled"), "Harbor's token-signing key comes from a Certificate of "
                      "cert-manager", "harbor")]
        if harbor.hostname:
            needs.append(Need("gateway", (*at, "hostname"), "Harbor's host name is served by the platform Gateway",
                              "harbor", "remove hostname (Harbor is then reachable in-cluster only)"))
        return tuple(needs)

    @classmethod
    def gateway_host(cls, spec) -> GatewayHost | None:
        harbor = spec.registry.harbor
        return GatewayHost(cls.chart().namespace, harbor.hostname, ("registry", "harbor", "hostname")) \
            if harbor.enabled and harbor.hostname else None

    @classmethod
    def rules(cls, spec) -> Iterator[Violation]:
        harbor = spec.registry.harbor
        if harbor.enabled and harbor.hostname:
            yield from gateway_hostname_rules(spec, ("registry", "harbor"), harbor.hostname, "harbor")

    @classmethod
    def block(cls, spec) -> HarborArgs:
        harbor, cilium = spec.registry.harbor, spec.network.cilium
        storage_class = spec.storage.volume_class(harbor.storage_class)
        oidc = spec.identity.oidc
        oidc_ca = oidc.certificate_authority if oidc and oidc.clients.harbor else None
        return HarborArgs(harbor, cilium.enabled and cilium.gateway_api, storage_class, oidc_ca)

    @classmethod
    def user_values(cls, block: HarborArgs) -> dict:
        return dict(block.harbor.values)

    @classmethod
    def images(cls, block: HarborArgs, ctx: PlatformContext) -> tuple[str, ...]:
        # The exporter runs only with metrics on; the database is the platform's CloudNativePG (its image is the
        # operator's chart's).
        return tuple(i for i in cls.chart().images
                     if (ctx.monitoring or "/harbor-exporter:" not in i) and "/harbor-db:" not in i)

    @classmethod
    def replicas(cls, block: HarborArgs, ctx: PlatformContext) -> int:
        return ctx.replicas(block.harbor.replicas)

    @classmethod
    def endpoints(cls, block: HarborArgs, ctx: PlatformContext) -> dict[str, str]:
        return {"url": cls.external_url(block)}

    @classmethod
    def external_url(cls, block: HarborArgs) -> str:
        """What Harbor puts in token realms and pull commands; the configure stage's URL is the same."""
        chart = cls.chart()
        if block.routed:
            return f"https://{block.harbor.hostname}"
        return f"http://{chart.name}.{chart.namespace}.svc"

    @classmethod
    def owned_values(cls, block: HarborArgs, ctx: PlatformContext) -> dict:
        images = {ImageRef.parse(ref).name: ref for ref in cls.chart().images}
        replicas = cls.replicas(block, ctx)
        ha = {"replicas": replicas, "podDisruptionBudget": {"enabled": replicas > 1}}
        # Several registry or jobservice pods share their volume: one node's mount is not enough.
        access = "ReadWriteMany" if replicas > 1 else "ReadWriteOnce"
        harbor, sc = block.harbor, block.storage_class
        airgap = bool(ctx.mirror_registry)
        # The provider's CA reaches core alone (the one component that calls the provider): as UAA's CA file, whose
        # directory core's SSL_CERT_DIR adds to Go's trusted CAs (Harbor's OIDC client uses the system's).
        provider_ca = {"uaaSecretName": OIDC_CA} if block.oidc_ca else {}
        core_trust = {"extraEnvVars": [{"name": "SSL_CERT_DIR", "value": ":".join((*GO_CA_DIRS, OIDC_CA_DIR))}]} \
            if block.oidc_ca else {}
        return {
            "expose": {"type": "clusterIP", "tls": {"enabled": False},
                       "clusterIP": {"name": cls.chart().name}},
            "externalURL": cls.external_url(block),
            "existingSecretAdminPassword": ADMIN_SECRET,
            "existingSecretAdminPasswordKey": ADMIN_KEY,
            "existingSecretSecretKey": CORE_SECRET,
            "internalTLS": {"enabled": False},
            "imagePullSecrets": [{"name": s} for s in ctx.image_pull_secrets],
            # RollingUpdate needs the new pod to mount while the old one runs: only RWX allows that.
            "updateStrategy": {"type": "RollingUpdate" if replicas > 1 else "Recreate"},
            "nginx": {"image": image_values(images["nginx-photon"], ctx), **ha},
            "portal": {"image": image_values(images["harbor-portal"], ctx), **ha},
            "core": {
                "image": image_values(images["harbor-core"], ctx), **ha,
                "existingSecret": CORE_SECRET,
                "existingXsrfSecret": CORE_SECRET, "existingXsrfSecretKey": "CSRF_KEY",
                "secretName": TOKEN_SECRET,
                **core_trust,
            },
            "jobservice": {
                "image": image_values(images["harbor-jobservice"], ctx), **ha,
                "existingSecret": JOBSERVICE_SECRET, "existingSecretKey": "JOBSERVICE_SECRET",
            },
            "registry": {
                "registry": {"image": image_values(images["registry-photon"], ctx)},
                "controller": {"image": image_values(images["harbor-registryctl"], ctx)}, **ha,
                "existingSecret": REGISTRY_SECRET, "existingSecretKey": "REGISTRY_HTTP_SECRET",
                "credentials": {"username": REGISTRY_USER, "existingSecret": REGISTRY_SECRET},
            },
            "trivy": {
                # A StatefulSet: each replica has its own vulnerability database volume.
                "enabled": True, "image": image_values(images["trivy-adapter-photon"], ctx), **ha,
                # Air-gap: no database download, no dependency lookups (README: mirroring the DB).
                "skipUpdate": airgap, "skipJavaDBUpdate": airgap, "offlineScan": airgap,
            },
            # The platform's CloudNativePG Cluster, not the chart's single internal pod: replicated in staging and
            # prod, and its password never a value (core, its upgrade Job and the exporter read the `-app` Secret).
            "database": {"type": "external", "external": {
                "host": f"{DATABASE}-rw.{cls.chart().namespace}.svc", "port": "5432",
                "username": DATABASE_NAME, "coreDatabase": DATABASE_NAME,
                "existingSecret": f"{DATABASE}-app", "sslmode": "verify-full"}},
            # The server's CA joins the trust store of core, jobservice, the registry, Trivy and the exporter (the
            # images' install_cert.sh): verify-full above. Only its `ca.crt` key is mounted (subPath).
            "caBundleSecretName": f"{DATABASE}-ca",
            **provider_ca,
            "redis": {"internal": {"image": image_values(images["redis-photon"], ctx)}},
            "exporter": {"image": image_values(images["harbor-exporter"], ctx), **ha},
            "metrics": {"enabled": ctx.monitoring, "serviceMonitor": {"enabled": ctx.monitoring}},
            "persistence": {"enabled": True, "persistentVolumeClaim": {
                "registry": {"storageClass": sc, "accessMode": access, "size": harbor.registry_size},
                "jobservice": {"jobLog": {"storageClass": sc, "accessMode": access, "size": harbor.jobservice_size}},
                "redis": {"storageClass": sc, "accessMode": "ReadWriteOnce", "size": harbor.redis_size},
                "trivy": {"storageClass": sc, "accessMode": "ReadWriteOnce", "size": harbor.trivy_size},
            }},
        }

    @classmethod
    def ingress(cls, block: HarborArgs, ctx: PlatformContext) -> tuple[Peer, ...]:
        # CloudNativePG's operator reaches the database instances (manager 8000, PostgreSQL 5432).
        peers = [Peer("postgres-operator", CHARTS["cloudnative-pg"].namespace, (8000, 5432))]
        if block.routed:
            # The Gateway's proxies forward https://<hostname> to the `harbor` Service (nginx).
            peers.append(Peer("gateway", ports=(POD_PORT,), entity="ingress"))
        return tuple(peers)

    @classmethod
    def tenant_egress(cls, block: HarborArgs, ctx: PlatformContext) -> tuple[Peer, ...]:
        # Teams pull and push through the `harbor` Service (nginx, then core and the registry).
        return (Peer("harbor", cls.chart().namespace, (POD_PORT,)),)

    # --- objects --------------------------------------------------------------------------------------

    def prerequisites(self, name: str, block: HarborArgs, ctx: PlatformContext,
                      opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        seed = ctx.secrets.harbor_admin_password
        if seed is None:
            raise ValueError("registry.harbor needs the stack secret plinth:harborAdminPassword")
        ns = self.chart().namespace
        made: list[pulumi.Resource] = postgres_cluster(
            resource_name(name, "postgres"), DATABASE, ns, name,
            cluster_spec(DATABASE_NAME, block.harbor.database_size, ctx, block.storage_class), ctx, opts)
        made += [
            stack_secret(resource_name(name, secret.removeprefix("harbor-")),
                         ctx.metadata(secret, name, namespace=ns),
                         "plinth:harborAdminPassword" if secret == ADMIN_SECRET else
                         "derived from plinth:harborAdminPassword (HMAC-SHA256 per purpose)",
                         {key: _secret(seed, ctx.platform, purpose) for key, purpose in keys.items()}, opts)
            for secret, keys in SECRETS.items()
        ]
        if block.oidc_ca:
            # A Secret because the chart mounts uaaSecretName as one; its payload is public, from the spec.
            source = {SECRET_SOURCE: "identity.oidc.certificateAuthority (a CA certificate, public)"}
            made.append(k8s.core.v1.Secret(resource_name(name, "oidc-ca"),
                                           metadata=ctx.metadata(OIDC_CA, name, namespace=ns, annotations=source),
                                           type="Opaque", string_data={"ca.crt": block.oidc_ca}, opts=opts))
        made.append(k8s.apiextensions.CustomResource(
            resource_name(name, "token"),
            api_version="cert-manager.io/v1",
            kind="Certificate",
            metadata=ctx.metadata(TOKEN_SECRET, name, namespace=ns),
            spec={
                "secretName": TOKEN_SECRET,
                "commonName": f"{ctx.platform} harbor token signer",
                "usages": ["digital signature"],
                "duration": "8760h",
                "renewBefore": "720h",
                # An RSA key, as Harbor's token service documents it. The key survives renewal, so
                # issued tokens stay valid and core (its key is a subPath mount, read at start) needs
                # no restart.
                "privateKey": {"algorithm": "RSA", "size": 4096, "rotationPolicy": "Never"},
                "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": ISSUER},
            },
            opts=opts,
        ))
        return made

    def objects(self, name: str, block: HarborArgs, ctx: PlatformContext, opts: pulumi.ResourceOptions) -> None:
        chart = self.chart()
        if ctx.monitoring:
            instance_monitor(resource_name(name, "postgres", "monitor"), DATABASE, chart.namespace, name, ctx, opts)
        if not block.routed:
            return
        # Pushing or pulling a large layer outlasts the proxy's default request timeout.
        gateway_route(resource_name(name, "route"), ctx.metadata(chart.name, name, namespace=chart.namespace),
                      platform_listener(chart.namespace), [whole_host_rule(chart.name, SERVICE_PORT, "30m")], opts,
                      hostname=block.harbor.hostname)
