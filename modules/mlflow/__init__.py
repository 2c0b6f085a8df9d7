"""Experiment tracking and model registry (registry.mlflow): the MLflow server, its PostgreSQL a platform
CloudNativePG Cluster, its artifacts in the target's artifacts bucket.

The server proxies every artifact (`--serve-artifacts`): clients upload and download through MLflow, so no team
holds a storage credential; the server alone uses the bucket (the object store's `artifacts` identity on-prem,
a cloud identity on eks and gke). Nothing is generated at render time: the Flask secret key is the stack secret
plinth:mlflowFlaskSecretKey, the database password the operator's `-app` Secret, the S3 keys derived from the
object store's seed. With identity.oidc.clients.mlflow every request signs on through the identity provider
(the chart's oidcAuth: the image's mlflow-oidc-auth plugin), and each team's groups read and write only the
experiments and registered models named `<team>.<name>`. Why each choice (the schema migration before a new version
starts above all, OIDC rather than MLflow's basic-auth app): README.md beside this file.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import CHARTS, ImageRef
from plinth.context import PlatformContext, StackSecret, resource_name
from plinth.modules.backups import database_identities, instance_monitor, postgres_cluster
from plinth.modules.certs import trust_bundle
from plinth.modules.featurestore import cluster_spec
from plinth.modules.helm import HelmService
from plinth.modules.objectstore import CA_FILE, CA_MOUNT, CA_SECRET, ENDPOINT, ca_volume
from plinth.modules.objectstore import SEED as OBJECT_STORE_SEED
from plinth.modules.objectstore import client_policy as object_store_client
from plinth.modules.objectstore.identities import bucket, derive
from plinth.objects import admit_client, disruption_budget, gateway_route, stack_secret, whole_host_rule
from plinth.securitycontext import restricted_container, restricted_pod
from plinth.service import GatewayHost, Need, Peer, gateway_hostname_rules
from plinth.spec.errors import Violation
from plinth.spec.models import PlatformSpec
from plinth.targets import Identity
from plinth.vocabulary import platform_listener

FLASK_SECRET_KEY = StackSecret("mlflowFlaskSecretKey", "Flask secret key of the MLflow server (registry.mlflow): "
                               "signs its sessions and CSRF tokens, the same in every replica")
OIDC_CLIENT_SECRET = StackSecret("mlflowOidcClientSecret", "client secret of MLflow's client at the identity "
                                 "provider (identity.oidc.clients.mlflow)")
NAMESPACE = CHARTS["mlflow"].namespace
SERVICE = "mlflow"
"""The chart's Service, Deployment and ServiceAccount (release `mlflow`: the chart's fullname)."""
POD_PORT = 5000
"""The server's container port: what NetworkPolicies name (they match pod ports, not Service ports)."""
SERVICE_PORT = 80
UID = 1001
"""The image's own non-root user and group (the chart's default)."""

DATABASE = "mlflow-postgres"
"""The platform CloudNativePG Cluster: Service `<name>-rw` (primary), Secrets `<name>-app` (the owner's
credentials, keys `username` and `password`) and `<name>-ca` (the server CA, key `ca.crt`)."""
DATABASE_NAME = "mlflow"
"""The database and its owner."""
DATABASE_HOST = f"{DATABASE}-rw.{NAMESPACE}.svc"
CA_DIR = "/etc/mlflow/postgres-ca"
METRICS_DIR = "/mlflow/metrics"
"""`--expose-prometheus`: prometheus_flask_exporter's multiprocess directory (writable; the root is read-only)."""

S3_SECRET = "mlflow-artifacts-s3"
"""On-prem: the object store's `artifacts` identity (keys AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)."""
S3_IDENTITY = "artifacts"
"""The object store identity (and the bucket purpose) MLflow uses."""
ENV_CONFIGMAP = f"{SERVICE}-env-configmap"
"""The chart's ConfigMap with PGHOST, PGPORT and PGDATABASE (backendStore.postgres)."""

OIDC_SECRET = "mlflow-oidc"
"""MLflow's client secret at the identity provider (key `client-secret`): env OIDC_CLIENT_SECRET, never a value."""
OIDC_CA = "mlflow-oidc-ca"
"""ConfigMap with identity.oidc.certificateAuthority (public), for the server's calls to the provider."""
OIDC_CA_DIR = "/etc/mlflow/oidc-ca"
OIDC_VERSION_TABLE = "oidc_auth_alembic_version"
"""The plugin's Alembic version table: its tables live in MLflow's database, whose `alembic_version` is MLflow's."""
PERMISSIONS = {"ml_engineer": "MANAGE", "data_scientist": "EDIT", "viewer": "READ"}
"""What each team role's groups may do with the team's experiments and registered models (the plugin's levels:
MANAGE also deletes and grants, EDIT writes, READ reads; whoever creates one manages it too)."""
GRANT_PRIORITY = 100
WORKLOAD_PERMISSION = "EDIT"
"""What a team's workloads (its service account in MLflow) may do with the team's experiments and models."""
TEAM_TOKENS = "mlflow-team-tokens"
"""In `mlflow`: each team's service-account token (key: the team), read by the team-permissions init container."""
TEAM_TOKENS_DIR = "/etc/mlflow/team-tokens"
CREDENTIALS = "mlflow-credentials"
"""In each team's namespace: MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD of the team's service account,
what its workloads (a registry-backed model's fetch) sign on with."""
TEAM_PREFIX_PATTERN = r"\^[a-z0-9]([-a-z0-9]*[a-z0-9])?\\\."
"""The shape of the name patterns Plinth grants (`^<team>\\.`): the grants of that shape are Plinth's to keep in
step with the spec; any other an admin makes by hand stays."""

RESOURCES = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}}
MIGRATE = ("from mlflow.store.db import utils; "
           "utils._initialize_tables(utils.create_sqlalchemy_engine_with_retry('postgresql://'))")
"""What the chart's own migration init container runs (create the tables of an empty database, then Alembic's
upgrade to this version's head), here with libpq's environment: TLS verified against the Cluster's CA."""

PRIVATE_HOSTS = ("10.*", *(f"172.{i}.*" for i in range(16, 32)), "192.168.*")
"""Host headers of requests by pod IP (Prometheus's scrapes): MLflow's own default allows the private ranges."""


def allowed_hosts(hostname: str | None) -> list[str]:
    """MLFLOW_SERVER_ALLOWED_HOSTS: the Service's names (with and without a port), a port-forward's localhost,
    pod IPs, and the Gateway host name. Setting the list replaces MLflow's default (localhost and private IPs)."""
    names = [f"{SERVICE}.{NAMESPACE}", f"{SERVICE}.{NAMESPACE}.svc", f"{SERVICE}.{NAMESPACE}.svc.cluster.local",
             "localhost", "127.0.0.1"]
    hosts = [host for name in names for host in (name, f"{name}:*")]
    return [*hosts, *PRIVATE_HOSTS, *([hostname] if hostname else [])]


def _env(name: str, secret: str, key: str) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def libpq_env() -> dict[str, str]:
    """How psycopg2 (libpq) reaches the Cluster besides the chart's PGHOST/PGPORT/PGDATABASE: verified TLS."""
    return {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": f"{CA_DIR}/ca.crt"}


def s3_keys(seed: str, platform: str) -> dict[str, str]:
    """The object store's `artifacts` identity, as the object store derives it (modules/objectstore/identities.py)."""
    return {"AWS_ACCESS_KEY_ID": derive(seed, platform, S3_IDENTITY, "access"),
            "AWS_SECRET_ACCESS_KEY": derive(seed, platform, S3_IDENTITY, "secret")}


@dataclass(frozen=True)
class MlflowArgs:
    """What MLflow needs from the spec: its block and facts of other blocks."""

    mlflow: Any
    """registry.mlflow (plinth.spec.models.Mlflow)."""
    gateway: bool
    """The platform Gateway is on (network.cilium with gatewayApi): a `hostname` gets an HTTPRoute."""
    storage_class: str
    """StorageClass of the database volumes: `storageClass`, Longhorn's `longhorn` when it is on, else ""."""
    oidc: Any = None
    """identity.oidc when MLflow signs on through it (clients.mlflow set), else None: no authentication."""
    admin_group: str = ""
    """rbac.platformAdminGroup: MLflow's admins."""
    teams: tuple = ()
    """The spec's teams: their groups get their own experiments and registered models."""

    @property
    def routed(self) -> bool:
        return bool(self.mlflow.hostname and self.gateway)


class Mlflow(HelmService):
    """The MLflow tracking server and model registry (plinth:registry:Mlflow)."""

    type_token = "plinth:registry:Mlflow"
    capability = "mlflow"
    capability_fix = "enable registry.mlflow"
    chart_key = "mlflow"
    spec_path = ("registry", "mlflow")
    # The server and its migration init container run as uid 1001, non-root, no privilege escalation, every
    # capability dropped, RuntimeDefault seccomp, read-only root; emptyDir, secret and configMap volumes only.
    pod_security = "restricted"
    secrets = (FLASK_SECRET_KEY, OIDC_CLIENT_SECRET)

    @classmethod
    def enabled(cls, spec: PlatformSpec) -> bool:
        return spec.registry.mlflow.enabled

    @classmethod
    def needed_secrets(cls, spec) -> tuple[StackSecret, ...]:
        if not spec.registry.mlflow.enabled:
            return ()
        # On-prem the artifacts identity's keys come from the object store's seed.
        seed = (OBJECT_STORE_SEED,) if spec.target.type == "existing" else ()
        return (FLASK_SECRET_KEY, *seed, *((OIDC_CLIENT_SECRET,) if cls.block(spec).oidc else ()))

    @classmethod
    def needs(cls, spec) -> tuple[Need, ...]:
        mlflow, at = spec.registry.mlflow, ("registry", "mlflow")
        if not mlflow.enabled:
            return ()
        needs = []
        if spec.target.type == "existing":
            needs.append(Need("object-store", (*at, "enabled"), "MLflow keeps its artifacts in the object store's "
                              "artifacts bucket on an existing cluster", "mlflow"))
        if mlflow.hostname:
            needs.append(Need("gateway", (*at, "hostname"), "MLflow's host name is served by the platform Gateway",
                              "mlflow", "remove hostname (MLflow is then reachable in-cluster only)"))
        return tuple(needs)

    @classmethod
    def gateway_host(cls, spec) -> GatewayHost | None:
        mlflow = spec.registry.mlflow
        return GatewayHost(NAMESPACE, mlflow.hostname, ("registry", "mlflow", "hostname")) \
            if mlflow.enabled and mlflow.hostname else None

    @classmethod
    def rules(cls, spec) -> Iterator[Violation]:
        mlflow = spec.registry.mlflow
        if mlflow.enabled and mlflow.hostname:
            yield from gateway_hostname_rules(spec, ("registry", "mlflow"), mlflow.hostname, "mlflow")
        yield from team_isolation_rules(spec)

    @classmethod
    def identities(cls, spec) -> tuple[Identity, ...]:
        if not spec.registry.mlflow.enabled:
            return ()
        database = database_identities(spec, NAMESPACE, DATABASE)  # its backups
        if spec.target.type == "existing":
            return database
        # eks/gke: the server's ServiceAccount reads and writes the artifacts bucket.
        return (Identity("mlflow", NAMESPACE, SERVICE, "bucket-rw:artifacts"), *database)

    @classmethod
    def block(cls, spec) -> MlflowArgs:
        mlflow, cilium = spec.registry.mlflow, spec.network.cilium
        storage_class = spec.storage.volume_class(mlflow.storage_class)
        oidc = spec.identity.oidc
        return MlflowArgs(mlflow, cilium.enabled and cilium.gateway_api, storage_class,
                          oidc if oidc and oidc.clients.mlflow else None, spec.rbac.platform_admin_group, spec.teams)

    @classmethod
    def user_values(cls, block: MlflowArgs) -> dict:
        return dict(block.mlflow.values)

    @classmethod
    def replicas(cls, block: MlflowArgs, ctx: PlatformContext) -> int:
        return ctx.replicas(block.mlflow.replicas)

    @classmethod
    def endpoints(cls, block: MlflowArgs, ctx: PlatformContext) -> dict[str, str]:
        public = {"url": f"https://{block.mlflow.hostname}"} if block.routed else {}
        return {"trackingUri": tracking_uri(), **public}

    @classmethod
    def artifact_values(cls, ctx: PlatformContext) -> tuple[dict, dict]:
        """(artifactRoot, extra environment): the artifacts bucket of the target, proxied by the server."""
        root: dict = {"proxiedArtifactStorage": True}
        target = ctx.target
        if target.type == "gke":
            return {**root, "gcs": {"enabled": True, "bucket": target.bucket("artifacts"), "path": ""}}, {}
        if target.type == "eks":
            # The role comes from the ServiceAccount (IRSA): no keys.
            return ({**root, "s3": {"enabled": True, "bucket": target.bucket("artifacts"), "path": ""}},
                    {"AWS_DEFAULT_REGION": target.region})
        return ({**root, "s3": {"enabled": True, "bucket": bucket(ctx.platform, S3_IDENTITY), "path": "",
                                "existingSecret": {"name": S3_SECRET, "keyOfAccessKeyId": "AWS_ACCESS_KEY_ID",
                                                   "keyOfSecretAccessKey": "AWS_SECRET_ACCESS_KEY"}}},
                {"MLFLOW_S3_ENDPOINT_URL": ENDPOINT, "AWS_CA_BUNDLE": CA_FILE})

    @classmethod
    def owned_values(cls, block: MlflowArgs, ctx: PlatformContext) -> dict:
        [ref] = cls.chart().images
        image = ImageRef.parse(ref).mirrored(ctx.mirror_registry)
        repository = f"{image.registry}/{image.repository}"
        replicas = cls.replicas(block, ctx)
        artifacts, artifact_env = cls.artifact_values(ctx)
        container = {**restricted_container(read_only_root=True), "runAsNonRoot": True, "runAsUser": UID,
                     "runAsGroup": UID}
        volumes = [{"name": "postgres-ca", "secret": {"secretName": f"{DATABASE}-ca",
                                                      "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]
        mounts = [{"name": "postgres-ca", "mountPath": CA_DIR, "readOnly": True}]
        if not ctx.target.cloud:  # the object store's CA (AWS_CA_BUNDLE, artifact_values)
            volumes.append(ca_volume())
            mounts.append(CA_MOUNT)
        if ctx.monitoring:
            volumes.append({"name": "metrics", "emptyDir": {"sizeLimit": "64Mi"}})
            mounts.append({"name": "metrics", "mountPath": METRICS_DIR})
        init_containers = [migration_container(str(image), container)]
        oidc_values, oidc_env = {"enabled": False}, {}
        if block.oidc:
            oidc_values, oidc_env = oidc_auth_values(block), oidc_auth_env(block.oidc)
            init_containers.append(team_permissions_container(str(image), container, block))
            volumes.append({"name": "team-tokens", "secret": {"secretName": TEAM_TOKENS}})
            if block.oidc.certificate_authority:
                volumes.append({"name": "oidc-ca", "configMap": {"name": OIDC_CA}})
                mounts.append({"name": "oidc-ca", "mountPath": OIDC_CA_DIR, "readOnly": True})
        return {
            "image": {"repository": repository, "tag": image.tag, "pullPolicy": "IfNotPresent"},
            "imagePullSecrets": [{"name": s} for s in ctx.image_pull_secrets],
            "replicaCount": replicas,
            # Never two server versions on one schema: every old pod stops before a new one migrates and starts.
            "strategy": {"type": "Recreate"},
            "serviceAccount": {"create": True, "name": SERVICE, "automount": False,
                               "annotations": ctx.target.annotations(NAMESPACE, SERVICE)},
            "podSecurityContext": restricted_pod(UID, UID, UID, fs_group_on_root_mismatch=True),
            "securityContext": container,
            "resources": RESOURCES,
            "affinity": _spread() if replicas > 1 else {},
            # The bundled databases and object store stay off: the platform's CloudNativePG and buckets instead.
            "postgresql": {"enabled": False},
            "mysql": {"enabled": False},
            "minio": {"enabled": False},
            "backendStore": {
                # The chart's migration container has no room for the CA: Plinth's own runs instead (initContainers).
                "databaseMigration": False,
                "databaseConnectionCheck": False,
                "postgres": {"enabled": True, "host": DATABASE_HOST, "port": 5432, "database": DATABASE_NAME},
                "existingDatabaseSecret": {"name": f"{DATABASE}-app", "usernameKey": "username",
                                           "passwordKey": "password"},
            },
            "initContainers": init_containers,
            "artifactRoot": artifacts,
            "extraEnvVars": {**libpq_env(), **artifact_env, **oidc_env},
            "extraVolumes": volumes,
            "extraVolumeMounts": mounts,
            # From the stack secret: the chart would draw a random key at every render.
            "flaskServerSecretKey": _or_empty(ctx.secrets.mlflow_flask_secret_key),
            "serverAllowedHosts": allowed_hosts(block.mlflow.hostname if block.routed else None),
            "corsAllowedOrigins": [f"https://{block.mlflow.hostname}"] if block.routed else [],
            # With identity.oidc.clients.mlflow: every request signs on, each team's groups reach their own.
            "oidcAuth": oidc_values,
            "telemetry": {"enabled": False},
            "ingress": {"enabled": False},
            # `--expose-prometheus` and the chart's ServiceMonitor on the Service's `http` port (its default
            # targetPort names a container port the pod does not have).
            "serviceMonitor": {"enabled": ctx.monitoring, "namespace": NAMESPACE, "useServicePort": True},
        }

    @classmethod
    def ingress(cls, block: MlflowArgs, ctx: PlatformContext) -> tuple[Peer, ...]:
        # CloudNativePG's operator reaches the database instances (manager 8000, PostgreSQL 5432).
        peers = [Peer("postgres-operator", CHARTS["cloudnative-pg"].namespace, (8000, 5432))]
        if block.routed:
            peers.append(Peer("gateway", ports=(POD_PORT,), entity="ingress"))
        return tuple(peers)

    @classmethod
    def tenant_egress(cls, block: MlflowArgs, ctx: PlatformContext) -> tuple[Peer, ...]:
        # Teams log runs and register models through the `mlflow` Service (artifacts too: proxied).
        return (Peer("mlflow", NAMESPACE, (POD_PORT,)),)

    # --- objects --------------------------------------------------------------------------------------

    def team_objects(self, name: str, block: MlflowArgs, ctx: PlatformContext, team, opts: pulumi.ResourceOptions
                     ) -> None:
        """With sign-on: the team's service-account credentials in its namespace (MLflow's client reads
        MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)."""
        if not block.oidc or ctx.secrets.mlflow_flask_secret_key is None:
            return
        platform, user = ctx.platform, workload_user(team.name)
        stack_secret(
            resource_name(name, team.name, "credentials"),
            ctx.metadata(CREDENTIALS, name, namespace=team.name, team=team.name, cost_center=team.cost_center),
            "derived from plinth:mlflowFlaskSecretKey (HMAC-SHA256 per team)",
            pulumi.Output.secret(ctx.secrets.mlflow_flask_secret_key).apply(
                lambda key, team=team.name: {"MLFLOW_TRACKING_USERNAME": user,  # type: ignore[misc]
                                             "MLFLOW_TRACKING_PASSWORD": team_token(key, platform, team)}), opts)

    def prerequisites(self, name: str, block: MlflowArgs, ctx: PlatformContext,
                      opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        if ctx.secrets.mlflow_flask_secret_key is None:
            raise ValueError("registry.mlflow needs the stack secret plinth:mlflowFlaskSecretKey")
        made: list[pulumi.Resource] = postgres_cluster(
            resource_name(name, "postgres"), DATABASE, NAMESPACE, name,
            cluster_spec(DATABASE_NAME, block.mlflow.database_size, ctx, block.storage_class), ctx, opts)
        if block.oidc:
            if ctx.secrets.mlflow_oidc_client_secret is None:
                raise ValueError("MLflow's sign-on needs the stack secret plinth:mlflowOidcClientSecret")
            made.append(stack_secret(
                resource_name(name, "oidc"), ctx.metadata(OIDC_SECRET, name, namespace=NAMESPACE),
                "plinth:mlflowOidcClientSecret", {"client-secret": ctx.secrets.mlflow_oidc_client_secret}, opts))
            if block.oidc.certificate_authority:
                made.append(k8s.core.v1.ConfigMap(
                    resource_name(name, "oidc-ca"), metadata=ctx.metadata(OIDC_CA, name, namespace=NAMESPACE),
                    data={"ca.crt": block.oidc.certificate_authority}, opts=opts))
            platform, teams = ctx.platform, [team.name for team in block.teams]
            made.append(stack_secret(
                resource_name(name, "team-tokens"), ctx.metadata(TEAM_TOKENS, name, namespace=NAMESPACE),
                "derived from plinth:mlflowFlaskSecretKey (HMAC-SHA256 per team)",
                pulumi.Output.secret(ctx.secrets.mlflow_flask_secret_key).apply(
                    lambda key: {team: team_token(key, platform, team) for team in teams}), opts))
        if not ctx.target.cloud:
            seed = ctx.secrets.object_store_seed
            if seed is None:
                raise ValueError("registry.mlflow on an existing cluster needs the stack secret "
                                 "plinth:objectStoreSeed (its artifacts identity)")
            platform = ctx.platform
            made.append(stack_secret(
                resource_name(name, "artifacts-s3"), ctx.metadata(S3_SECRET, name, namespace=NAMESPACE),
                "derived from plinth:objectStoreSeed (the object store's artifacts identity)",
                pulumi.Output.secret(seed).apply(lambda s: s3_keys(s, platform)), opts))
            made.append(object_store_client(resource_name(name, "artifacts-ingress"), SERVICE, NAMESPACE,
                                      server_selector(), name, ctx, opts))
            made.append(trust_bundle(resource_name(name, "object-store-ca"),
                                     ctx.metadata(CA_SECRET, name, namespace=NAMESPACE), opts))
        return made

    def objects(self, name: str, block: MlflowArgs, ctx: PlatformContext, opts: pulumi.ResourceOptions) -> None:
        meta = ctx.metadata(SERVICE, name, namespace=NAMESPACE)
        if self.replicas(block, ctx) > 1:
            # The chart has no budget of its own: a drain takes one server at a time.
            disruption_budget(resource_name(name, "pdb"), meta, server_selector(), opts)
        if block.routed:
            # An artifact upload (a model's files) outlasts the proxy's default request timeout.
            gateway_route(resource_name(name, "route"), meta, platform_listener(NAMESPACE),
                          [whole_host_rule(SERVICE, SERVICE_PORT, "30m")], opts, hostname=block.mlflow.hostname)
        if ctx.monitoring:
            instance_monitor(resource_name(name, "postgres", "monitor"), DATABASE, NAMESPACE, name, ctx, opts)


def migration_container(image: str, security_context: dict) -> dict:
    """The schema migration, before the server starts in every pod: the chart's own step (MIGRATE), with the
    Cluster's credentials and CA. Postgres runs Alembic's DDL in a transaction: of two pods migrating at once one
    fails, rolls back and restarts, then finds the schema current."""
    return database_step("db-migration", MIGRATE, image, security_context, libpq_env())


def database_step(name: str, program: str, image: str, security_context: dict, env: dict,
                  mounts: tuple[dict, ...] = ()) -> dict:
    """An init container running `program` with the server's image against its database: the Cluster's
    credentials and CA, the server's environment plus `env`, a writable /tmp and `mounts`."""
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-c", program],
        "envFrom": [{"configMapRef": {"name": ENV_CONFIGMAP}}],
        "env": [_env("PGUSER", f"{DATABASE}-app", "username"), _env("PGPASSWORD", f"{DATABASE}-app", "password"),
                *({"name": key, "value": value} for key, value in env.items())],
        "resources": RESOURCES,
        "securityContext": security_context,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                         {"name": "postgres-ca", "mountPath": CA_DIR, "readOnly": True}, *mounts],
    }


def team_groups(teams) -> dict[str, dict[str, str]]:
    """Each team's groups and what they may do with its experiments and models: {team: {group: permission}}. A
    group in two roles of a team gets the higher one."""
    order = list(PERMISSIONS.values())
    found: dict[str, dict[str, str]] = {}
    for team in teams:
        grants = found.setdefault(team.name, {})
        for role, permission in PERMISSIONS.items():
            for group in getattr(team.groups, role):
                if group not in grants or order.index(permission) < order.index(grants[group]):
                    grants[group] = permission
    return found


def workload_user(team: str) -> str:
    """A team's service account in MLflow (its workloads' user)."""
    return f"{team}-workloads"


def workload_group(team: str) -> str:
    """The plugin group of a team's service account alone (no identity-provider group is named so: ':')."""
    return f"plinth:{team}:workloads"


def team_token(key: str, platform: str, team: str) -> str:
    """A team's service-account token: HMAC-SHA256(the Flask secret key, "<platform>/mlflow/<team>") in hex, so
    no new stack secret, no value drawn at render time, and none reveals the key or another team's."""
    return hmac.new(key.encode(), f"{platform}/mlflow/{team}".encode(), hashlib.sha256).hexdigest()


def team_grants(teams) -> list[dict]:
    """The plugin's group name-pattern grants Plinth keeps: each team's groups, and its service account's group,
    on the names `<team>.<name>` (`^<team>\\.`), for experiments and registered models alike (a model's name cannot
    hold `/`; a team's cannot hold `.`, so no team's prefix is another's)."""
    found = team_groups(teams)
    for team in teams:
        found[team.name][workload_group(team.name)] = WORKLOAD_PERMISSION
    return [{"group": group, "regex": f"^{team}\\.", "permission": permission}
            for team, groups in sorted(found.items()) for group, permission in sorted(groups.items())]


def oidc_auth_values(block: MlflowArgs) -> dict:
    """The chart's oidcAuth: sign-on through identity.oidc, deny by default, rbac.platformAdminGroup as admins,
    the teams' groups admitted; the plugin's tables in MLflow's database (libpq's environment, as MLflow's own
    `postgresql://`), its client secret from the Secret mlflow-oidc."""
    oidc = block.oidc
    groups = sorted({group for grants in team_groups(block.teams).values() for group in grants})
    return {
        "enabled": True,
        "discoveryUrl": f"{oidc.issuer.rstrip('/')}/.well-known/openid-configuration",
        "clientId": oidc.clients.mlflow,
        "existingSecret": {"name": OIDC_SECRET, "clientSecretKey": "client-secret"},
        # The browser comes back through the Gateway; without a hostname only tokens sign on.
        "redirectUri": f"https://{block.mlflow.hostname}/callback" if block.routed else "",
        "scope": ",".join(oidc.scopes),
        # Bearer tokens must be issued to MLflow's client: one for the Kubernetes API or Grafana is refused.
        "audience": oidc.clients.mlflow,
        "providerDisplayName": "Single sign-on",
        "groupsAttribute": oidc.groups_claim,
        "groupName": groups,
        "adminGroupName": [block.admin_group],
        "defaultPermission": "NO_PERMISSIONS",
        "sessionCookieSecure": True,
        "sessionCookieSamesite": "lax",
        "cache": {"enabled": False},
        "database": {"uri": "postgresql://", "postgres": {"enabled": False}},
    }


def oidc_auth_env(oidc) -> dict[str, str]:
    """The plugin's settings the chart has no value for."""
    env = {
        "OIDC_ISSUER": oidc.issuer,
        # A workload's first token makes its user (with the token's groups), as a browser sign-in would.
        "OIDC_PROVISION_ON_BEARER_AUTH": "true",
        # The provider's groups claim is what the platform trusts everywhere (Kubernetes RBAC): admins too.
        "OIDC_TRUST_BEARER_GROUP_CLAIMS": "true",
        # Creating `<team>.<name>` needs EDIT on the name: nobody makes names outside their teams.
        "RESTRICT_RESOURCE_CREATION": "true",
        "OIDC_ALEMBIC_VERSION_TABLE": OIDC_VERSION_TABLE,
    }
    if oidc.certificate_authority:
        # The provider's CA for discovery, keys and the code exchange (requests and httpx read these).
        env |= {"REQUESTS_CA_BUNDLE": f"{OIDC_CA_DIR}/ca.crt", "SSL_CERT_FILE": f"{OIDC_CA_DIR}/ca.crt"}
    return env


GRANT = r"""
import json, os, re
from mlflow_oidc_auth.store import store  # first use: the plugin's schema to its head

wanted = {(g["group"], g["regex"]): g["permission"] for g in json.loads(os.environ["PLINTH_TEAM_GRANTS"])}
ours, priority = re.compile(os.environ["PLINTH_TEAM_PATTERN"]), int(os.environ["PLINTH_TEAM_PRIORITY"])
store.populate_groups(sorted({group for group, _ in wanted}))
# Each team's service account: its token from the Secret, its group alone; a removed team's account goes.
tokens = os.environ["PLINTH_TEAM_TOKENS"]
accounts = {f"{team}-workloads": team for team in os.listdir(tokens) if not team.startswith(".")}
for user in store.list_usernames(is_service_account=True):
    if re.fullmatch(r"[a-z0-9-]+-workloads", user) and user not in accounts:
        store.delete_user(user)
for user, team in sorted(accounts.items()):
    token = open(os.path.join(tokens, team)).read()
    if store.has_user(user):
        store.update_user(user, password=token, is_admin=False, is_service_account=True)
    else:
        store.create_user(user, token, f"{team} workloads", is_admin=False, is_service_account=True)
    store.set_user_groups(user, [f"plinth:{team}:workloads"])
for kind in ("experiment", "registered_model"):
    listed = getattr(store, f"list_group_{kind}_regex_permissions")
    have = set()
    for group in store.get_groups():
        for grant in listed(group):
            have.add((group, grant.regex))
            if not ours.fullmatch(grant.regex):
                continue
            permission = wanted.get((group, grant.regex))
            if permission is None:
                getattr(store, f"delete_group_{kind}_regex_permission")(group, grant.id)
            elif (grant.permission, grant.priority) != (permission, priority):
                getattr(store, f"update_group_{kind}_regex_permission")(grant.id, group, grant.regex, priority,
                                                                        permission)
    for (group, regex), permission in sorted(wanted.items()):
        if (group, regex) not in have:
            getattr(store, f"create_group_{kind}_regex_permission")(group, regex, priority, permission)
print(f"team grants: {len(wanted)} for experiments and for registered models; service accounts: {len(accounts)}")
"""
"""The team-permissions init container: the plugin's schema (its own Alembic head), then the teams' grants as the
spec has them (PLINTH_TEAM_GRANTS), for experiments and registered models; a grant of Plinth's shape the spec no
longer has is revoked."""


def team_permissions_container(image: str, security_context: dict, block: MlflowArgs) -> dict:
    """After the migration, before the server: the plugin's schema and the teams' grants (GRANT), with the
    server's database environment."""
    env = {**libpq_env(), "OIDC_USERS_DB_URI": "postgresql://", "OIDC_ALEMBIC_VERSION_TABLE": OIDC_VERSION_TABLE,
           "PLINTH_TEAM_GRANTS": json.dumps(team_grants(block.teams), separators=(",", ":")),
           "PLINTH_TEAM_PATTERN": TEAM_PREFIX_PATTERN, "PLINTH_TEAM_PRIORITY": str(GRANT_PRIORITY),
           "PLINTH_TEAM_TOKENS": TEAM_TOKENS_DIR}
    return database_step("team-permissions", GRANT, image, security_context, env,
                         ({"name": "team-tokens", "mountPath": TEAM_TOKENS_DIR, "readOnly": True},))


def team_isolation_rules(spec) -> Iterator[Violation]:
    """Prod's MLflow isolates the teams (or says why not); a client for MLflow needs MLflow."""
    mlflow, at = spec.registry.mlflow, ("registry", "mlflow")
    oidc = spec.identity.oidc
    client = bool(oidc and oidc.clients.mlflow)
    if mlflow.enabled and spec.metadata.environment == "prod" and not client and not mlflow.reason:
        yield Violation((*at, "enabled"), "MLflow in prod without per-team permissions: every team could read "
                        "and write every experiment and registered model", "mlflow-team-isolation",
                        "set identity.oidc.clients.mlflow (and the stack secret plinth:mlflowOidcClientSecret), "
                        "or say why not in registry.mlflow.reason")
    if client and mlflow.reason:
        yield Violation((*at, "reason"), "a reason for MLflow without per-team permissions, but "
                        "identity.oidc.clients.mlflow is set", "mlflow-reason-unused", "remove registry.mlflow.reason")
    if client and not mlflow.enabled:
        yield Violation(("identity", "oidc", "clients", "mlflow"), "a client for MLflow, and registry.mlflow is "
                        "off", "mlflow-sign-on-unused", "enable registry.mlflow, or remove clients.mlflow")


def tracking_uri() -> str:
    """The in-cluster MLflow Service: what the platform's own clients (a registry-backed model's fetch, the
    notebook servers) set as MLFLOW_TRACKING_URI, exported as endpoints.mlflow.trackingUri."""
    return f"http://{SERVICE}.{NAMESPACE}.svc"


def client_env() -> dict[str, str]:
    """The environment of the platform's own MLflow clients: the in-cluster server, and every artifact through it.
    With S3 artifacts the server advertises multipart transfers, and its clients then move files straight to and
    from the bucket through presigned URLs: URLs of the in-cluster store, which a client outside the cluster or
    the store's policies cannot reach, over TLS from the platform CA. Through the server, only MLflow's identity
    touches the bucket."""
    return {"MLFLOW_TRACKING_URI": tracking_uri(), "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
            "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false"}


def client_policy(resource: str, client: str, namespace: str, pods: dict[str, str], component: str,
                  ctx: PlatformContext, opts: pulumi.ResourceOptions) -> k8s.networking.v1.NetworkPolicy:
    """MLflow admits the pods of a platform namespace matching the labels `pods` (the client: the notebook
    servers) on its server's port, never its database; with MLflow's sign-on every request still signs on."""
    return admit_client(resource, (NAMESPACE, server_selector(), POD_PORT), (client, namespace, pods), component,
                        ctx, opts)


def server_selector() -> dict:
    """The labels of the server's pods (the chart's selectorLabels for release `mlflow`)."""
    return {"app": SERVICE, "app.kubernetes.io/instance": SERVICE, "app.kubernetes.io/name": SERVICE}


def _spread() -> dict:
    """Prefer one replica per node."""
    return {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100,
        "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": server_selector()}},
    }]}}


def _or_empty(secret: pulumi.Output | None) -> pulumi.Input[str]:
    """A pure context (the rules pass) holds no secrets: the owned key is still there, empty."""
    return "" if secret is None else secret
