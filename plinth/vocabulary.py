"""Names several parts of Plinth must agree on: the platform Gateway and its listeners, labels, annotations,
taints and tags, the ledger's name, the workloads allowed on the host.

Modules (which create these objects) and the policies (which check them) both import them from here, so a
name is written once and imports run one way: core (this module) <- modules <- governance.
"""

from __future__ import annotations

from dataclasses import dataclass

from plinth.catalog import PLATFORM_NAMESPACES

GATEWAY_NAME = "plinth"
"""The ONE platform Gateway (namespace plinth-gateway) every HTTPRoute of the platform attaches to."""
GATEWAY_NAMESPACE = PLATFORM_NAMESPACES["gateway"]
TEAM_LISTENER = "https"
"""The wildcard listener (network.gateway.hostname): team namespaces' routes, each team on its own host name
<team>.<domain>."""
SERVING_LISTENER = "serving"
"""The serving host's listener (serving.hostname): team namespaces' routes, each team under its path /<team>/."""
HTTP_LISTENER = "http"
"""The plain listener (80), there only with an ACME issuer: the HTTP-01 solver's routes and the redirect to
https."""
OBJECT_STORE_HOST = f"seaweedfs-s3.{PLATFORM_NAMESPACES['object-store']}.svc"
"""The on-prem object store's S3 API (storage.objectStore): the chart's `seaweedfs-s3` Service, HTTPS only."""
OBJECT_STORE_PORT = 8333
"""Its S3 port (the Service's and the filer pods': what NetworkPolicies name)."""
OBJECT_STORE_ENDPOINT = f"https://{OBJECT_STORE_HOST}:{OBJECT_STORE_PORT}"
"""Where in-cluster S3 clients reach it: path-style, SigV4, TLS from the platform CA."""


def in_cluster_store(repository: str | None) -> tuple[bool, str]:
    """Whether a Triton model repository is in the platform's own object store (s3://<scheme>://<host>:<port>/...,
    Triton's form for an S3 server of one's own), and the scheme it names."""
    scheme, sep, rest = (repository or "").removeprefix("s3://").partition("://")
    if not (repository or "").startswith("s3://") or not sep:
        return False, ""
    host = rest.split("/", 1)[0].rsplit(":", 1)[0]
    return host in (OBJECT_STORE_HOST, f"{OBJECT_STORE_HOST}.cluster.local"), scheme


def platform_listener(namespace: str) -> str:
    """The listener of a platform service's own host name, named by its namespace: only that namespace's
    routes attach to it."""
    return namespace


def gateway_parent_ref(listener: str) -> dict:
    """An HTTPRoute's parentRef to one listener of the platform Gateway (every route of Plinth uses this)."""
    return {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": GATEWAY_NAME,
            "namespace": GATEWAY_NAMESPACE, "sectionName": listener}


@dataclass(frozen=True)
class WebUi:
    """A chart's web UI without a login of its own: anyone who reaches it is in."""

    key: str
    """Its field under identity.uiProxy.hosts."""
    title: str
    namespace: str
    service: str
    port: int
    """The Service's port."""
    pod_port: int
    """The port its pods listen on (what a network policy admits)."""


UIS_WITHOUT_LOGIN: tuple[WebUi, ...] = (
    WebUi("prometheus", "Prometheus", "monitoring", "kube-prometheus-stack-prometheus", 9090, 9090),
    WebUi("alertmanager", "Alertmanager", "monitoring", "kube-prometheus-stack-alertmanager", 9093, 9093),
    WebUi("hubble", "Hubble UI", "kube-system", "hubble-ui", 80, 8081),
    WebUi("longhorn", "the Longhorn UI", "longhorn-system", "longhorn-frontend", 80, 8000),
)
"""The only way to them from the Gateway is the sign-on proxy (identity.uiProxy; policy ui-sign-on)."""
SIGN_ON_NAMESPACE = PLATFORM_NAMESPACES["sign-on"]
"""The sign-on proxy's namespace (identity.uiProxy)."""
GRAFANA_SERVICE = ("monitoring", "kube-prometheus-stack-grafana")
"""Grafana's Service (kube-prometheus-stack's release): with identity.oidc, its route needs Grafana's sign-on."""
ARGO_SERVER_SERVICE = ("argo", "argo-workflows-server")
"""The Argo Server's Service (the argo-workflows release): a route to it needs the server's own sign-on (policy
ui-sign-on)."""
JUPYTERHUB_SERVICE = (PLATFORM_NAMESPACES["jupyterhub"], "proxy-public")
"""(namespace, Service) of JupyterHub's proxy (release `jupyterhub`): what its route on the Gateway sends to."""

LEDGER_NAME = "plinth-ledger"
LEDGER_NAMESPACE = "plinth-system"
SECRET_SOURCE = "plinth.dev/secret-source"
"""Annotation on every Secret Plinth creates: the stack secret (or Kubernetes source) its payload comes from."""
MODEL_LABEL = "plinth.dev/model"
"""The serving module's label on a model server's Deployment (and its pods): the model it serves."""
REGISTERED_MODEL_LABEL = "plinth.dev/registered-model"
"""On a registry-backed model's Deployment and pods: the registered MLflow model it serves."""
REGISTERED_VERSION_LABEL = "plinth.dev/registered-version"
"""On a registry-backed model's Deployment and pods: the registered version (a number) or alias of that track."""
MODEL_URI_ANNOTATION = "plinth.dev/model-uri"
"""On a registry-backed model's Deployment and pods: the MLflow URI its init step downloads (models:/NAME/3,
models:/NAME@alias). The run behind it is known online only (`plinth lineage`)."""
USER_PROVIDED = "plinth.dev/user-provided"
"""Annotation on a workload: the objects of its namespace (Kind/name, comma-separated) its pods use that the spec
says the user creates (a model's repository claim and credentials Secret)."""
GPU = "nvidia.com/gpu"
"""The GPU operator's device-plugin resource, and the key of the taint Plinth puts on GPU nodes
(`nvidia.com/gpu=present:NoSchedule`)."""
GPU_TAINT = {"key": GPU, "value": "present", "effect": "NoSchedule"}
AWS_PUBLIC_ENDPOINT_REASON = "plinth.dev/public-endpoint-reason"
"""Tag on an EKS cluster whose API endpoint the spec deliberately makes public: why (the spec's override reason)."""
GCP_PUBLIC_ENDPOINT_REASON = "plinth-public-endpoint-reason"
"""The same reason as a GKE resource label (GCP label keys allow neither `.` nor `/`)."""

HOST_ACCESS_ALLOWLIST: dict[tuple[str, str, str], str] = {
    ("kube-system", "DaemonSet", "cilium"): "the CNI agent: programs eBPF on the node's network stack and mounts "
    "the BPF filesystem, cgroups and CNI configuration",
    ("kube-system", "DaemonSet", "cilium-envoy"): "Cilium's node proxy (Gateway, L7 policy): the node's network and "
    "the agent's sockets",
    ("kube-system", "DaemonSet", "cilium-node-init"): "on GKE, prepares each node for Cilium (the BPF filesystem, "
    "the node's network configuration) from the host's network and PID namespaces",
    ("kube-system", "Deployment", "cilium-operator"): "runs on the host network so it works before the CNI it "
    "manages is up",
    ("longhorn-system", "DaemonSet", "longhorn-manager"): "manages the node's disks and block devices (iSCSI, /dev, "
    "/proc) for replicated volumes",
    ("longhorn-system", "Job", "longhorn-pre-upgrade"): "Longhorn's upgrade check reads the node's /proc mounts",
    ("gpu-operator", "DaemonSet", "gpu-operator-node-feature-discovery-worker"): "labels GPU nodes from the "
    "node's PCI, kernel and OS facts (/sys, /boot, /usr/lib, os-release)",
    ("node-exporter", "DaemonSet", "kube-prometheus-stack-prometheus-node-exporter"): "node metrics: the host's "
    "network and PID namespaces and its /proc, /sys and root filesystem, read-only",
}
"""The only workloads that may run privileged or with host namespaces or hostPath: (namespace, kind, name) and
why. The GPU operator's own operands (driver, toolkit, device plugin) are created by the operator at run time,
not rendered, and are judged by admission (the admission module's allowlist is this one)."""
