"""The one catalog: Kubernetes version matrix, charts, CRD bundles, images and the mirror rule.

Every module reads versions from here; nothing else in Plinth names a version.
Never "latest": each entry is an exact, released version.

The chart versions are exactly those of the packaged upstream charts the
chart acceptance tier renders (`../shared/charts`, see its INDEX.md); a test
fails when an entry here and that set disagree. Each chart lists the images
it renders with Plinth's values: `plinth images` prints them (and their mirror
names) for air-gap mirroring, and the chart tier proves every image of the
real rendered charts is in that list.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Kubernetes minor versions Plinth plans and validates against. The default is
# what a blueprint gets when it does not say.
KUBERNETES_VERSIONS: tuple[str, ...] = ("1.32", "1.33", "1.34", "1.35")
DEFAULT_KUBERNETES_VERSION = "1.34"


@dataclass(frozen=True)
class Chart:
    """A Helm chart pinned to one version, and the images it runs."""

    repo: str
    """Public chart repository (https:// index or oci:// registry)."""
    name: str
    version: str
    namespace: str
    """Namespace the release is installed into."""
    images: tuple[str, ...] = ()
    """Every image (registry/repository:tag[@digest]) the chart renders with Plinth's values."""

    @property
    def archive(self) -> str:
        """File name of the packaged chart (`helm package`), as a directory chart source holds it."""
        return f"{self.name}-{self.version}.tgz"


@dataclass(frozen=True)
class CrdBundle:
    """Plain CRD manifests (no chart): public release URL and the directory form of a local source."""

    name: str
    version: str
    url: str
    """Public location of the bundle (one multi-document YAML)."""
    directory: str
    """Sub-directory of a directory chart source holding the bundle's files (`crds/<directory>/*.yaml`)."""

    def mirrored_url(self, files: str) -> str:
        """Where an air-gap file mirror (spec airgap.mirror.files) serves the same file."""
        return f"{files.rstrip('/')}/{self.name}/{self.version}/{self.url.rsplit('/', 1)[-1]}"


CHARTS: dict[str, Chart] = {
    "prometheus-operator-crds": Chart(
        "https://prometheus-community.github.io/helm-charts", "prometheus-operator-crds", "31.0.1", "kube-system"
    ),
    "cert-manager": Chart(
        "https://charts.jetstack.io", "cert-manager", "v1.21.1", "cert-manager",
        images=(
            "quay.io/jetstack/cert-manager-acmesolver:v1.21.1",
            "quay.io/jetstack/cert-manager-cainjector:v1.21.1",
            "quay.io/jetstack/cert-manager-controller:v1.21.1",
            "quay.io/jetstack/cert-manager-startupapicheck:v1.21.1",
            "quay.io/jetstack/cert-manager-webhook:v1.21.1",
        ),
    ),
    "cilium": Chart(
        "https://helm.cilium.io", "cilium", "1.20.0", "kube-system",
        images=(
            "quay.io/cilium/cilium-envoy:v1.37.5-1782911245-7cffc778c923f68a77954a53b1a98d6b5353f004"
            "@sha256:583057dd4f7d54cd41efff3c413aa0b148ac201f522e2c3336851fa89c78b039",
            "quay.io/cilium/cilium:v1.20.0@sha256:383968cd5e8873f7976fa76aa6196045643558f4cc9518a207b9335cb24a0e93",
            "quay.io/cilium/hubble-relay:v1.20.0"
            "@sha256:2ca16981c7eb98df0ba9c9d18896bb9ca628b5cbd40dc9801339f4741f91ee94",
            "quay.io/cilium/operator-generic:v1.20.0"
            "@sha256:80744a8cc7c91c2f9e6347629406844eb35d79b30a732c6d41c15b17232a74f3",
            # eks only: the operator build with ENI IPAM.
            "quay.io/cilium/operator-aws:v1.20.0"
            "@sha256:a0e50fa611fa3e2e8b1c9521a3e813576034a0b3d626e9c128ac01f8f7dfd0fa",
            # gke only: the node-init DaemonSet.
            "quay.io/cilium/startup-script:1782916218-36ae25f"
            "@sha256:f99e2beda7324e93ba04d6240d9626a6b9ab023d7d56e3b029d3d9c823ce63ef",
        ),
    ),
    "longhorn": Chart(
        "https://charts.longhorn.io", "longhorn", "1.12.1", "longhorn-system",
        images=(
            "docker.io/longhornio/backing-image-manager:v1.12.1",
            "docker.io/longhornio/csi-attacher:v4.12.0",
            "docker.io/longhornio/csi-node-driver-registrar:v2.17.0",
            "docker.io/longhornio/csi-provisioner:v5.3.0",
            "docker.io/longhornio/csi-resizer:v2.2.1",
            "docker.io/longhornio/csi-snapshotter:v8.6.0",
            "docker.io/longhornio/livenessprobe:v2.19.0",
            "docker.io/longhornio/longhorn-engine:v1.12.1",
            "docker.io/longhornio/longhorn-instance-manager:v1.12.1",
            "docker.io/longhornio/longhorn-manager:v1.12.1",
            "docker.io/longhornio/longhorn-share-manager:v1.12.1",
            "docker.io/longhornio/longhorn-ui:v1.12.1",
            "docker.io/longhornio/support-bundle-kit:v0.0.92",
        ),
    ),
    "kube-prometheus-stack": Chart(
        "https://prometheus-community.github.io/helm-charts", "kube-prometheus-stack", "88.5.3", "monitoring",
        images=(
            "docker.io/grafana/grafana:13.2.0",
            "ghcr.io/jkroepke/kube-webhook-certgen:1.8.7",
            "quay.io/kiwigrid/k8s-sidecar:2.10.1",
            "quay.io/prometheus-operator/prometheus-config-reloader:v0.93.1",
            "quay.io/prometheus-operator/prometheus-operator:v0.93.1",
            "quay.io/prometheus/alertmanager:v0.34.0",
            "quay.io/prometheus/node-exporter:v1.12.1-distroless",
            "quay.io/prometheus/prometheus:v3.14.0-distroless",
            # The operator's default Thanos sidecar image (an argument even with Thanos off).
            "quay.io/thanos/thanos:v0.42.4",
            "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.20.0",
        ),
    ),
    "vault": Chart(
        "https://helm.releases.hashicorp.com", "vault", "0.34.1", "vault",
        # server (also the injected agent), then the injector
        images=("docker.io/hashicorp/vault:2.0.4", "docker.io/hashicorp/vault-k8s:1.7.6"),
    ),
    "vault-secrets-operator": Chart(
        "https://helm.releases.hashicorp.com", "vault-secrets-operator", "1.4.1", "vault-secrets-operator",
        # the operator, then the metrics proxy in front of it (always in the pod)
        images=("docker.io/hashicorp/vault-secrets-operator:1.4.1", "quay.io/brancz/kube-rbac-proxy:v0.18.1"),
    ),
    "harbor": Chart(
        "https://helm.goharbor.io", "harbor", "1.19.1", "harbor",
        images=(
            "docker.io/goharbor/harbor-core:v2.15.1",
            "docker.io/goharbor/harbor-db:v2.15.1",
            "docker.io/goharbor/harbor-exporter:v2.15.1",
            "docker.io/goharbor/harbor-jobservice:v2.15.1",
            "docker.io/goharbor/harbor-portal:v2.15.1",
            "docker.io/goharbor/harbor-registryctl:v2.15.1",
            "docker.io/goharbor/nginx-photon:v2.15.1",
            "docker.io/goharbor/redis-photon:v2.15.1",
            "docker.io/goharbor/registry-photon:v2.15.1",
            "docker.io/goharbor/trivy-adapter-photon:v2.15.1",
        ),
    ),
    "feast": Chart(
        "https://feast-helm-charts.storage.googleapis.com", "feast-feature-server", "0.66.0", "feast",
        images=("quay.io/feastdev/feature-server:0.66.0",),
    ),
    "cloudnative-pg": Chart(
        "https://cloudnative-pg.github.io/charts", "cloudnative-pg", "0.29.0", "cnpg-system",
        images=(
            "ghcr.io/cloudnative-pg/cloudnative-pg:1.30.0",
            # The PostgreSQL operand (operator 1.30.0's default), pinned as imageName in every
            # Cluster Plinth declares.
            "ghcr.io/cloudnative-pg/postgresql:18.4-system-trixie",
        ),
    ),
    # The Barman Cloud plugin of CloudNativePG (plugin v0.13.0): backups of every Cluster. It lives in the
    # operator's namespace, which the operator's service creates.
    "plugin-barman-cloud": Chart(
        "https://cloudnative-pg.github.io/charts", "plugin-barman-cloud", "0.7.0", "cnpg-system",
        images=(
            "ghcr.io/cloudnative-pg/plugin-barman-cloud:v0.13.0",
            # The sidecar the plugin injects into every instance pod of a Cluster that uses it (SIDECAR_IMAGE).
            "ghcr.io/cloudnative-pg/plugin-barman-cloud-sidecar:v0.13.0",
        ),
    ),
    # Velero (1.18.1): the namespaces' objects on a schedule (backups.cluster). The provider plugins (1.14.x
    # pairs with Velero 1.18) are the server's init containers: aws on eks and for the on-prem object store
    # (S3), gcp on gke; a platform runs one of them.
    "velero": Chart(
        "https://vmware-tanzu.github.io/helm-charts", "velero", "12.1.0", "velero",
        images=(
            "docker.io/velero/velero:v1.18.1",
            "docker.io/velero/velero-plugin-for-aws:v1.14.2",
            "docker.io/velero/velero-plugin-for-gcp:v1.14.2",
        ),
    ),
    "redis-operator": Chart(
        "https://ot-container-kit.github.io/helm-charts", "redis-operator", "0.26.1", "redis-operator",
        images=(
            "quay.io/opstree/redis-operator:v0.26.0",
            # The operands of the Redis resources Plinth declares (the versions of the OT `redis` chart 0.16.9).
            "quay.io/opstree/redis-exporter:v1.44.0",
            "quay.io/opstree/redis:v7.0.15",
            # The Sentinels of a replicated Redis (staging and prod; the `redis-replication` chart's version).
            "quay.io/opstree/redis-sentinel:v7.0.15",
        ),
    ),
    "gpu-operator": Chart(
        "https://helm.ngc.nvidia.com/nvidia", "gpu-operator", "v26.7.0", "gpu-operator",
        # The operator's Deployment and hooks, and the operands it composes from the ClusterPolicy's
        # repository/image/version triples (README beside plinth.modules.gpu says which run).
        images=(
            "nvcr.io/nvidia/cloud-native/dcgm:4.6.0-1-ubuntu24.04",
            "nvcr.io/nvidia/cloud-native/gdrdrv:v2.6",
            "nvcr.io/nvidia/cloud-native/k8s-cc-manager:v0.4.3",
            "nvcr.io/nvidia/cloud-native/k8s-driver-manager:v0.12.0",
            "nvcr.io/nvidia/cloud-native/k8s-mig-manager:v0.15.0",
            "nvcr.io/nvidia/cloud-native/nvidia-fs:2.29.4",
            "nvcr.io/nvidia/cloud-native/nvidia-sandbox-device-plugin:v0.0.5",
            "nvcr.io/nvidia/cloud-native/vgpu-device-manager:v0.5.0",
            # The driver image's tag gets the node's OS appended at run time (e.g. -ubuntu24.04).
            "nvcr.io/nvidia/driver:595.91.07",
            "nvcr.io/nvidia/gpu-operator:v26.7.0",
            "nvcr.io/nvidia/k8s-device-plugin:v0.20.0",
            "nvcr.io/nvidia/k8s/container-toolkit:v1.20.0",
            "nvcr.io/nvidia/k8s/dcgm-exporter:4.6.0-4.8.3-distroless",
            "nvcr.io/nvidia/kubevirt-gpu-device-plugin:v1.6.0",
            # The node-feature-discovery subchart (master, worker, gc).
            "registry.k8s.io/nfd/node-feature-discovery:v0.19.0",
        ),
    ),
    # eks only: scales the managed node groups (GKE autoscales its node pools itself). Cluster Autoscaler's
    # minor version follows Kubernetes'; the chart's own (1.35) is pinned for every supported minor (README).
    "cluster-autoscaler": Chart(
        "https://kubernetes.github.io/autoscaler", "cluster-autoscaler", "9.59.0", "cluster-autoscaler",
        images=("registry.k8s.io/autoscaling/cluster-autoscaler:v1.35.0",),
    ),
    # On-prem S3 (storage.objectStore): master, volume and filer (with its S3 API) all run the one image.
    "seaweedfs": Chart(
        "https://seaweedfs.github.io/seaweedfs/helm", "seaweedfs", "4.44.0", "object-store",
        images=("docker.io/chrislusf/seaweedfs:4.44",),
    ),
    # registry.mlflow: the tracking server and its migration init container run the one image. The chart's
    # postgresql, mysql and minio subcharts stay off (the platform's CloudNativePG and object store instead).
    "mlflow": Chart(
        "https://community-charts.github.io/helm-charts", "mlflow", "1.11.5", "mlflow",
        images=("docker.io/burakince/mlflow:3.15.1",),
    ),
    # identity.uiProxy: one oauth2-proxy per web UI without a login of its own. The image is v7.15.6 (the chart's
    # appVersion is 7.15.3): the release the toolchain builds and tests/e2e/test_ui_proxy.py runs.
    "oauth2-proxy": Chart(
        "https://oauth2-proxy.github.io/manifests", "oauth2-proxy", "10.7.0", "sign-on",
        images=("quay.io/oauth2-proxy/oauth2-proxy:v7.15.6",),
    ),
    # pipelines.argo: the workflow controller; argoexec is the init and wait container of every workflow pod (the
    # controller's --executor-image); argocli is the Argo Server (pipelines.argo.server). With crds.full off the
    # chart renders its CRDs as templates: no hook Job, no kubectl image, no download.
    "argo-workflows": Chart(
        "https://argoproj.github.io/argo-helm", "argo-workflows", "1.0.18", "argo",
        images=(
            "quay.io/argoproj/workflow-controller:v4.0.6",
            "quay.io/argoproj/argoexec:v4.0.6",
            "quay.io/argoproj/argocli:v4.0.6",
        ),
    ),
    # pipelines.events: the Argo Events controller; the EventSource and Sensor pods run its image too (its
    # ARGO_EVENTS_IMAGE). The EventBus is JetStream at EVENTBUS_JETSTREAM: its server, config reloader and
    # metrics exporter are the versions the chart's controller ConfigMap lists for it.
    "argo-events": Chart(
        "https://argoproj.github.io/argo-helm", "argo-events", "2.4.22", "argo-events",
        images=(
            "quay.io/argoproj/argo-events:v1.9.10",
            "docker.io/library/nats:2.10.10",
            "docker.io/natsio/nats-server-config-reloader:0.14.0",
            "docker.io/natsio/prometheus-nats-exporter:0.14.0",
        ),
    ),
    # identity.dex: the platform's own OpenID Connect provider (a broker for an on-prem directory). The chart's
    # default config is empty; Plinth writes it (issuer, Kubernetes storage, connectors, static clients).
    "dex": Chart(
        "https://charts.dexidp.io", "dex", "0.24.0", "dex",
        images=("ghcr.io/dexidp/dex:v2.44.0",),
    ),
    # notebooks.jupyterhub: the hub (its authenticator the image's oauthenticator 17.4), configurable-http-proxy,
    # and the notebook servers (the chart's sample image). Off with Plinth's values, so not mirrored: the user
    # scheduler (kube-scheduler), the placeholders and pre-puller (pause, image-awaiter), the metadata-blocking
    # init container (network-tools: privileged), autohttps (traefik, secret-sync).
    "jupyterhub": Chart(
        "https://hub.jupyter.org/helm-chart/", "jupyterhub", "4.4.0", "jupyterhub",
        images=(
            "quay.io/jupyterhub/k8s-hub:4.4.0",
            "quay.io/jupyterhub/configurable-http-proxy:5.2.0",
            "quay.io/jupyterhub/k8s-singleuser-sample:4.4.0",
        ),
    ),
}

EVENTBUS_JETSTREAM = "2.10.10"
"""The JetStream version of the EventBus (pipelines.events): one of the chart's jetstream versions, never `latest`."""

# Gateway API standard channel at the version the pinned Cilium implements.
# (Cilium 1.20 moved from Gateway API v1.4 to v1.6.1: its operator watches ListenerSet, TLSRoute,
# TCPRoute and UDPRoute, which only the v1.6 standard channel holds.)
GATEWAY_API = CrdBundle(
    "gateway-api", "v1.6.1",
    "https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.6.1/standard-install.yaml",
    "gateway-api-v1.6.1-standard",
)

CRD_BUNDLES: tuple[CrdBundle, ...] = (GATEWAY_API,)

# Images Plinth runs without a chart (its own Deployments); `plinth images` lists them
# through the service that runs each one.
IMAGES: dict[str, str] = {
    # pypiserver's official image; it ships waitress (`--server auto`) and passlib/bcrypt (htpasswd).
    "pypiserver": "docker.io/pypiserver/pypiserver:v2.4.2",
    # Triton Inference Server (serving.models with runtime triton); NGC's monthly release 26.10
    # (CUDA 13.4, compute capability 7.5 and later). BentoML models run the user's own Bento image.
    "tritonserver": "nvcr.io/nvidia/tritonserver:26.10-py3",
    # The init step of a registry-backed model (serving.models[].registry): `mlflow artifacts download` of the
    # registered version through the MLflow server, with the server's own image (one MLflow version to mirror).
    "mlflow-client": CHARTS["mlflow"].images[0],
    # The drift job of serving.models[].drift: modules/serving/driftjob (Evidently per column), built from its
    # Dockerfile and pushed by the platform team; the tag is the Evidently version it pins, then the build.
    "drift": "ghcr.io/plinth-platform/plinth-drift:0.7.23-1",
    # The request logger beside a model server (serving.models[].drift.requestLog): modules/serving/requestlog
    # (the standard library only), built from its Dockerfile and pushed by the platform team; the tag is the
    # Python version it pins, then the build.
    "requestlog": "ghcr.io/plinth-platform/plinth-requestlog:3.11.7-1",
}

# The sign-on plugin in the MLflow image (registry.mlflow with identity.oidc.clients.mlflow: the chart's
# `--app-name oidc-auth`): the version the image's lock file holds beside MLflow 3.15.1, what its real-server test
# installs (.ci/run). A new image tag means checking this again.
MLFLOW_OIDC_AUTH = "7.6.0"

# What the hub image (k8s-hub 4.4.0, notebooks.jupyterhub) runs for sign-on: the JupyterHub and oauthenticator its
# requirements lock holds, what the real sign-in test installs (.ci/run). A new image tag means checking this again.
HUB_PACKAGES = ("jupyterhub==5.5.0", "oauthenticator==17.4.0")

# Namespaces of the platform's own services, which tenant network policies
# must be able to name (monitoring scrapes, gateway ingress, Vault, Feast).
PLATFORM_NAMESPACES: dict[str, str] = {
    "gateway": "plinth-gateway",
    "monitoring": CHARTS["kube-prometheus-stack"].namespace,
    "node-exporter": "node-exporter",
    "cert-manager": CHARTS["cert-manager"].namespace,
    "longhorn": CHARTS["longhorn"].namespace,
    "vault": CHARTS["vault"].namespace,
    "feast": CHARTS["feast"].namespace,
    "harbor": CHARTS["harbor"].namespace,
    "ledger": "plinth-system",
    "gpu-operator": CHARTS["gpu-operator"].namespace,
    "vault-secrets-operator": CHARTS["vault-secrets-operator"].namespace,
    "postgres-operator": CHARTS["cloudnative-pg"].namespace,
    "redis-operator": CHARTS["redis-operator"].namespace,
    "python-index": "python-index",
    "object-store": CHARTS["seaweedfs"].namespace,
    "cluster-autoscaler": CHARTS["cluster-autoscaler"].namespace,
    "mlflow": CHARTS["mlflow"].namespace,
    "velero": CHARTS["velero"].namespace,
    "sign-on": CHARTS["oauth2-proxy"].namespace,
    "argo": CHARTS["argo-workflows"].namespace,
    "argo-events": CHARTS["argo-events"].namespace,
    "dex": CHARTS["dex"].namespace,
    "jupyterhub": CHARTS["jupyterhub"].namespace,
}


@dataclass(frozen=True)
class ImageRef:
    """An image reference split the way charts take it."""

    registry: str
    repository: str
    """Path below the registry, e.g. cilium/cilium."""
    tag: str
    digest: str | None = None

    @classmethod
    def parse(cls, ref: str) -> ImageRef:
        name, _, digest = ref.partition("@")
        name, _, tag = name.rpartition(":") if ":" in name.rsplit("/", 1)[-1] else (name, "", "")
        first, _, rest = name.partition("/")
        if not rest or ("." not in first and ":" not in first and first != "localhost"):
            first, rest = "docker.io", name if "/" in name else f"library/{name}"
        return cls(first, rest, tag, digest or None)

    @property
    def name(self) -> str:
        """The path's last segment, e.g. cilium (what charts and operators call the image)."""
        return self.repository.rsplit("/", 1)[-1]

    @property
    def pinned(self) -> bool:
        """Whether the reference names a tag or a digest."""
        return bool(self.tag or self.digest)

    def __str__(self) -> str:
        return f"{self.registry}/{self.repository}:{self.tag}" + (f"@{self.digest}" if self.digest else "")

    def mirrored(self, mirror: str | None) -> ImageRef:
        """THE mirror rule: the upstream registry host is replaced by the mirror prefix, the path is kept."""
        if not mirror:
            return self
        return ImageRef(mirror, self.repository, self.tag, self.digest)


def mirror_image(ref: str, mirror: str | None) -> str:
    return str(ImageRef.parse(ref).mirrored(mirror))


@dataclass(frozen=True)
class Mirrorable:
    """What `plinth images` lists for one service."""

    service: str
    charts: tuple[Chart, ...] = ()
    bundles: tuple[CrdBundle, ...] = ()
    images: tuple[str, ...] = field(default_factory=tuple)


# --- cloud targets ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuType:
    """What one machine type of a cloud brings: its accelerator, how many, and each one's memory."""

    accelerator: str
    """The GPU's name as the cloud spells it (GKE: the guest accelerator type)."""
    count: int
    """GPUs per node."""
    memory_gib: int
    """Memory of each GPU."""


GPU_MACHINES: dict[str, dict[str, GpuType]] = {
    # EKS: the instance type decides the GPUs; the node image (AMI type AL2023_x86_64_NVIDIA) brings the driver.
    "eks": {
        "g4dn.xlarge": GpuType("nvidia-t4", 1, 16),
        "g4dn.2xlarge": GpuType("nvidia-t4", 1, 16),
        "g4dn.12xlarge": GpuType("nvidia-t4", 4, 16),
        "g5.xlarge": GpuType("nvidia-a10g", 1, 24),
        "g5.2xlarge": GpuType("nvidia-a10g", 1, 24),
        "g5.12xlarge": GpuType("nvidia-a10g", 4, 24),
        "g6.xlarge": GpuType("nvidia-l4", 1, 24),
        "g6.2xlarge": GpuType("nvidia-l4", 1, 24),
        "g6.12xlarge": GpuType("nvidia-l4", 4, 24),
        "g6e.xlarge": GpuType("nvidia-l40s", 1, 48),
        "p4d.24xlarge": GpuType("nvidia-a100", 8, 40),
        "p5.48xlarge": GpuType("nvidia-h100", 8, 80),
    },
    # GKE: a node pool's machine type with its guest accelerator (type and count); the shapes GKE accepts.
    "gke": {
        "n1-standard-4": GpuType("nvidia-tesla-t4", 1, 16),
        "n1-standard-8": GpuType("nvidia-tesla-t4", 1, 16),
        "n1-standard-16": GpuType("nvidia-tesla-t4", 2, 16),
        "g2-standard-4": GpuType("nvidia-l4", 1, 24),
        "g2-standard-8": GpuType("nvidia-l4", 1, 24),
        "g2-standard-24": GpuType("nvidia-l4", 2, 24),
        "g2-standard-48": GpuType("nvidia-l4", 4, 24),
        "a2-highgpu-1g": GpuType("nvidia-tesla-a100", 1, 40),
        "a2-highgpu-8g": GpuType("nvidia-tesla-a100", 8, 40),
        "a2-ultragpu-1g": GpuType("nvidia-a100-80gb", 1, 80),
        "a3-highgpu-8g": GpuType("nvidia-h100-80gb", 8, 80),
    },
}
"""The GPU machine types Plinth plans node pools for (rule `gpu-machine-type`); add a row to use another."""
