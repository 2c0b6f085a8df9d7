"""The private Python package index (registry.pythonIndex): pypiserver, and pip configured in every team.

With `enabled`, Plinth runs pypiserver in its own namespace (dev: one replica on a ReadWriteOnce volume;
staging and prod: two replicas on one ReadWriteMany volume, with a PodDisruptionBudget; uploads behind
htpasswd accounts, no fallback to a public index) and, with a `hostname`, routes it
through the platform Gateway. With `url` instead, it runs nothing and points the teams at that index.
Either way every team namespace gets the ConfigMap `pip-config` (key `pip.conf`). Why pypiserver,
and how to fill the index: see README.md beside this file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import IMAGES, PLATFORM_NAMESPACES, mirror_image
from plinth.context import PULL_SECRET, PlatformContext, StackSecret, resource_name
from plinth.objects import (
    airgap_egress_policy,
    children,
    disruption_budget,
    gateway_route,
    namespace,
    platform_ingress,
    pull_secret,
    stack_secret,
    whole_host_rule,
)
from plinth.securitycontext import restricted_container, restricted_pod
from plinth.service import GatewayHost, Need, Peer, PlatformService, gateway_hostname_rules
from plinth.spec.errors import Violation
from plinth.spec.models import PlatformSpec, Team
from plinth.vocabulary import platform_listener

UPLOADERS = StackSecret("pythonIndexHtpasswd", "htpasswd lines of the accounts that may upload to the Python index")
"""The accounts that may upload (bcrypt htpasswd lines): the index Plinth runs needs them."""

NAMESPACE = PLATFORM_NAMESPACES["python-index"]
SERVICE = "pypiserver"
PORT = 8080
HTPASSWD_SECRET = "python-index-htpasswd"
PIP_CONFIG = "pip-config"
"""ConfigMap in every team namespace; its key `pip.conf` is what PIP_CONFIG_FILE points at."""

# Paths inside the container (the image's layout); the real-server test maps exactly these.
PACKAGES_DIR = "/data/packages"
HTPASSWD_DIR = "/etc/pypiserver"
HTPASSWD_FILE = f"{HTPASSWD_DIR}/htpasswd"
HEALTH_PATH = "/health"
UID = 10001
"""User and group the server runs as: a high UID no host account has (the image's own user is 9898); the
package volume belongs to it through fsGroup, the image's files are read-only to it."""
UPLOAD_TMP = "4Gi"
SHARED_REPLICAS = 2
"""Replicas in staging and prod, all serving the one ReadWriteMany package volume."""
"""Room for request bodies the server buffers in /tmp during an upload (the largest wheel, twice)."""


def server_args() -> list[str]:
    """pypi-server's arguments: uploads behind the htpasswd accounts, downloads open, never a redirect
    to a public index, no overwriting a published file.

    `--server auto` is waitress: pypiserver tries it first and the image installs it (threaded, one
    process); the image's gunicorn is its entrypoint script's choice only when given no arguments.
    `--backend simple-dir` lists the directory on every request: the caching backend learns of new files
    from inotify, which never fires for a file another replica wrote on a shared (NFS) volume.
    """
    return [
        "run",
        "--server", "auto",
        "--host", "0.0.0.0",
        "--port", str(PORT),
        "--authenticate", "update",
        "--passwords", HTPASSWD_FILE,
        "--disable-fallback",
        "--health-endpoint", HEALTH_PATH,
        "--backend", "simple-dir",
        PACKAGES_DIR,
    ]


def in_cluster_url() -> str:
    """The index URL pods use (the Service's DNS name; resolves in any cluster domain)."""
    return f"http://{SERVICE}.{NAMESPACE}.svc:{PORT}/simple/"


def pip_conf(index_url: str) -> str:
    """pip's config for teams: one index, no other. Plain HTTP needs `trusted-host`; HTTPS is verified."""
    lines = ["# Managed by Plinth (registry.pythonIndex).", "[global]", f"index-url = {index_url}"]
    parts = urlsplit(index_url)
    if parts.scheme == "http":
        lines.append(f"trusted-host = {parts.netloc}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class PythonIndexArgs:
    """What the index needs from the spec."""

    index: Any
    """registry.pythonIndex (plinth.spec.models.PythonIndex)."""
    gateway: bool
    """The platform Gateway is on (network.cilium with gatewayApi): a `hostname` gets a route."""


class PythonIndex(PlatformService):
    """pypiserver and the teams' pip configuration (plinth:registry:PythonIndex)."""

    secrets = (UPLOADERS,)

    @classmethod
    def enabled(cls, spec: PlatformSpec) -> bool:
        index = spec.registry.python_index
        return bool(index.enabled or index.url)

    @classmethod
    def needed_secrets(cls, spec) -> tuple[StackSecret, ...]:
        index = spec.registry.python_index
        return (UPLOADERS,) if index.enabled and not index.url else ()

    @classmethod
    def needs(cls, spec) -> tuple[Need, ...]:
        index = spec.registry.python_index
        if not (index.enabled and index.hostname):
            return ()
        return (Need("gateway", ("registry", "pythonIndex", "hostname"), "the index's host name is served by the "
                     "platform Gateway", "python-index", "remove hostname (teams use the in-cluster Service either "
                     "way)"),)

    @classmethod
    def gateway_host(cls, spec) -> GatewayHost | None:
        index = spec.registry.python_index
        return GatewayHost(NAMESPACE, index.hostname, ("registry", "pythonIndex", "hostname")) \
            if index.enabled and index.hostname else None

    @classmethod
    def rules(cls, spec) -> Iterator[Violation]:
        index, at = spec.registry.python_index, ("registry", "pythonIndex")
        if index.enabled and index.url:
            yield Violation((*at, "url"), "the Python index is both run by Plinth (enabled) and an existing one "
                            "(url)", "python-index-one-source", "remove url to run Plinth's index, or set "
                            "enabled: false to point the teams at the index at url")
        if index.hostname and not index.enabled:
            yield Violation((*at, "hostname"), "a host name exposes the index Plinth runs, which is off",
                            "python-index-hostname", "remove hostname, or set enabled: true")
        elif index.hostname:
            yield from gateway_hostname_rules(spec, at, index.hostname, "python-index")

    @classmethod
    def block(cls, spec) -> PythonIndexArgs:
        cilium = spec.network.cilium
        return PythonIndexArgs(spec.registry.python_index, cilium.enabled and cilium.gateway_api)

    @classmethod
    def images(cls, block: PythonIndexArgs, ctx: PlatformContext) -> tuple[str, ...]:
        return (IMAGES["pypiserver"],) if block.index.enabled else ()

    @classmethod
    def endpoints(cls, block: PythonIndexArgs, ctx: PlatformContext) -> dict[str, str]:
        public = {"url": f"https://{block.index.hostname}"} if block.index.enabled and block.index.hostname else {}
        return {"indexUrl": cls.index_url(block), **public}

    @classmethod
    def index_url(cls, block: PythonIndexArgs) -> str:
        """What every team's pip uses: Plinth's index, or the existing one at `url`."""
        return in_cluster_url() if block.index.enabled else block.index.url

    @classmethod
    def ingress(cls, block: PythonIndexArgs, ctx: PlatformContext) -> tuple[Peer, ...]:
        # The Gateway's proxies, when they route the index's host name.
        return (Peer("gateway", ports=(PORT,), entity="ingress"),) if cls.routed(block) else ()

    @classmethod
    def routed(cls, block: PythonIndexArgs) -> bool:
        return bool(block.index.enabled and block.index.hostname and block.gateway)

    @classmethod
    def tenant_egress(cls, block: PythonIndexArgs, ctx: PlatformContext) -> tuple[Peer, ...]:
        # NetworkPolicy ports are the pod's port; an index at `url` is outside the platform.
        return (Peer("python-index", NAMESPACE, (PORT,)),) if block.index.enabled else ()

    def __init__(self, name: str, block: PythonIndexArgs, ctx: PlatformContext,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:registry:PythonIndex", name, None, opts)
        if block.index.enabled:
            self._server(name, block, ctx, children(self, ctx, opts))
        self.register_outputs(self.endpoints(block, ctx))

    def _server(self, name: str, block: PythonIndexArgs, ctx: PlatformContext, child: pulumi.ResourceOptions) -> None:
        index = block.index
        htpasswd = ctx.secrets.python_index_htpasswd
        if htpasswd is None:
            raise ValueError("registry.pythonIndex needs the stack secret plinth:pythonIndexHtpasswd")
        ns = namespace(name, NAMESPACE, name, ctx, child)
        in_ns = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[ns]))
        airgap_egress_policy(name, ctx.metadata("airgap-egress", name, namespace=NAMESPACE), ctx, in_ns)
        platform_ingress(name, NAMESPACE, name, self.namespace_peers(block, ctx, NAMESPACE), ctx, in_ns)
        replicas = SHARED_REPLICAS if ctx.prod_like else 1
        waits: list[pulumi.Resource] = []
        pulls = pull_secret(name, ctx.metadata(PULL_SECRET, name, namespace=NAMESPACE), ctx, in_ns)
        if pulls:
            waits.append(pulls)
        waits.append(stack_secret(resource_name(name, "htpasswd"),
                                  ctx.metadata(HTPASSWD_SECRET, name, namespace=NAMESPACE),
                                  "plinth:pythonIndexHtpasswd", {"htpasswd": htpasswd}, in_ns))
        waits.append(k8s.core.v1.PersistentVolumeClaim(
            resource_name(name, "packages"),
            metadata=ctx.metadata(f"{SERVICE}-packages", name, namespace=NAMESPACE),
            # No storageClassName: the cluster's default StorageClass.
            # Shared by every replica in staging and prod (the default StorageClass must offer it: Longhorn does).
            spec={"accessModes": ["ReadWriteMany" if replicas > 1 else "ReadWriteOnce"],
                  "resources": {"requests": {"storage": index.storage}}},
            opts=in_ns,
        ))
        selector = {"app.kubernetes.io/component": name, "app.kubernetes.io/instance": ctx.platform,
                    "app.kubernetes.io/name": SERVICE}
        meta = ctx.metadata(SERVICE, name, namespace=NAMESPACE, labels={"app.kubernetes.io/name": SERVICE})
        k8s.apps.v1.Deployment(
            resource_name(name, "server"),
            metadata=meta,
            spec={
                # dev: one writer on a ReadWriteOnce volume, and Recreate so a rollout never waits on a
                # volume the old pod still holds. Shared volume: replicas roll one at a time.
                "replicas": replicas,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
                if replicas > 1 else {"type": "Recreate"},
                "revisionHistoryLimit": 3,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": meta["labels"]},
                    "spec": self._pod(ctx, selector if replicas > 1 else None),
                },
            },
            opts=pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=waits)),
        )
        if replicas > 1:
            disruption_budget(resource_name(name, "pdb"), meta, selector, in_ns)
        k8s.core.v1.Service(
            resource_name(name, "service"),
            metadata=meta,
            spec={"type": "ClusterIP", "selector": selector,
                  "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}]},
            opts=in_ns,
        )
        if self.routed(block):
            # Uploading a large wheel outlasts the proxy's default request timeout.
            gateway_route(resource_name(name, "route"), ctx.metadata(SERVICE, name, namespace=NAMESPACE),
                          platform_listener(NAMESPACE), [whole_host_rule(SERVICE, PORT, "10m")], in_ns,
                          hostname=index.hostname)

    @staticmethod
    def _pod(ctx: PlatformContext, spread: dict | None) -> dict:
        """`spread`: the replicas' labels, to prefer one replica per node."""
        probe = {"httpGet": {"path": HEALTH_PATH, "port": "http"}, "timeoutSeconds": 5}
        affinity = {"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                               "labelSelector": {"matchLabels": spread}}}]}}} if spread else {}
        return {
            **affinity,
            "automountServiceAccountToken": False,
            "imagePullSecrets": [{"name": s} for s in ctx.image_pull_secrets],
            # fsGroup: the volume's root belongs to the server's group.
            "securityContext": restricted_pod(UID, UID, UID, fs_group_on_root_mismatch=True),
            "containers": [{
                "name": SERVICE,
                "image": mirror_image(IMAGES["pypiserver"], ctx.mirror_registry),
                "imagePullPolicy": "Always",  # the tag is pinned; Always re-checks it against the mirror
                # The server itself, not the image's entrypoint script (which would try to chown as root).
                "command": ["pypi-server"],
                "args": server_args(),
                "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
                "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
                "readinessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
                "livenessProbe": {**probe, "initialDelaySeconds": 10, "periodSeconds": 20, "failureThreshold": 3},
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"cpu": "1", "memory": "512Mi"}},
                "securityContext": restricted_container(read_only_root=True, standalone=True),
                "volumeMounts": [
                    {"name": "packages", "mountPath": PACKAGES_DIR},
                    {"name": "htpasswd", "mountPath": HTPASSWD_DIR, "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            }],
            "volumes": [
                {"name": "packages", "persistentVolumeClaim": {"claimName": f"{SERVICE}-packages"}},
                # A directory mount (not subPath): the kubelet refreshes it and pypiserver rereads a changed file.
                {"name": "htpasswd", "secret": {"secretName": HTPASSWD_SECRET, "defaultMode": 0o440}},
                {"name": "tmp", "emptyDir": {"sizeLimit": UPLOAD_TMP}},
            ],
        }

    def team_objects(self, name: str, block: PythonIndexArgs, ctx: PlatformContext, team: Team,
                     opts: pulumi.ResourceOptions) -> None:
        k8s.core.v1.ConfigMap(
            resource_name(name, team.name, "pip-config"),
            metadata=ctx.metadata(PIP_CONFIG, name, namespace=team.name, team=team.name,
                                  cost_center=team.cost_center),
            data={"pip.conf": pip_conf(self.index_url(block))},
            opts=opts,
        )
