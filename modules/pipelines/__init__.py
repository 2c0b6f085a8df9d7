"""Pipelines (pipelines.argo): the Argo Workflows controller in namespace argo; workflows run in the team
namespaces, each as the team's ServiceAccount `argo-workflow` with the executor's Role only (on eks and gke also
the team's cloud identity for its artifacts, its prefix of the artifacts bucket). With `archive`, the
finished workflows go to a platform CloudNativePG Cluster of the namespace (backed up like every Cluster).

The chart's CRDs render as templates (`crds.full: false`): its default installs them from a hook Job that
downloads them at install time, which an air-gapped cluster cannot do. Why each choice: README.md beside this file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import CHARTS, ImageRef
from plinth.context import PULL_SECRET, PlatformContext, StackSecret, resource_name
from plinth.modules.backups import database_identities, instance_monitor, postgres_cluster
from plinth.modules.cluster.differences import object_store_egress
from plinth.modules.featurestore import cluster_spec
from plinth.modules.helm import HelmService
from plinth.modules.objectstore import CA_SECRET, ENDPOINT
from plinth.modules.objectstore.identities import bucket, workflow_artifacts_key
from plinth.modules.objectstore.teamkeys import REGION, WORKFLOW_ARTIFACTS
from plinth.modules.pipelines.sso import (
    CLIENT_SECRET,
    USER_ACCOUNT,
    VIEWER_ACCOUNT,
    account,
    server_accounts,
    server_prerequisites,
    sso_values,
)
from plinth.objects import gateway_route, network_policy, peer_policy, whole_host_rule
from plinth.securitycontext import restricted_container, restricted_pod
from plinth.service import GatewayHost, Need, Peer, gateway_hostname_rules, gateway_serves
from plinth.spec.errors import Violation
from plinth.spec.models import PlatformSpec, Team
from plinth.targets import Identity, TargetFacts
from plinth.vocabulary import ARGO_SERVER_SERVICE, platform_listener

NAMESPACE = CHARTS["argo-workflows"].namespace
CONTROLLER = "argo-workflows-workflow-controller"
"""The controller's Deployment, Service and ServiceAccount (release `argo-workflows`: the chart's fullname)."""
METRICS_PORT = 9090
"""The controller's metrics container port (the Service's `metrics` port 8080 targets it)."""
WORKFLOW_ACCOUNT = "argo-workflow"
"""The ServiceAccount every workflow pod of a team runs as (the controller's workflowDefaults name it)."""
EXECUTOR_ROLE = "argo-workflow-executor"
"""The one Role of that account: what the executor (the init and wait containers) does in the API."""
EXECUTOR_RULES = [{"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}]
"""The executor reports each step's outputs as a WorkflowTaskResult; it reads and writes nothing else."""
USER_ROLE = "plinth:workflows"
"""The Role of a team's data scientists and ML engineers: submit, watch and stop the team's workflows."""
WORKFLOW_RESOURCES = ["cronworkflows", "workflows", "workflowtemplates"]
STEP_LOGS = {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}
"""The workflow's pods and their logs (what the Argo Server's UI shows of each step); the team's roles of the
tenancy module read them too."""
USER_RULES = [
    {"apiGroups": ["argoproj.io"], "resources": WORKFLOW_RESOURCES,
     "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
    {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["get", "list", "watch"]},
    STEP_LOGS,
]
VIEWER_ROLE = "plinth:workflows-viewer"
VIEWER_RULES = [{"apiGroups": ["argoproj.io"], "resources": [*WORKFLOW_RESOURCES, "workflowtaskresults"],
                 "verbs": ["get", "list", "watch"]}, STEP_LOGS]
WORKFLOW_PODS = {"matchExpressions": [{"key": "workflows.argoproj.io/workflow", "operator": "Exists"}]}
"""The label the controller puts on every workflow pod: only those reach the API server."""
APISERVER_PORTS = (443, 6443)
"""The API server's usual ports (its Service's and the control plane's): the workflow pods' egress."""

ARTIFACT_REPOSITORIES = "artifact-repositories"
"""The ConfigMap a workflow of the namespace takes its artifact repository from (Argo's default name)."""
DEFAULT_REPOSITORY = "workflows.argoproj.io/default-artifact-repository"
"""Its annotation naming the key a workflow uses when it names none."""
REPOSITORY_KEY = "default-v1-s3-artifact-repository"
REPOSITORY_KEYS = {"existing": REPOSITORY_KEY, "eks": REPOSITORY_KEY, "gke": "default-v1-gcs-artifact-repository"}
"""The repository's key by target (any name would do: the annotation names it; it says which store)."""
ARTIFACTS_SECRET = WORKFLOW_ARTIFACTS.secret
"""The team's workflow identity's keys (keys accessKey, secretKey): the secrets operator copies them from the
team's Vault path, where the configure stage writes them (modules/objectstore/teamkeys.py)."""
S3_REGION = REGION
"""The region the executor signs with (a SeaweedFS signature is checked against the region in its own scope):
given, so the client never asks the store where the bucket is."""

CONTROLLER_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
EXECUTOR_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}}
"""The init and wait containers of every workflow pod (they count against the team's quota)."""
SERVER_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
SERVER_PORT = 2746
"""The server's port (its Service's and its pods')."""

DATABASE = "argo-postgres"
"""The workflow archive's CloudNativePG Cluster: Service `<name>-rw` (primary), Secrets `<name>-app` (the owner's
credentials, keys `username` and `password`) and `<name>-ca` (the server CA, key `ca.crt`)."""
DATABASE_NAME = "argo"
"""The database and its owner."""
DATABASE_PORT = 5432
ARCHIVE_TABLE = "argo_workflows"
"""The archive's table (the controller creates it and its companions, `argo_archived_workflows*`)."""
POSTGRES_OPERATOR_PORTS = (8000, DATABASE_PORT)
"""What CloudNativePG's operator reaches on the database instances (its manager, PostgreSQL)."""
DATABASE_PODS = "cnpg.io/cluster"
"""The label CloudNativePG puts on a Cluster's pods (value: the Cluster's name)."""
ARCHIVE_CLIENTS = [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "argo-workflows",
                                                     "app.kubernetes.io/name": f"argo-workflows-{component}"}}}
                   for component in ("workflow-controller", "server")]
"""The controller's and the server's pods (the chart's selector labels): the archive's clients."""
CA_DIR = "/etc/argo/postgres-ca"
"""Where the controller and the server find the Cluster's CA (PGSSLROOTCERT: the driver verifies the server)."""


@dataclass(frozen=True)
class ArgoWorkflowsArgs:
    """What Argo Workflows needs from the spec: its block and the sign-on's group names."""

    argo: Any
    """pipelines.argo (plinth.spec.models.ArgoWorkflows)."""
    identity: Any
    """identity (plinth.spec.models.SignOn): the Kubernetes names of the teams' groups."""
    artifacts: bool = False
    """Each team gets its artifact repository: on an existing cluster when the object store is on
    (storage.objectStore), its artifacts bucket there; on eks and gke always, the target's artifacts bucket, as the
    team's own cloud identity (`workflows-<team>`)."""
    oidc: Any = None
    """identity.oidc (plinth.spec.models.Oidc) when the server signs people on through it: the server on, its
    hostname on the platform Gateway and clients.argo set (the rules report what is missing)."""
    admin_group: str = ""
    """rbac.platformAdminGroup: the admins' account in the UI."""
    team_groups: tuple[str, ...] = ()
    """Every team's groups (with sign-on): the login account's rule."""
    database_storage_class: str = ""
    """StorageClass of the archive's database volumes: `archive.storageClass`, Longhorn's `longhorn` when it is
    on, else "" (the cluster's default)."""

    @property
    def archive(self):
        """pipelines.argo.archive when on, else None."""
        return self.argo.archive if self.argo.archive.enabled else None

    @property
    def host(self) -> str | None:
        """The server's host name on the platform Gateway (only with its sign-on)."""
        return self.argo.hostname if self.oidc else None


def image_keys(ref: str, ctx: PlatformContext) -> dict:
    """The chart's {registry, repository, tag} of a catalog image, mirrored in air-gap mode."""
    image = ImageRef.parse(ref).mirrored(ctx.mirror_registry)
    return {"registry": image.registry, "repository": image.repository, "tag": image.tag}


class ArgoWorkflows(HelmService):
    """The Argo Workflows controller (plinth:pipelines:ArgoWorkflows)."""

    type_token = "plinth:pipelines:ArgoWorkflows"
    capability = "pipelines"
    capability_fix = "enable pipelines.argo"
    chart_key = "argo-workflows"
    spec_path = ("pipelines", "argo")
    # The controller (and the server) run non-root, no privilege escalation, every capability dropped,
    # RuntimeDefault seccomp, read-only root.
    pod_security = "restricted"

    secrets = (CLIENT_SECRET,)

    @classmethod
    def block(cls, spec: PlatformSpec) -> ArgoWorkflowsArgs:
        argo, oidc = spec.pipelines.argo, spec.identity.oidc
        signs_on = bool(argo.server and argo.hostname and oidc and oidc.clients.argo and gateway_serves(spec))
        groups = sorted({g for team in spec.teams for role in (team.groups.data_scientist, team.groups.ml_engineer,
                                                                team.groups.viewer) for g in role})
        artifacts = spec.target.type != "existing" or spec.storage.object_store.enabled
        storage_class = spec.storage.volume_class(argo.archive.storage_class)
        return ArgoWorkflowsArgs(argo, spec.identity, artifacts, oidc if signs_on else None,
                                 spec.rbac.platform_admin_group, tuple(groups) if signs_on else (), storage_class)

    @classmethod
    def enabled(cls, spec: PlatformSpec) -> bool:
        return spec.pipelines.argo.enabled

    @classmethod
    def rules(cls, spec) -> Iterator[Violation]:
        argo = spec.pipelines.argo
        if argo.enabled and spec.metadata.environment == "prod" and argo.replicas == 1:
            yield Violation(("pipelines", "argo", "replicas"), "prod runs at least 2 workflow controllers (one "
                            "leads, the other takes over within the Lease's term)", "argo-prod-ha",
                            "remove replicas (2 in staging and prod), or set 2 or more")
        yield from server_sign_on_rules(spec)
        if argo.enabled and spec.target.type != "existing" and spec.teams and not spec.network.cilium.enabled:
            # Team namespaces deny egress; the bucket is reached by its cloud names (object_store_egress).
            yield Violation(("pipelines", "argo", "enabled"), f"workflow pods keep their artifacts in the "
                            f"{spec.target.type} artifacts bucket, and team namespaces are default-deny for egress: "
                            "without Cilium nothing lets them reach the bucket by name", "workflow-artifacts-egress",
                            "enable network.cilium (egress to the cloud's object store by name)")

    @classmethod
    def identities(cls, spec) -> tuple[Identity, ...]:
        # Each team's workflows read and write their own prefix of the artifacts bucket on eks and gke, as the
        # team's workflow account; the archive's database backs up with its own cloud identity.
        argo = spec.pipelines.argo
        if not argo.enabled:
            return ()
        database = database_identities(spec, NAMESPACE, DATABASE) if argo.archive.enabled else ()
        return (*workflow_identities(spec), *database)

    @classmethod
    def needs(cls, spec) -> tuple[Need, ...]:
        argo = spec.pipelines.argo
        if argo.enabled and argo.server and argo.hostname:
            return (Need("gateway", ("pipelines", "argo", "hostname"), "the Argo Server's host name is served by "
                         "the platform Gateway", "argo", "remove hostname (the server is then reachable in-cluster "
                         "only)"),)
        return ()

    @classmethod
    def gateway_host(cls, spec) -> GatewayHost | None:
        argo = spec.pipelines.argo
        return GatewayHost(NAMESPACE, argo.hostname, ("pipelines", "argo", "hostname")) \
            if argo.enabled and argo.server and argo.hostname else None

    @classmethod
    def needed_secrets(cls, spec) -> tuple[StackSecret, ...]:
        # The Argo Server's client secret (the teams' artifact keys come through Vault).
        return (CLIENT_SECRET,) if cls.enabled(spec) and cls.block(spec).oidc else ()

    @classmethod
    def ingress(cls, block: ArgoWorkflowsArgs, ctx: PlatformContext) -> tuple[Peer, ...]:
        # The Gateway's proxies reach the server behind its route (and nothing else of the namespace); the
        # CloudNativePG operator, the archive's database instances (its manager and PostgreSQL).
        peers = [Peer("gateway", ports=(SERVER_PORT,), entity="ingress")] if block.host else []
        if block.archive:
            peers.append(Peer("postgres-operator", CHARTS["cloudnative-pg"].namespace, POSTGRES_OPERATOR_PORTS))
        return tuple(peers)

    @classmethod
    def isolated_pods(cls, block: ArgoWorkflowsArgs, ctx: PlatformContext) -> str | None:
        # The archive's instances: only the controller and the server reach them (archive_ingress).
        return DATABASE_PODS if block.archive else None

    @classmethod
    def user_values(cls, block: ArgoWorkflowsArgs) -> dict:
        return dict(block.argo.values)

    @classmethod
    def replicas(cls, block: ArgoWorkflowsArgs, ctx: PlatformContext) -> int:
        return ctx.replicas(block.argo.replicas)

    @classmethod
    def images(cls, block: ArgoWorkflowsArgs, ctx: PlatformContext) -> tuple[str, ...]:
        controller, executor, server = cls.chart().images
        return (controller, executor, server) if block.argo.server else (controller, executor)

    @classmethod
    def endpoints(cls, block: ArgoWorkflowsArgs, ctx: PlatformContext) -> dict[str, str]:
        if block.host:
            return {"server": f"http://{ARGO_SERVER_SERVICE[1]}.{NAMESPACE}.svc:{SERVER_PORT}",
                    "url": f"https://{block.host}"}
        return {"server": f"https://{ARGO_SERVER_SERVICE[1]}.{NAMESPACE}.svc:{SERVER_PORT}"} if block.argo.server \
            else {}

    @classmethod
    def owned_values(cls, block: ArgoWorkflowsArgs, ctx: PlatformContext) -> dict:
        controller, executor, server = cls.chart().images
        replicas = cls.replicas(block, ctx)
        container = {**restricted_container(read_only_root=True), "runAsNonRoot": True}
        # In-cluster: each request carries its caller's own Kubernetes token (the team's RBAC applies), over TLS
        # (the server's own certificate; the chart's default is plain HTTP). On the Gateway: the provider's
        # sign-on only; TLS ends at the Gateway (its certificate from the platform issuer).
        auth = sso_values(block.oidc, block.host, block.admin_group) if block.host else {
            "authModes": ["client"], "sso": {"enabled": False}}
        # With the archive, the controller writes it and the server reads it: both verify the database's
        # certificate against the Cluster's CA.
        database = database_access() if block.archive else {}
        persistence = {"persistence": archive_persistence(block.archive.ttl)} if block.archive else {}
        server_database = {key: [*auth.get(key, []), *value] for key, value in database.items()}
        return {
            # Minified CRDs as templates: the default (full) downloads them from a hook Job at install time.
            "crds": {"install": True, "full": False, "keep": True},
            "images": {"pullPolicy": "IfNotPresent", "pullSecrets": [{"name": s} for s in ctx.image_pull_secrets]},
            # One controller for every team namespace: a ClusterRole of explicit verbs (no wildcard), no Secrets.
            "singleNamespace": False,
            "controller": {
                "image": image_keys(controller, ctx),
                "replicas": replicas,
                # A drain takes one controller at a time (the chart's budget, with the replicas).
                "pdb": {"enabled": replicas > 1, "maxUnavailable": 1},
                # Plinth puts each team's account and Role in its namespace (team_objects): none from the chart.
                "workflowNamespaces": [],
                "rbac": {"create": True, "secretWhitelist": [], "accessAllSecrets": False,
                         "writeConfigMaps": False},
                "podSecurityContext": restricted_pod(),
                "securityContext": container,
                "resources": CONTROLLER_RESOURCES,
                "metricsConfig": {"enabled": True},
                "serviceMonitor": {"enabled": ctx.monitoring, "namespace": NAMESPACE},
                **persistence,
                **database,
                # Every workflow runs as its team's account, restricted, unless it names another.
                "workflowDefaults": {"spec": {
                    "serviceAccountName": WORKFLOW_ACCOUNT,
                    "securityContext": restricted_pod(),
                }},
            },
            # The init and wait containers of every workflow pod (the controller's --executor-image).
            "executor": {"image": image_keys(executor, ctx),
                         "securityContext": restricted_container(standalone=True),
                         "resources": EXECUTOR_RESOURCES},
            # A main container's defaults (a workflow's own settings win).
            "mainContainer": {"securityContext": restricted_container(standalone=True)},
            "workflow": {"serviceAccount": {"create": False}, "rbac": {"create": False}},
            "server": {
                "enabled": block.argo.server,
                "image": image_keys(server, ctx),
                **auth,
                **server_database,
                "secure": not block.host,
                "replicas": replicas,
                "pdb": {"enabled": replicas > 1, "maxUnavailable": 1},
                "podSecurityContext": restricted_pod(),
                "securityContext": container,
                "resources": SERVER_RESOURCES,
                # Plinth's own route (objects), none of the chart's.
                "ingress": {"enabled": False},
                "httproute": {"enabled": False},
            },
        }

    def prerequisites(self, name: str, block: ArgoWorkflowsArgs, ctx: PlatformContext,
                      opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        made = server_prerequisites(name, NAMESPACE, block.oidc, ctx, opts) if block.host else []
        if block.archive:
            policy = "allow-archive-clients"
            made.append(k8s.networking.v1.NetworkPolicy(
                resource_name(name, policy), metadata=ctx.metadata(policy, name, namespace=NAMESPACE),
                spec=archive_ingress(), opts=opts))
            # The Cluster before the release: the controller reads its `-app` Secret at start.
            made += postgres_cluster(resource_name(name, "postgres"), DATABASE, NAMESPACE, name,
                                     cluster_spec(DATABASE_NAME, block.archive.database_size, ctx,
                                                  block.database_storage_class), ctx, opts)
        return made

    def objects(self, name: str, block: ArgoWorkflowsArgs, ctx: PlatformContext, opts: pulumi.ResourceOptions) -> None:
        if block.archive and ctx.monitoring:
            instance_monitor(resource_name(name, "postgres", "monitor"), DATABASE, NAMESPACE, name, ctx, opts)
        if not block.host:
            return
        server_accounts(name, NAMESPACE, block.admin_group, block.team_groups, ctx, opts)
        gateway_route(resource_name(name, "server-route"), ctx.metadata("argo-server", name, namespace=NAMESPACE),
                      platform_listener(NAMESPACE), [whole_host_rule(ARGO_SERVER_SERVICE[1], SERVER_PORT, "60s")],
                      opts, hostname=block.host)

    def team_objects(self, name: str, block: ArgoWorkflowsArgs, ctx: PlatformContext, team: Team,
                     opts: pulumi.ResourceOptions) -> None:
        key = resource_name(name, team.name)

        def meta(obj: str) -> dict:
            return ctx.metadata(obj, name, namespace=team.name, team=team.name, cost_center=team.cost_center)

        # The executor talks to the API server with the pod's token: this account's only rights are its Role's. On
        # eks and gke it is also the team's cloud identity for its artifacts (workflow_identities).
        k8s.core.v1.ServiceAccount(
            resource_name(key, "workflow-account"),
            metadata=ctx.metadata(WORKFLOW_ACCOUNT, name, namespace=team.name, team=team.name,
                                  cost_center=team.cost_center,
                                  annotations=ctx.target.annotations(team.name, WORKFLOW_ACCOUNT) or None),
            automount_service_account_token=True,
            image_pull_secrets=[{"name": PULL_SECRET}] if ctx.pull_secret else None, opts=opts)
        bind(resource_name(key, "executor"), meta(EXECUTOR_ROLE), EXECUTOR_RULES,
             [{"kind": "ServiceAccount", "name": WORKFLOW_ACCOUNT, "namespace": team.name}], opts)
        groups = block.identity.kubernetes_group
        users = [*team.groups.data_scientist, *team.groups.ml_engineer]
        for suffix, role, rules, members, sso_account in (
                ("users", USER_ROLE, USER_RULES, users, USER_ACCOUNT),
                ("viewers", VIEWER_ROLE, VIEWER_RULES, list(team.groups.viewer), VIEWER_ACCOUNT)):
            if not members:
                continue
            subjects = _groups(members, groups)
            if block.host:  # with the server's sign-on, the same Role for the account the team acts as there
                account(resource_name(key, suffix, "sso"), meta(sso_account), members, opts)
                subjects.append({"kind": "ServiceAccount", "name": sso_account, "namespace": team.name})
            bind(resource_name(key, suffix), meta(role), rules, subjects, opts)
        if block.artifacts:
            artifact_repository(key, team.name, meta, ctx.platform, ctx.target, opts)
        if block.artifacts and ctx.target.cloud and ctx.cilium:
            # The cloud's object store and token service by name: workflow pods (and only they) reach them.
            policy = "allow-workflows-to-bucket"
            network_policy("CiliumNetworkPolicy", resource_name(key, policy),
                           {"endpointSelector": WORKFLOW_PODS, "egress": object_store_egress(ctx.target)},
                           meta(policy), ctx, opts)
        # Team namespaces deny egress by default: workflow pods (and only they) reach the API server.
        found = peer_policy("Egress", Peer("apiserver", ports=APISERVER_PORTS, entity="kube-apiserver"), ctx)
        if found:
            kind, _, spec = found
            policy = "allow-workflows-to-apiserver"
            selector = "endpointSelector" if kind == "CiliumNetworkPolicy" else "podSelector"
            network_policy(kind, resource_name(key, policy), {**spec, selector: WORKFLOW_PODS}, meta(policy), ctx,
                           opts)


def archive_persistence(ttl: str) -> dict:
    """The controller's `persistence` (its ConfigMap's, Argo's PersistConfig): every finished workflow archived in
    the Cluster's database as its owner, the credentials from the operator's `-app` Secret (the chart's
    ClusterRoles read that one Secret by name), verified TLS; archived rows older than `ttl` deleted."""
    secret = f"{DATABASE}-app"
    return {
        "archive": True,
        "archiveTTL": ttl,
        "postgresql": {
            "host": f"{DATABASE}-rw.{NAMESPACE}.svc", "port": DATABASE_PORT, "database": DATABASE_NAME,
            "tableName": ARCHIVE_TABLE,
            "userNameSecret": {"name": secret, "key": "username"},
            "passwordSecret": {"name": secret, "key": "password"},
            "ssl": True, "sslMode": "verify-full",
        },
    }


def archive_ingress() -> dict:
    """Who in `argo` reaches the archive's instances (the namespace's `allow-same-namespace` leaves them out): the
    controller and the server on PostgreSQL's port only; the instances and the Cluster's jobs one another
    (replication, and the instance manager). The operator and Prometheus come in through the namespace's peers."""
    own = {"podSelector": {"matchLabels": {DATABASE_PODS: DATABASE}}}
    return {"podSelector": {"matchLabels": {DATABASE_PODS: DATABASE}}, "policyTypes": ["Ingress"], "ingress": [
        {"from": ARCHIVE_CLIENTS, "ports": [{"protocol": "TCP", "port": DATABASE_PORT}]},
        {"from": [own], "ports": [{"protocol": "TCP", "port": port} for port in POSTGRES_OPERATOR_PORTS]}]}


def database_access() -> dict:
    """The Cluster's CA in a pod (controller or server) and PGSSLROOTCERT naming it: the driver (pgx) reads libpq's
    environment, so `sslMode: verify-full` checks the server's certificate against the Cluster's own CA."""
    return {
        "extraEnv": [{"name": "PGSSLROOTCERT", "value": f"{CA_DIR}/ca.crt"}],
        "volumes": [{"name": "postgres-ca", "secret": {"secretName": f"{DATABASE}-ca",
                                                       "items": [{"key": "ca.crt", "path": "ca.crt"}]}}],
        "volumeMounts": [{"name": "postgres-ca", "mountPath": CA_DIR, "readOnly": True}],
    }


def workflow_identities(spec) -> tuple[Identity, ...]:
    """eks and gke: one cloud identity per team, trusted by its workflow account only, reading and writing the
    team's prefix of the artifacts bucket and nothing else (the IAM policy's s3:prefix condition and object ARN on
    eks; on gke the binding's condition on the object path and on the listing's prefix)."""
    if spec.target.type == "existing":
        return ()
    return tuple(Identity(f"workflows-{team.name}", team.name, WORKFLOW_ACCOUNT,
                          f"bucket-rw:artifacts/{workflow_artifacts_key(team.name)}") for team in spec.teams)


def artifact_repository(key: str, team: str, meta, platform: str, facts: TargetFacts,
                        opts: pulumi.ResourceOptions) -> None:
    """The team's default artifact repository: its prefix of the artifacts bucket. On an existing cluster with
    its own identity's keys (Secret ARTIFACTS_SECRET, from Vault through the secrets operator; the controller
    mounts it into the workflow pods that move artifacts, nobody else in the namespace reads it); on eks and gke
    with the workflow account's cloud identity (no Secret)."""
    repository = REPOSITORY_KEYS[facts.type]
    k8s.core.v1.ConfigMap(
        resource_name(key, "artifact-repositories"),
        metadata={**meta(ARTIFACT_REPOSITORIES), "annotations": {DEFAULT_REPOSITORY: repository}},
        data={repository: repository_config(platform, team, facts)}, opts=opts)


def repository_config(platform: str, team: str, facts: TargetFacts | None = None) -> str:
    """The repository (Argo's ArtifactRepository, as YAML; JSON is YAML) in a stable key order, every key under the
    team's prefix. On an existing cluster: HTTPS to the store's S3 Service in the cluster, trusting the platform CA
    of the team's namespace (ObjectStore.team_objects), like every other client of it. On eks: the region's S3
    endpoint with the SDK's credentials (the pod's IRSA web identity); on gke: GCS with the application default
    credentials (Workload Identity). No key Secret, no CA on a cloud."""
    key_format = f"{workflow_artifacts_key(team)}/{{{{workflow.name}}}}/{{{{pod.name}}}}"
    if facts is not None and facts.type == "eks":
        return json.dumps({"archiveLogs": False, "s3": {
            "bucket": facts.bucket("artifacts"), "endpoint": f"s3.{facts.region}.amazonaws.com", "insecure": False,
            "region": facts.region, "keyFormat": key_format, "useSDKCreds": True}}, sort_keys=True)
    if facts is not None and facts.type == "gke":
        return json.dumps({"archiveLogs": False, "gcs": {"bucket": facts.bucket("artifacts"),
                                                         "keyFormat": key_format}}, sort_keys=True)
    return json.dumps({"archiveLogs": False, "s3": {
        "bucket": bucket(platform, "artifacts"),
        "endpoint": ENDPOINT.removeprefix("https://"),
        "insecure": False,
        "caSecret": {"name": CA_SECRET, "key": "ca.crt"},
        "region": S3_REGION,
        "keyFormat": key_format,
        "accessKeySecret": {"name": ARTIFACTS_SECRET, "key": "accessKey"},
        "secretKeySecret": {"name": ARTIFACTS_SECRET, "key": "secretKey"},
    }}, sort_keys=True)


def server_sign_on_rules(spec) -> Iterator[Violation]:
    """The Argo Server on the Gateway: only with the server on, at a name the listener serves, and behind the
    provider's sign-on (ui-sign-on); its client, only with that host name."""
    argo, oidc, at = spec.pipelines.argo, spec.identity.oidc, ("pipelines", "argo")
    if argo.enabled and argo.hostname:
        if not argo.server:
            yield Violation((*at, "hostname"), "the host name is the Argo Server's, and server is false",
                            "argo-server-hostname", "set server: true, or remove hostname")
        else:
            yield from gateway_hostname_rules(spec, at, argo.hostname, "argo")
        if not (oidc and oidc.clients.argo):
            yield Violation((*at, "hostname"), "the Argo Server on the platform Gateway without sign-on",
                            "ui-sign-on", "set identity.oidc.clients.argo (and the stack secret "
                            "plinth:argoOidcClientSecret)" if oidc else "set identity.oidc with clients.argo (and "
                            "the stack secret plinth:argoOidcClientSecret), or remove hostname")
    if oidc and oidc.clients.argo and not (argo.enabled and argo.server and argo.hostname):
        yield Violation(("identity", "oidc", "clients", "argo"), "the Argo Server signs on through the provider at "
                        "its own host name, and pipelines.argo with server and hostname is not set",
                        "argo-sign-on-host", "enable pipelines.argo with server: true and a hostname, or remove "
                        "clients.argo")


def _groups(names, kubernetes_group) -> list[dict]:
    return [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": kubernetes_group(group)}
            for group in names]


def bind(key: str, metadata: dict, rules: list[dict], subjects: list[dict], opts: pulumi.ResourceOptions) -> None:
    """A Role of `rules` and its binding to `subjects`, both named as `metadata`."""
    role = k8s.rbac.v1.Role(key, metadata=metadata, rules=rules, opts=opts)
    k8s.rbac.v1.RoleBinding(
        key, metadata=metadata,
        role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": metadata["name"]},
        subjects=subjects, opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[role])))
