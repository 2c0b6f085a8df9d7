"""The platform spec: one strict, frozen, documented model per concept.

YAML keys are camelCase (like Kubernetes); Python attributes are snake_case.
Every field documents its default; unknown keys are rejected (keys starting
with `x-` are extensions and are dropped by the loader before validation).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from plinth.catalog import DEFAULT_KUBERNETES_VERSION, KUBERNETES_VERSIONS, ImageRef

API_VERSION = "plinth.dev/v1alpha1"


class Spec(BaseModel):
    """Strict, immutable base for every spec block."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
    )


# --- scalar types with the exact wording errors use -------------------------


def _non_negative_int(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PydanticCustomError("non_negative_int", "expected a non-negative integer")
    return value


def _positive_int(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PydanticCustomError("positive_int", "expected a positive integer")
    return value


_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
_QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


def _dns_label(value: Any) -> Any:
    if not isinstance(value, str) or not _DNS_LABEL.match(value):
        raise PydanticCustomError(
            "dns_label",
            "expected a lowercase DNS label (a-z, 0-9, '-', starting with a letter, at most 40 characters)",
        )
    return value


_SUFFIX = {"m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
MAX_QUANTITY = 2**63 - 1
"""Kubernetes stores quantities as 64-bit integers (of milli-units for CPU): nothing larger is a quantity."""


def _quantity(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PydanticCustomError("quantity", "expected a Kubernetes quantity such as 500m, 4, 16Gi")
    if isinstance(value, int | float):
        # A YAML number is accepted only where it reads as a plain quantity (no .inf, nan or 1e400).
        text = str(value) if isinstance(value, int) or not value.is_integer() else str(int(value))
        value = text
    match = _QUANTITY.match(value)
    if not match:
        raise PydanticCustomError("quantity", "expected a Kubernetes quantity such as 500m, 4, 16Gi")
    if float(match.group(1)) * _SUFFIX[match.group(3) or ""] * 1000 > MAX_QUANTITY:
        raise PydanticCustomError("quantity", "expected a Kubernetes quantity such as 500m, 4, 16Gi "
                                  "(this one is beyond what Kubernetes can store)")
    return value


def quantity_value(text: str) -> float:
    """A quantity as a number of base units (for comparisons such as request <= limit)."""
    match = _QUANTITY.match(text)
    return float(match.group(1)) * _SUFFIX[match.group(3) or ""]  # type: ignore[union-attr]  # validated quantities


def _group(value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        raise PydanticCustomError("group", "expected a non-empty group name")
    if value == "*" or value.startswith("system:"):
        raise PydanticCustomError(
            "group", "expected a named identity-provider group; '*' and 'system:' groups are not allowed"
        )
    return value


def _kubernetes_version(value: Any) -> Any:
    if isinstance(value, float):
        raise PydanticCustomError(
            "kubernetes_version",
            "expected a quoted Kubernetes minor version such as \"1.34\" (unquoted, YAML reads a number and "
            "1.30 becomes 1.3); supported: {allowed}",
            {"allowed": ", ".join(KUBERNETES_VERSIONS)},
        )
    if value not in KUBERNETES_VERSIONS:
        raise PydanticCustomError(
            "kubernetes_version",
            "expected a supported Kubernetes minor version ({allowed})",
            {"allowed": ", ".join(KUBERNETES_VERSIONS)},
        )
    return value


def _strict_bool(value: Any) -> Any:
    if not isinstance(value, bool):  # pydantic alone reads "off", "no", "false", 0 and 1 as booleans
        raise PydanticCustomError("strict_bool", "expected true or false")
    return value


Flag = Annotated[bool, BeforeValidator(_strict_bool)]
MAX_TEAMS = 2000
MAX_MODELS = 1000
"""Bounds that keep one offline plan within a few GB (bench/plan_speed.py, peak RSS of `plinth plan`: about
0.8 MB per team and 1.6 MB per served model; both limits at once: 3.0 GB, a plan.json of 186 MB)."""
"""A boolean field: YAML's true and false only."""
Count = Annotated[int, BeforeValidator(_non_negative_int)]
PositiveCount = Annotated[int, BeforeValidator(_positive_int)]
Name = Annotated[str, BeforeValidator(_dns_label)]
Quantity = Annotated[str, BeforeValidator(_quantity)]
Group = Annotated[str, BeforeValidator(_group)]
Values = Annotated[
    dict[str, Any],
    Field(
        description="Escape hatch: extra Helm values merged UNDER the values Plinth owns "
        "(Plinth's keys win; each module's README lists them). Default: {}."
    ),
]


def _percent(value: int) -> int:
    if value > 100:
        raise PydanticCustomError("percent", "expected a percentage from 0 to 100")
    return value


def _cidr(value: Any) -> Any:
    import ipaddress

    try:
        return str(ipaddress.ip_network(value, strict=True))
    except (TypeError, ValueError):
        raise PydanticCustomError("cidr", "expected a network in CIDR form such as 10.20.0.0/24") from None


Percent = Annotated[int, BeforeValidator(_non_negative_int), AfterValidator(_percent)]

_HOST_PORT = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[0-9]{1,5})?$")


def _host_port(value: Any) -> Any:
    if not isinstance(value, str) or not _HOST_PORT.match(value):
        raise PydanticCustomError("host_port", "expected host[:port] in lower case, e.g. acme.corp.internal:8443")
    return value


HostPort = Annotated[str, BeforeValidator(_host_port)]


# --- metadata ----------------------------------------------------------------


class Metadata(Spec):
    name: Name = Field(description="Platform name; prefixes cluster-level names. Required.")
    environment: Literal["dev", "staging", "prod"] = Field(
        description="Environment class; prod turns on the stricter governance rules. Required."
    )
    cost_center: str = Field(
        description="Cost center stamped on every object (label plinth.dev/cost-center). Required.",
        pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$",
    )


# --- cluster target (discriminated on `type`) --------------------------------


class ExistingTarget(Spec):
    """An existing cluster (on-prem or in a VPC) reached through a kubeconfig."""

    type: Literal["existing"]
    kubeconfig: str | None = Field(
        None,
        description="Path to the kubeconfig file. "
        "Default: null (the provider's default: $KUBECONFIG or ~/.kube/config).",
    )
    context: str | None = Field(None, description="Kubeconfig context to use. Default: null (the current context).")
    private: Flag = Field(True, description="The API server is reachable only inside the network. Default: true.")


class GpuAccelerator(Spec):
    type: str = Field(description="The GPU as the cloud names it: for eks the instance type's GPU (e.g. nvidia-l4 "
                      "for g6.xlarge), for gke the guest accelerator type (e.g. nvidia-l4); checked against the "
                      "machine type in plinth.catalog.GPU_MACHINES. Required.")
    count: PositiveCount = Field(1, description="GPUs per node (as the machine type has them). Default: 1.")


class NodePool(Spec):
    name: Name = Field(description="Node pool name (also the node label plinth.dev/node-pool). Required.")
    instance_type: str = Field(description="Instance (eks) or machine (gke) type. Required.",
                               pattern=r"^[a-z0-9][-a-z0-9.]*[a-z0-9]$")
    min_size: Count = Field(1, description="Minimum node count. Default: 1.")
    max_size: PositiveCount = Field(3, description="Maximum node count. Default: 3.")
    disk_gib: PositiveCount = Field(100, description="Node boot disk, GiB (GPU images are large). Default: 100.")
    gpu: GpuAccelerator | None = Field(
        None, description="The pool's GPUs: its nodes get the taint nvidia.com/gpu=present:NoSchedule and the "
        "label nvidia.com/gpu.present=true that GPU workloads tolerate and select. Default: null (no GPU).")

    @model_validator(mode="after")
    def _sizes(self) -> NodePool:
        if self.min_size > self.max_size:
            raise PydanticCustomError("pool_sizes", "minSize {min} is above maxSize {max}",
                                      {"min": self.min_size, "max": self.max_size})
        return self


Cidr = Annotated[str, BeforeValidator(_cidr)]


class CloudTarget(Spec):
    """What EKS and GKE targets share."""

    region: str = Field(description="Cloud region, e.g. eu-west-1 (eks) or europe-west4 (gke). Required.",
                        pattern=r"^[a-z]+(-[a-z]+)+-?[0-9]+$")
    private: Flag = Field(True, description="Private API endpoint: reachable from inside the VPC (and, on gke, "
                          "the authorized networks) only. Nodes are private either way. Default: true.")
    public_endpoint_reason: str | None = Field(
        None, description="Why the API endpoint is public (required in prod with private: false; recorded as a "
        "tag/label on the cluster). Default: null.", min_length=10, max_length=200,
        pattern=r"^[A-Za-z0-9][-A-Za-z0-9_. ]*$")
    authorized_networks: tuple[Cidr, ...] = Field(
        (), description="Networks allowed to reach the API endpoint (eks: public endpoint CIDRs, only with "
        "private: false; gke: master authorized networks, private or public). Default: [] (eks public: none "
        "allowed until set; gke: the VPC only).")
    egress: Literal["nat", "none"] = Field(
        "nat", description="Node egress: nat (a NAT gateway per zone, one in dev) or none (no internet at all: "
        "images from airgap.mirror, cloud APIs through private endpoints). Default: nat.")
    bucket_prefix: str | None = Field(
        None, description="Prefix of the bucket names <prefix>-models, <prefix>-features and <prefix>-backups "
        "(bucket names are global). Default: null (<metadata.name>-<metadata.environment>).",
        pattern=r"^[a-z0-9][-a-z0-9]{1,40}[a-z0-9]$")
    node_pools: tuple[NodePool, ...] = Field(min_length=1, description="Node pools. Required (at least one).")


class ClusterAutoscaler(Spec):
    """Cluster Autoscaler for the EKS managed node groups (GKE autoscales node pools itself)."""

    enabled: Flag = Field(True, description="Install Cluster Autoscaler: node groups scale between minSize and "
                          "maxSize, GPU pools from zero. Without it every group stays at minSize. Default: true.")
    values: Values = {}


class EksTarget(CloudTarget):
    """A new AWS EKS cluster in a VPC Plinth creates."""

    type: Literal["eks"]
    account_id: str = Field(description="The AWS account (12 digits); the provider refuses any other "
                            "(allowedAccountIds), and role ARNs are built from it. Required.", pattern=r"^[0-9]{12}$")
    availability_zones: tuple[str, ...] = Field(
        min_length=2, max_length=4, description="Availability zones of the node subnets (2 to 4; explicit, so a "
        "plan never depends on a lookup). Required.")
    vpc_cidr: Cidr = Field("10.0.0.0/16", description="CIDR of the VPC (/16 to /22): eight equal blocks, private "
                           "node subnets first, public NAT subnets from the fifth. Default: 10.0.0.0/16.")
    admin_role_arn: str = Field(
        description="IAM role of the platform admins (e.g. their SSO role): an EKS access entry maps it to the "
        "Kubernetes group rbac.platformAdminGroup. Required.", pattern=r"^arn:aws[-a-z]*:iam::[0-9]{12}:role/\S+$")
    autoscaler: ClusterAutoscaler = Field(default_factory=ClusterAutoscaler,
                                          description="Cluster Autoscaler (plinth:cluster:ClusterAutoscaler).")


class GkeTarget(CloudTarget):
    """A new GCP GKE cluster (VPC-native, private nodes) in a VPC Plinth creates."""

    type: Literal["gke"]
    project: str = Field(description="GCP project ID. Required.", pattern=r"^[a-z][-a-z0-9]{4,28}[a-z0-9]$")
    subnet_cidr: Cidr = Field("10.0.0.0/20", description="Node subnet. Default: 10.0.0.0/20.")
    pods_cidr: Cidr = Field("10.4.0.0/14", description="Pods (secondary range). Default: 10.4.0.0/14.")
    services_cidr: Cidr = Field("10.8.0.0/20", description="Services (secondary range). Default: 10.8.0.0/20.")
    control_plane_cidr: Cidr = Field("172.16.0.0/28", description="The control plane's /28 (private endpoint). "
                                     "Default: 172.16.0.0/28.")


Target = Annotated[ExistingTarget | EksTarget | GkeTarget, Field(discriminator="type")]


class Kubernetes(Spec):
    version: Annotated[str, BeforeValidator(_kubernetes_version)] = Field(
        DEFAULT_KUBERNETES_VERSION,
        description=f"Kubernetes minor version; manifests are validated against its OpenAPI schema. "
        f"Default: {DEFAULT_KUBERNETES_VERSION}.",
    )


# --- platform services -------------------------------------------------------


class ApiServer(Spec):
    """Where nodes reach the Kubernetes API without kube-proxy."""

    host: str = Field(description="API server host name or IP (load balancer or VIP of the control plane). Required.",
                      pattern=r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$")
    port: PositiveCount = Field(6443, description="API server port. Default: 6443.")


DEFAULT_POD_CIDR = "100.64.0.0/14"


class Cilium(Spec):
    enabled: Flag = Field(False, description="Install Cilium (CNI, network policy). Default: false.")
    kube_proxy_replacement: Flag = Field(True, description="Replace kube-proxy (needs apiServer). Default: true.")
    api_server: ApiServer | None = Field(
        None, description="The API server endpoint nodes use when kube-proxy is replaced (no render-time lookup: "
        "`auto` would make renders depend on the live cluster). Default: null (required with kubeProxyReplacement).")
    hubble: Flag = Field(True, description="Hubble flow observability with relay; TLS from cert-manager. "
                         "Default: true.")
    gateway_api: Flag = Field(True, description="Cilium's Gateway API implementation and the platform Gateway "
                              "(needs certificates.certManager for its TLS). Default: true.")
    operator_replicas: PositiveCount | None = Field(
        None, description="cilium-operator replicas. Default: null (1 in dev, 2 in staging and prod).")
    pod_cidr: Cidr = Field(
        DEFAULT_POD_CIDR, description="Existing targets: the pool Cilium's operator gives pod addresses from "
        "(a /24 per node; eks pods take VPC addresses, gke pods its podsCidr). It must not overlap a network "
        "pods reach (the mirror, the API server, model repositories): a packet to such an address would stay "
        f"in the cluster. Default: {DEFAULT_POD_CIDR} (RFC 6598 shared address space: outside the private "
        "ranges 10/8, 172.16/12 and 192.168/16 that company networks use, unlike the chart's own 10.0.0.0/8; "
        "a /14 is 1,024 nodes).")
    values: Values = {}


class Gateway(Spec):
    """The ONE platform Gateway (namespace plinth-gateway) that serving routes attach to."""

    hostname: str = Field(
        "*.models.plinth.internal",
        description="Listener host name (a wildcard serves one host per model); its TLS certificate is issued by "
        "the platform ClusterIssuer. Default: *.models.plinth.internal.",
        pattern=r"^(\*\.)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
    )


def _address_range(value: Any) -> Any:
    """A CIDR (10.20.0.240/28) or an inclusive range first-last (10.20.0.240-10.20.0.250), normalized."""
    import ipaddress

    try:
        if isinstance(value, str) and "-" in value:
            first, last = (ipaddress.ip_address(part.strip()) for part in value.split("-", 1))
            if first.version == last.version and first <= last:  # type: ignore[operator]  # one IP version
                return f"{first}-{last}"
            raise ValueError(value)
        return str(ipaddress.ip_network(value, strict=True))
    except (TypeError, ValueError):
        raise PydanticCustomError("address_range", "expected a CIDR such as 10.20.0.240/28 or a range first-last "
                                  "such as 10.20.0.240-10.20.0.250 (first not above last, one IP family)") from None


AddressRange = Annotated[str, BeforeValidator(_address_range)]


class LoadBalancer(Spec):
    """How the platform Gateway's LoadBalancer Service gets its address (Cilium makes the Gateway one)."""

    mode: Literal["l2", "external"] = Field(
        "l2", description="existing targets: l2 (Cilium LB-IPAM assigns an address of `ranges` and answers ARP "
        "for it from one node: no router configuration) or external (something outside Plinth assigns and "
        "announces load-balancer addresses, e.g. MetalLB or your own Cilium BGP setup). eks and gke: the "
        "cloud's load balancer, whatever the mode. Default: l2.")
    ranges: tuple[AddressRange, ...] = Field(
        (), description="l2: the addresses the Gateway may take, CIDRs or first-last ranges on the nodes' own "
        "network, reserved for it (outside DHCP and the nodes' addresses). Required with l2 on an existing "
        "target when the Gateway is on. Default: [].")
    interfaces: tuple[str, ...] = Field(
        (), description="l2: regular expressions of the node interfaces that announce the addresses (e.g. "
        "^eth0$). Default: [] (every interface).")
    public: Flag = Field(
        False, description="eks and gke: an internet-facing load balancer (needs publicReason). Default: false "
        "(internal: the platform is private).")
    public_reason: str | None = Field(
        None, description="Why the Gateway is public (recorded as the Gateway annotation "
        "plinth.dev/public-load-balancer-reason). Default: null.", min_length=10, max_length=200,
        pattern=r"^[A-Za-z0-9][-A-Za-z0-9_. ]*$")


class Network(Spec):
    cilium: Cilium = Field(default_factory=Cilium, description="CNI, network policy and Gateway API.")
    gateway: Gateway = Field(default_factory=Gateway, description="The platform Gateway (with Cilium's Gateway API).")
    load_balancer: LoadBalancer = Field(default_factory=LoadBalancer,
                                        description="The Gateway's load-balancer address. Default: l2, internal.")


class Longhorn(Spec):
    enabled: Flag = Field(False, description="Install Longhorn. Default: false.")
    replica_count: PositiveCount | None = Field(
        None, description="Volume replicas. Default: null (by environment: dev 1, staging 2, prod 3).")
    default_class: Flag = Field(True, description="Make Longhorn the default StorageClass. Default: true.")
    allow_uninstall: Flag | None = Field(
        None, description="Set Longhorn's deletingConfirmationFlag so its uninstall may run (its pre-delete hook "
        "refuses otherwise; volumes are lost with it). Default: null (storage.deleteDataOnDestroy).")
    values: Values = {}


class Acme(Spec):
    server: str = Field(description="ACME directory URL (an internal ACME CA on-prem). Required.",
                        pattern=r"^https://")
    email: str = Field(description="Account e-mail. Required.")


class Issuer(Spec):
    """The platform ClusterIssuer `plinth-ca` every platform certificate comes from."""

    type: Literal["selfSigned", "ca", "acme"] = Field(
        "selfSigned",
        description="selfSigned: a platform CA bootstrapped by cert-manager (on-prem default); ca: your CA, from "
        "a Secret you create in the cert-manager namespace; acme: an ACME server (HTTP-01 through the platform "
        "Gateway). Default: selfSigned.")
    ca_secret: str | None = Field(
        None, description="ca: name of the kubernetes.io/tls Secret (tls.crt, tls.key) in namespace cert-manager "
        "holding your CA. Default: null.")
    acme: Acme | None = Field(None, description="acme: the ACME account. Default: null.")


class CertManager(Spec):
    enabled: Flag = Field(False, description="Install cert-manager and the platform ClusterIssuer. Default: false.")
    issuer: Issuer = Field(default_factory=Issuer, description="The platform ClusterIssuer. Default: selfSigned.")
    values: Values = {}


class Certificates(Spec):
    cert_manager: CertManager = Field(default_factory=CertManager, description="Certificates for platform TLS.")


class ObjectStore(Spec):
    """On-prem S3: SeaweedFS with its S3 API (target.type existing only; the clouds keep their own buckets)."""

    enabled: Flag = Field(False, description="Run SeaweedFS with its S3 API in namespace object-store, with the "
                          "buckets <platform>-models, -artifacts, -features and -backups and one S3 identity per "
                          "bucket and per team (keys derived from the stack secret plinth:objectStoreSeed). "
                          "Each team's keys reach its namespace through Vault (the configure stage writes "
                          "teams/<team>/object-store; the Vault Secrets Operator makes Secret "
                          "object-store-credentials), so with teams it needs secrets.vault with its operator. "
                          "target.type existing only. Default: false.")
    storage_class: str | None = Field(
        None, description="StorageClass of every SeaweedFS volume. Default: null (Longhorn's class `longhorn` when "
        "storage.longhorn is on, else the cluster's default StorageClass).",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    volume_size: Quantity = Field("100Gi", description="Object data volume of each volume server. Default: 100Gi.")
    filer_size: Quantity = Field("10Gi", description="Metadata (file and bucket index) volume of each filer. "
                                 "Default: 10Gi.")
    master_size: Quantity = Field("1Gi", description="Cluster state volume of each master. Default: 1Gi.")
    values: Values = {}


class Storage(Spec):
    longhorn: Longhorn = Field(default_factory=Longhorn, description="Replicated block storage.")
    object_store: ObjectStore = Field(default_factory=ObjectStore, description="On-prem S3 object storage "
                                      "(SeaweedFS). Default: off.")
    delete_data_on_destroy: Flag = Field(
        False, description="Let `pulumi destroy` delete what holds data: Longhorn with its volumes (its "
        "StorageClass reclaims released volumes; Longhorn may uninstall) and the cloud target's buckets with "
        "their objects. Off: Longhorn's volumes outlive their claims (reclaimPolicy Retain), `pulumi destroy` "
        "leaves Longhorn installed and the buckets in place (the stack forgets them) and a bucket holding "
        "objects is never emptied. Default: false (in every environment; set it for throw-away platforms).")

    def volume_class(self, chosen: str | None) -> str:
        """A service's volumes' StorageClass: the one its block names, else Longhorn's when Longhorn is on, else ""
        (the cluster's default StorageClass): what every `storageClass` field's default says."""
        return chosen or ("longhorn" if self.longhorn.enabled else "")


class AutoUnseal(Spec):
    type: Literal["none", "awskms", "gcpckms", "transit"] = Field(
        "none", description="Auto-unseal mechanism; none means operators unseal by hand. Default: none."
    )
    key: str | None = Field(None, description="awskms: KMS key ARN or ID; gcpckms: the key's resource name "
                            "projects/P/locations/L/keyRings/R/cryptoKeys/K; transit: the key name. Default: null.")
    address: str | None = Field(None, description="transit: address of the Vault that unseals this one; its token "
                                "is the Secret vault-transit-token (key `token`) you create. Default: null.",
                                pattern=r"^https://")


class Vault(Spec):
    enabled: Flag = Field(False, description="Install HashiCorp Vault (TLS from cert-manager, agent injector). "
                          "Default: false.")
    ha: Flag = Field(False, description="Raft HA mode. Default: false (prod requires true).")
    replicas: PositiveCount = Field(3, description="Server replicas in HA mode. Default: 3.")
    auto_unseal: AutoUnseal = Field(default_factory=AutoUnseal, description="Auto-unseal. Default: none.")
    address: str | None = Field(None, description="Where the configure stage reaches Vault (e.g. through the "
                                "platform network). Default: null (the in-cluster service, https://vault.vault.svc:8200).",
                                pattern=r"^https://")
    secrets_operator: Flag = Field(True, description="Install the Vault Secrets Operator and give every team a "
                                   "VaultAuth for its own Vault role and KV path (teams/<team>/). Default: true.")
    values: Values = {}


class Secrets(Spec):
    vault: Vault = Field(default_factory=Vault, description="Secrets management.")


class Harbor(Spec):
    enabled: Flag = Field(False, description="Install Harbor (images and OCI charts; needs "
                          "certificates.certManager for its token certificate). Default: false.")
    hostname: str | None = Field(
        None, description="Host name of Harbor on the platform Gateway (HTTPS, TLS terminated there): one name "
        "under network.gateway.hostname; externalURL becomes https://<hostname>. Default: null (in-cluster "
        "Service only, externalURL http://harbor.harbor.svc).",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    replicas: PositiveCount | None = Field(
        None, description="Replicas of nginx, portal, core, jobservice and registry; above 1 the registry and "
        "job-log volumes are ReadWriteMany (Longhorn serves RWX through its share manager; nodes need an NFSv4 "
        "client). The internal database, Redis and Trivy stay single. Default: null (1 in dev, 2 in staging "
        "and prod).")
    storage_class: str | None = Field(
        None, description="StorageClass of every Harbor volume. Default: null (Longhorn's class `longhorn` when "
        "storage.longhorn is on, else the cluster's default StorageClass).",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    registry_size: Quantity = Field("50Gi", description="Registry volume (images and OCI charts). Default: 50Gi.")
    jobservice_size: Quantity = Field("1Gi", description="Job service log volume. Default: 1Gi.")
    database_size: Quantity = Field("5Gi", description="Volume of each instance of its PostgreSQL (the platform "
                                    "CloudNativePG Cluster `harbor-postgres`). Default: 5Gi.")
    redis_size: Quantity = Field("1Gi", description="Internal Redis volume. Default: 1Gi.")
    trivy_size: Quantity = Field("5Gi", description="Trivy vulnerability database and cache volume. Default: 5Gi.")
    group_type: Literal["oidc", "ldap"] = Field(
        "oidc", description="How Harbor knows the teams' groups (its configured authentication); team projects "
        "get the groups as members by name. Default: oidc.")
    values: Values = {}


class PythonIndex(Spec):
    """The Python package index every team's pip uses: Plinth's own (pypiserver) or an existing one."""

    enabled: Flag = Field(False, description="Run a private Python package index (pypiserver, no fallback to a "
                          "public index; uploads need an account of the stack secret plinth:pythonIndexHtpasswd) "
                          "and point every team's pip at it. Default: false.")
    url: str | None = Field(None, description="pip index URL (the PEP 503 simple API, e.g. "
                            "https://packages.corp.internal/simple/) of an existing internal index: every team's pip "
                            "uses it and Plinth runs no index. Not together with enabled; no credentials in it "
                            "(downloads are anonymous). Default: null.",
                            pattern=r"^https?://[^\s/@]+(/\S*)?$")
    hostname: str | None = Field(None, description="Host name of the index on the platform Gateway (HTTPS, for "
                                 "uploads and users outside the cluster); one name under network.gateway.hostname. "
                                 "Default: null (in-cluster Service only).",
                                 pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    storage: Quantity = Field("20Gi", description="Size of the package volume (ReadWriteOnce, default "
                              "StorageClass). Default: 20Gi.")


class Mlflow(Spec):
    """The MLflow tracking server and model registry: its PostgreSQL a platform CloudNativePG Cluster, its artifacts
    in the target's object store."""

    enabled: Flag = Field(False, description="Run the MLflow tracking server and model registry in namespace mlflow "
                          "(the CloudNativePG operator comes with it; artifacts go to the artifacts bucket: on an "
                          "existing cluster storage.objectStore's, on eks and gke the cloud's; the Flask secret key "
                          "is the stack secret plinth:mlflowFlaskSecretKey). Default: false.")
    hostname: str | None = Field(
        None, description="Host name of MLflow on the platform Gateway (HTTPS, TLS terminated there): one name under "
        "network.gateway.hostname. Default: null (in-cluster Service only, http://mlflow.mlflow.svc).",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    replicas: PositiveCount | None = Field(
        None, description="Server replicas (stateless: every one serves from the database and the bucket). "
        "Default: null (1 in dev, 2 in staging and prod).")
    database_size: Quantity = Field("10Gi", description="Volume of each instance of its PostgreSQL (the platform "
                                    "CloudNativePG Cluster `mlflow-postgres`). Default: 10Gi.")
    storage_class: str | None = Field(
        None, description="StorageClass of the database volumes. Default: null (Longhorn's class `longhorn` when "
        "storage.longhorn is on, else the cluster's default StorageClass).",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    reason: str | None = Field(
        None, description="Why MLflow runs without per-team permissions, every team reading and writing every "
        "experiment and model (required in prod without identity.oidc.clients.mlflow). Default: null.",
        min_length=10, max_length=200)
    values: Values = {}


class Registry(Spec):
    harbor: Harbor = Field(default_factory=Harbor, description="Private image and chart registry.")
    python_index: PythonIndex = Field(default_factory=PythonIndex, description="Private Python package index.")
    mlflow: Mlflow = Field(default_factory=Mlflow, description="Experiment tracking and model registry (MLflow).")


class Feast(Spec):
    """The Feast feature server and the stores it needs: PostgreSQL (CloudNativePG) and Redis (OT redis-operator)."""

    enabled: Flag = Field(False, description="Install the Feast feature server in namespace feast, with the "
                          "CloudNativePG operator (its PostgreSQL) and, for a Redis online store, the Redis "
                          "operator. Default: false.")
    project: Name = Field("features", description="Feast project name. Default: features.")
    online_store: Literal["redis", "postgres"] = Field(
        "redis", description="Online store: redis (a Redis whose password is the stack secret "
        "plinth:feastRedisPassword) or postgres (tables in the feature store's PostgreSQL). Default: redis.")
    offline_store: Literal["file", "postgres"] = Field(
        "file", description="Offline store: file (Parquet files on a ReadWriteMany volume, mounted at "
        "/feast/offline in the feature server) or postgres (the feature store's PostgreSQL). BigQuery and Redshift "
        "come with the gke and eks targets. Default: file.")
    registry: Literal["sql"] = Field(
        "sql", description="Feature registry: sql (tables in the feature store's PostgreSQL, shared by every "
        "server replica and `feast apply` client). Default: sql.")
    postgres_storage: Quantity = Field(
        "10Gi", description="Volume of each PostgreSQL instance (default StorageClass; 3 instances in staging "
        "and prod, 1 in dev). Default: 10Gi.")
    redis_storage: Quantity = Field("5Gi", description="Volume of the Redis online store (default StorageClass). "
                                    "Default: 5Gi.")
    offline_storage: Quantity = Field(
        "50Gi", description="Volume of the file offline store (ReadWriteMany, default StorageClass: it must "
        "support shared volumes, as Longhorn does). Default: 50Gi.")
    values: Values = {}


class FeatureStore(Spec):
    feast: Feast = Field(default_factory=Feast, description="Feature store.")


class GpuSharing(Spec):
    type: Literal["none", "timeSlicing", "mig"] = Field("none", description="GPU sharing mode. Default: none.")
    replicas: PositiveCount = Field(1, description="Time-slicing: virtual GPUs per physical GPU. Default: 1.")
    mig_profile: str | None = Field(None, description="MIG: profile, e.g. all-1g.10gb. Default: null.")


class GpuOperator(Spec):
    enabled: Flag = Field(False, description="Install the NVIDIA GPU Operator. Default: false.")
    driver: Flag = Field(False, description="Install the driver (false when node images ship it). Default: false.")
    sharing: GpuSharing = Field(default_factory=GpuSharing, description="Time-slicing or MIG. Default: none.")
    values: Values = {}


class Gpu(Spec):
    operator: GpuOperator = Field(default_factory=GpuOperator, description="GPU scheduling and metrics.")


class Release(Spec):
    version: str = Field(
        description="Model version: the image tag for BentoML (the image is <image>:<version>), which may be "
        "pinned by digest (1.2.0@sha256:<64 hex>); for Triton the directory <modelRepository>/<version>/ "
        "holding that release's complete model repository; for a model with `registry` a registered version "
        "number (e.g. 3: exactly that version) or an alias of the registered model (e.g. champion: the version "
        "it names when each pod starts). Also the pods' app.kubernetes.io/version label "
        "(without the digest). Required.",
        pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?(@sha256:[0-9a-f]{64})?$")
    replicas: Count = Field(1, description="Replicas (the autoscaler's minimum when autoscaling). Default: 1.")

    @property
    def tag(self) -> str:
        """The version without its digest: what labels and names carry."""
        return self.version.partition("@")[0]


class Canary(Release):
    weight: Percent = Field(10, description="Share of the routed traffic sent to the canary, 0-100; stable gets "
                            "the rest. Default: 10.")


class Autoscaling(Spec):
    enabled: Flag = Field(False, description="Horizontal autoscaling of the stable release (HorizontalPodAutoscaler "
                          "autoscaling/v2 on CPU utilisation; needs the cluster's resource metrics API, e.g. "
                          "metrics-server). Default: false.")
    max_replicas: PositiveCount = Field(4, description="Upper bound. Default: 4.")
    target_utilization: Percent = Field(70, description="Target average CPU utilisation, percent of the CPU "
                                        "request. Default: 70.")


class Slo(Spec):
    """What the model's alerts and the canary gate (`plinth canary set|promote --gate`) measure against (stable
    and canary traffic; the shadow answers nobody)."""

    latency_ms: PositiveCount = Field(500, description="95th percentile request latency, milliseconds, above which "
                                      "ModelLatencyHigh fires. Default: 500.")
    error_rate_percent: float = Field(1.0, gt=0, le=100, description="Share of failed requests, percent, above "
                                      "which ModelErrorRateHigh fires (and the margin, in percentage points, by "
                                      "which a canary may fail more often than stable before ModelCanaryWorse "
                                      "fires and the canary gate refuses). Default: 1.")
    canary_latency_margin_percent: float = Field(
        20.0, gt=0, le=1000, description="How much slower than stable's the canary's p95 latency may be, percent of "
        "stable's, before ModelCanaryWorse fires and the canary gate refuses. Default: 20.")
    window: str = Field("5m", pattern=r"^[1-9][0-9]*[mh]$", description="The window the error rates and latencies "
                        "of the model's alerts, its dashboard row and the canary gate are measured over (a "
                        "Prometheus range: minutes or hours, e.g. 5m, 1h). Default: 5m.")


_REGISTERED_MODEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def _registered_model_name(value: Any) -> Any:
    """A registered model name Plinth serves is also a label value."""
    if not isinstance(value, str) or not _REGISTERED_MODEL_NAME.match(value):
        raise PydanticCustomError("registered_model_name", "expected a registered model name that is also a label "
                                  "value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a "
                                  "letter or digit")
    return value


class ModelRegistry(Spec):
    """Where a served model's files come from: a model registered in the platform's MLflow (registry.mlflow)."""

    model: Annotated[str, BeforeValidator(_registered_model_name)] = Field(
        description="The registered model's name (at most 63 characters: letters, digits, '-', '_', '.'). Required.")


class RequestLog(Spec):
    """Sampled request/response logging: a sidecar in front of the model server's HTTP port in the stable and
    canary pods forwards every request unchanged and writes a sample into the object store, as JSON lines under
    `<platform>-artifacts/requests/<team>/<model>/`, where the drift job reads its window."""

    sample_rate: float = Field(
        0.1, ge=0, le=1, description="Share of POST requests (inference) recorded, 0-1; every request is "
        "forwarded either way. Default: 0.1.")
    max_body_bytes: PositiveCount = Field(
        65536, le=1_048_576, description="A request or response body longer than this is not recorded (the record "
        "keeps its size and `truncated: true`). At most 1048576. Default: 65536.")
    flush_seconds: PositiveCount = Field(
        60, le=3600, description="The sidecar writes a batch at least this often while it has records. "
        "Default: 60.")
    flush_records: PositiveCount = Field(
        1000, le=100_000, description="The sidecar writes a batch as soon as it holds this many records (else after "
        "flushSeconds). Default: 1000.")
    buffer_records: PositiveCount = Field(
        10000, le=1_000_000, description="Records the sidecar holds at most (waiting for a write); past it, sampled "
        "records are counted and dropped, never waited for. Default: 10000.")
    cpu: Quantity = Field("200m", description="CPU of the sidecar per pod (request and limit; counted in the "
                          "team's quota). Default: 200m.")
    memory: Quantity = Field("256Mi", description="Memory of the sidecar per pod (request and limit; counted in "
                             "the team's quota). Default: 256Mi.")


class ModelDrift(Spec):
    """The model's drift job: a CronJob in the team's namespace comparing a logged window of its inputs with a
    reference dataset (Evidently, per column) and serving the score for Prometheus until its next run. The
    window is either a file (`window`) or the model's own logged requests (`requestLog`)."""

    schedule: str = Field(
        "0 4 * * *", description="When the drift job runs: a 5-field cron expression (minute hour day month "
        "weekday, UTC). Each run serves its score until the next one replaces it. Default: 0 4 * * * (daily at "
        "04:00).", pattern=r"^\S+( \S+){4}$")
    reference: str = Field(
        description="The reference dataset (what the model was trained on): pvc://<claim>/<path> of a .csv or "
        ".parquet file in a PersistentVolumeClaim of the team's namespace, mounted read-only; or, for a model with "
        "`registry`, run:<path> of a .csv or .parquet artifact of the run behind the stable release's registered "
        "version, fetched from MLflow at each run of the job (an alias is resolved then, so the reference follows "
        "a promotion). Required.", pattern=r"^(pvc://|run:)\S+$")
    window: str | None = Field(
        None, description="The logged window of the model's inputs, compared with the reference column by column: "
        "pvc://<claim>/<path> of a .csv or .parquet file (same columns). Not together with requestLog. "
        "Default: null (requestLog's records).", pattern=r"^pvc://\S+$")
    request_log: RequestLog | None = Field(
        None, description="Log a sample of the model's requests into the object store (needs "
        "storage.objectStore); the drift job's window is then the last windowHours of those records. Not together "
        "with window. Default: null.")
    window_hours: PositiveCount | None = Field(
        None, le=720, description="With requestLog: the drift job compares the records of the last windowHours "
        "(the newest maxRows rows of them); not with window (a file is read whole). Default: null (24 with "
        "requestLog).")
    threshold: float | None = Field(
        None, ge=0, le=1, description="Drift score (the share of drifted columns, 0-1) above which this model's "
        "ModelDrift alert fires. Default: null (monitoring.drift.threshold).")
    max_rows: PositiveCount = Field(
        1_000_000, le=10_000_000, description="Rows the job reads at most from each file; a larger file fails the "
        "run with a clear error. Default: 1000000.")
    cpu: Quantity = Field("1", description="CPU of the drift job (request and limit; counted in the team's "
                          "quota). Default: 1.")
    memory: Quantity = Field("2Gi", description="Memory of the drift job (request and limit; counted in the "
                             "team's quota). Default: 2Gi.")

    @model_validator(mode="after")
    def _window_or_log(self) -> ModelDrift:
        if (self.window is None) == (self.request_log is None):
            raise PydanticCustomError("drift_window_or_log", "drift names either window (a file) or requestLog "
                                      "(the model's logged requests)")
        if self.window is not None and self.window_hours is not None:
            raise PydanticCustomError("drift_window_hours", "windowHours selects requestLog's records: a window "
                                      "file is read whole")
        return self


def _pinned_image(value: Any) -> Any:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise PydanticCustomError("pinned_image", "expected an image reference")
    image = ImageRef.parse(value)
    if not image.pinned or (image.tag == "latest" and not image.digest):
        raise PydanticCustomError("pinned_image", "expected an image pinned by a tag other than latest, or a digest")
    return value


class Retraining(Spec):
    """What the model's drift alert starts: a workflow from a WorkflowTemplate of the team's namespace, the team's
    own (`workflowTemplate`) or one Plinth generates from `image` and `command`."""

    workflow_template: Name | None = Field(
        None, description="The WorkflowTemplate (in the team's namespace) the model's drift alert submits, as the "
        "team's `argo-workflow` account; it gets the parameters model, team, version (the served stable version), "
        "alertname and alert (the alert as JSON), and its last step is expected to register the result in "
        "MLflow as the challenger. Not together with image. Default: null (with `image`: the generated template "
        "`<model>-retraining`).")
    image: Annotated[str, BeforeValidator(_pinned_image)] | None = Field(
        None, description="The image of a generated one-step template (`<model>-retraining`, in the team's "
        "namespace, restricted, as `argo-workflow`): pinned by a tag other than latest, or a digest. Its container "
        "gets the parameters as environment variables PLINTH_MODEL, PLINTH_TEAM, PLINTH_VERSION, PLINTH_ALERTNAME, "
        "PLINTH_ALERT, and MLFLOW_TRACKING_URI with registry.mlflow. Not together with workflowTemplate. "
        "Default: null.")
    command: tuple[str, ...] = Field(
        (), description="The generated template's command. Default: [] (the image's entrypoint).")
    cpu: Quantity = Field("1", description="The generated step's CPU (request and limit; counted in the team's "
                          "quota). Default: 1.")
    memory: Quantity = Field("2Gi", description="The generated step's memory (request and limit; counted in the "
                             "team's quota). Default: 2Gi.")
    gpu: Count = Field(0, description="The generated step's GPUs (nvidia.com/gpu, with the GPU nodes' toleration). "
                       "Default: 0.")

    @model_validator(mode="after")
    def _template_or_image(self) -> Retraining:
        if (self.workflow_template is None) == (self.image is None):
            raise PydanticCustomError("retraining_template_or_image",
                                      "retraining names either workflowTemplate or image (a generated template)")
        if self.workflow_template is not None and (self.command or self.gpu or "cpu" in self.model_fields_set
                                                   or "memory" in self.model_fields_set):
            raise PydanticCustomError("retraining_template_settings", "command, cpu, memory and gpu configure a "
                                      "generated template: with workflowTemplate, set them in that template")
        return self


class Model(Spec):
    name: Name = Field(description="Model (and Service) name. Required.")
    team: Name = Field(description="Owning team; the model runs in its namespace. Required.")
    runtime: Literal["triton", "bentoml"] = Field(description="Serving runtime. Required.")
    image: str | None = Field(None, description="BentoML: the containerized Bento image without tag (each release "
                              "runs <image>:<version>); with `registry`, with its tag or digest (every release runs "
                              "it, reading its registered version from $PLINTH_MODEL_DIR). Default: null.")
    registry: ModelRegistry | None = Field(
        None, description="Serve a model registered in the platform's MLflow (registry.mlflow): each release's "
        "version names a registered version or alias, and an init container fetches that version's files through "
        "the MLflow server (as the team's workloads, no storage credential) into the pod before the server starts: "
        "Triton's model repository, or a Bento's $PLINTH_MODEL_DIR (/models). Not together with modelRepository. "
        "Default: null.")
    model_repository: str | None = Field(
        None, description="Triton: where the model repositories are: s3://bucket/path, gs://bucket/path or "
        "pvc://<claim>/<path> (a PersistentVolumeClaim of the team's namespace, mounted read-only); each release "
        "serves <modelRepository>/<version>/. Default: null.",
        pattern=r"^(s3|gs|pvc)://\S+$")
    repository_cidrs: tuple[Annotated[str, BeforeValidator(_cidr)], ...] = Field(
        (), description="Triton with an s3:// or gs:// repository: the object store's networks, the only place "
        "outside the cluster the model's pods may reach (team namespaces are default-deny), each at most a /8 "
        "(IPv6: /32). Default: [].")
    credentials_secret: Name | None = Field(
        None, description="A Secret in the team's namespace whose keys become the server's environment (e.g. "
        "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION for s3://). Default: null.")
    gpu: Count = Field(0, description="GPUs per replica (nvidia.com/gpu limits; with the GPU toleration and node "
                       "selector). Default: 0.")
    cpu: Quantity = Field("1", description="CPU per replica (request and limit). Default: 1.")
    memory: Quantity = Field("4Gi", description="Memory per replica (request and limit). Default: 4Gi.")
    startup_seconds: PositiveCount = Field(
        600, description="How long a replica may take to load its models before it is restarted (the startup "
        "probe's budget). Default: 600.")
    stable: Release = Field(description="The stable release. Required.")
    canary: Canary | None = Field(None, description="A canary release taking `weight` percent. Default: null.")
    shadow: Release | None = Field(
        None, description="A shadow release: the Gateway mirrors every routed request to it and discards its "
        "answers; only a request naming its track (header x-plinth-track: shadow, as `plinth verify` sends) gets "
        "an answer from it (needs the Gateway). Default: null.")
    autoscaling: Autoscaling = Field(default_factory=Autoscaling, description="Autoscaling. Default: off.")
    slo: Slo = Field(default_factory=Slo, description="Latency and error-rate objectives of the model's alerts "
                     "and canary gate. Default: 500 ms p95, 1% errors, canary 20% slower at most, over 5m.")
    drift: ModelDrift | None = Field(
        None, description="A drift job for the model (needs monitoring.drift.enabled): it exports the gauge "
        "plinth_model_drift_score the ModelDrift alert reads. Default: null (no job; your own monitor may export "
        "the gauge).")
    retraining: Retraining | None = Field(
        None, description="Retraining on drift (needs pipelines.argo, pipelines.events and monitoring.drift): the "
        "model's drift alerts go to a webhook of the platform's Argo Events, whose Sensor submits a workflow from "
        "`workflowTemplate` in the team's namespace. Default: null.")

    @property
    def request_log(self) -> RequestLog | None:
        """drift.requestLog: how the model logs its requests, None when it does not."""
        return self.drift.request_log if self.drift else None


class WorkflowArchive(Spec):
    """The workflow archive: finished workflows kept in a platform PostgreSQL after Kubernetes deletes them."""

    enabled: Flag = Field(False, description="Archive every finished workflow (controller.persistence.archive) in "
                          "the platform CloudNativePG Cluster `argo-postgres` of namespace argo (3 instances in "
                          "staging and prod, backed up like every Cluster with `backups`); the controller and the "
                          "server log in with the operator's `argo-postgres-app` Secret. Default: false.")
    ttl: str = Field("30d", pattern=r"^[1-9][0-9]*d$", description="How long an archived workflow is kept, in "
                     "days (controller.persistence.archiveTTL; the controller deletes older rows). Default: 30d.")
    database_size: Quantity = Field("10Gi", description="Volume of each instance of its PostgreSQL. Default: 10Gi.")
    storage_class: str | None = Field(
        None, description="StorageClass of the database volumes. Default: null (Longhorn's class `longhorn` when "
        "storage.longhorn is on, else the cluster's default StorageClass).",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class ArgoWorkflows(Spec):
    """Argo Workflows: the workflow controller in namespace argo; workflows run in the team namespaces."""

    enabled: Flag = Field(False, description="Run the Argo Workflows controller in namespace argo (its CRDs come "
                          "with the chart, rendered from the package: nothing is downloaded at install). Every team "
                          "namespace gets the ServiceAccount `argo-workflow` its workflows run as, with the executor's "
                          "Role only (workflowtaskresults create and patch), and its artifact repository under "
                          "workflows/<team>/ of the artifacts bucket: on an existing cluster with storage.objectStore "
                          "(keys derived from the stack secret plinth:objectStoreSeed), on eks and gke the target's "
                          "bucket as the team's own cloud identity workflows-<team> (no key). Default: false.")
    replicas: PositiveCount | None = Field(
        None, description="Controller replicas (one leads, elected through a Lease; the others wait). Default: null "
        "(1 in dev, 2 in staging and prod).")
    server: Flag = Field(False, description="Run the Argo Server (the UI and its API) in namespace argo: in-cluster "
                         "only in client auth mode (each caller brings their Kubernetes token), or with hostname on "
                         "the platform Gateway behind the provider's sign-on (identity.oidc.clients.argo). "
                         "Default: false.")
    hostname: str | None = Field(
        None, description="Host name of the Argo Server on the platform Gateway (one name under "
        "network.gateway.hostname): people sign on through identity.oidc (clients.argo, required) and act as "
        "their team's workflow account in the team's namespace (the platform admins read every team's). Needs "
        "server: true. Default: null (in-cluster only).", pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    archive: WorkflowArchive = Field(default_factory=WorkflowArchive, description="The workflow archive in a "
                                     "platform PostgreSQL. Default: off.")
    values: Values = {}


class EventBusPersistence(Spec):
    """Where the JetStream servers keep their streams."""

    enabled: Flag | None = Field(None, description="A volume per JetStream server (the EventBus's "
                                 "jetstream.persistence): events waiting in the bus survive every server's restart. "
                                 "Off: emptyDir, lost when every server restarts. Default: null (on in staging and "
                                 "prod, off in dev).")
    volume_size: Quantity = Field("10Gi", description="The volume of each server (ReadWriteOnce). Default: 10Gi.")
    storage_class: str | None = Field(
        None, description="StorageClass of the volumes. Default: null (Longhorn's class `longhorn` when "
        "storage.longhorn is on, else the cluster's default StorageClass).",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class ArgoEvents(Spec):
    """Argo Events: the events controller, its EventBus, and the retraining webhook in namespace argo-events."""

    enabled: Flag = Field(False, description="Run Argo Events in namespace argo-events (its CRDs come with the "
                          "chart; its controller's rights are a Role in that namespace only) with a JetStream "
                          "EventBus; each model with `retraining` gets a webhook endpoint Alertmanager sends its "
                          "drift alerts to and a Sensor that submits its retraining workflow. Needs pipelines.argo. "
                          "Default: false.")
    bus_replicas: PositiveCount | None = Field(
        None, description="JetStream servers of the EventBus: 1, or 3 and more (JetStream refuses 2). Default: "
        "null (1 in dev, 3 in staging and prod).")
    bus_persistence: EventBusPersistence = Field(default_factory=EventBusPersistence, description="The EventBus's "
                                                 "volumes. Default: on in staging and prod.")
    values: Values = {}


class Pipelines(Spec):
    argo: ArgoWorkflows = Field(default_factory=ArgoWorkflows, description="Workflow engine (Argo Workflows).")
    events: ArgoEvents = Field(default_factory=ArgoEvents, description="Event-driven workflows (Argo Events): "
                               "retraining on drift. Default: off.")


class JupyterHub(Spec):
    """JupyterHub in namespace jupyterhub: people sign on through identity.oidc and each gets a notebook server
    there, with a home volume of their own."""

    enabled: Flag = Field(False, description="Run JupyterHub (the hub, its proxy, a notebook server per person) in "
                          "namespace jupyterhub. Needs the platform Gateway, hostname, and identity.oidc with "
                          "clients.jupyterhub and endpoints: the hub has no login of its own. Default: false.")
    hostname: str | None = Field(
        None, description="Host name of JupyterHub on the platform Gateway (one name under network.gateway.hostname): "
        "the browser's way in and the sign-on's redirect (https://<hostname>/hub/oauth_callback). Required when "
        "enabled. Default: null.", pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    cpu: Quantity = Field("2", description="CPU limit of each notebook server (its request is a tenth of it). "
                          "Default: 2.")
    memory: Quantity = Field("4Gi", description="Memory of each notebook server (request and limit). Default: 4Gi.")
    storage: Quantity = Field("10Gi", description="Home volume of each person (/home/jovyan, kept between "
                              "servers). Default: 10Gi.")
    storage_class: str | None = Field(
        None, description="StorageClass of the home volumes and the hub's database volume. Default: null "
        "(Longhorn's class `longhorn` when storage.longhorn is on, else the cluster's default StorageClass).",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    idle_timeout_minutes: PositiveCount = Field(
        60, description="A notebook server idle this long is stopped (its home volume stays). Default: 60.")
    values: Values = {}


class Notebooks(Spec):
    jupyterhub: JupyterHub = Field(default_factory=JupyterHub, description="Interactive notebooks (JupyterHub). "
                                   "Default: off.")


class Serving(Spec):
    hostname: str | None = Field(
        None, description="Host name of the models on the platform Gateway (one name under "
        "network.gateway.hostname): each model is served at https://<hostname>/<team>/<model>/. Required when "
        "models exist and the Gateway is on. Default: null.",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    models: tuple[Model, ...] = Field((), max_length=MAX_MODELS, description=f"Served models, at most {MAX_MODELS}. "
                                      "Default: [].")
    lineage_required: Flag = Field(
        False, description="In prod, policy served-model-lineage requires every served track to run a version of a "
        "model registered in MLflow (`registry`) named by its version number, not an alias: what `plinth lineage` "
        "traces to its run and data. Default: false.")


class Drift(Spec):
    enabled: Flag = Field(False, description="Model drift alerts (ModelDrift, label alert_kind: drift) on the "
                          "gauge plinth_model_drift_score{namespace=<team>, model=<model>} that your drift monitor "
                          "exports. Default: false.")
    threshold: float = Field(0.2, ge=0, le=1, description="Drift score that fires an alert, 0-1. Default: 0.2.")
    receiver: Name | None = Field(
        None, description="The monitoring.alertmanager receiver drift alerts (label alert_kind: drift) are routed "
        "to, and only to: e.g. a retraining webhook, which gets the model and team as alert labels. Default: null "
        "(drift alerts follow the severity routes).")


class Receiver(Spec):
    """An Alertmanager receiver; its URL or key is a stack secret, never in the spec."""

    name: Name = Field(description="Receiver name. Required.")
    type: Literal["webhook", "slack", "pagerduty"] = Field(
        description="webhook (URL), slack (incoming-webhook URL) or pagerduty (routing key). Required.")
    channel: str | None = Field(None, description="slack: channel, e.g. #ml-alerts. Default: null.")
    severities: tuple[Literal["critical", "warning", "info"], ...] = Field(
        ("critical", "warning"), description="Alert severities routed here. Default: [critical, warning].")


class Alertmanager(Spec):
    replicas: PositiveCount | None = Field(
        None, description="Alertmanager replicas. Default: null (1 in dev, 3 in staging and prod).")
    receivers: tuple[Receiver, ...] = Field(
        (), description="Receivers; each one's URL/key is the entry of the same name in the secret stack config "
        "`plinth:alertReceivers` (a map). Default: [] (alerts are kept in Alertmanager only).")


class Grafana(Spec):
    hostname: str | None = Field(
        None, description="Host name of Grafana on the platform Gateway (HTTPS, TLS terminated there): one name "
        "under network.gateway.hostname. With identity.oidc, people sign on through the provider "
        "(identity.oidc.clients.grafana): platform admins as Admin, teams' ml-engineer groups as Editor, their "
        "data-scientist and viewer groups as Viewer, anyone else refused; the local admin "
        "(plinth:grafanaAdminPassword) stays for break-glass. Default: null (in-cluster Service only).",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class Monitoring(Spec):
    enabled: Flag = Field(False, description="Install Prometheus, Alertmanager and Grafana. Default: false.")
    retention: str = Field("15d", pattern=r"^[0-9]+[hdwy]$", description="Metrics retention. Default: 15d.")
    prometheus_replicas: PositiveCount | None = Field(
        None, description="Prometheus replicas. Default: null (1 in dev, 2 in staging and prod).")
    alertmanager: Alertmanager = Field(default_factory=Alertmanager, description="Alertmanager. Default: see fields.")
    gpu_metrics: Flag = Field(True, description="Scrape DCGM GPU metrics when the GPU operator is on. Default: true.")
    drift: Drift = Field(default_factory=Drift, description="Model drift alerts. Default: off.")
    grafana: Grafana = Field(default_factory=Grafana, description="Grafana. Default: see fields.")
    values: Values = {}


# --- tenancy -----------------------------------------------------------------


class TeamGroups(Spec):
    """Identity-provider groups per team role (least privilege, namespace scoped)."""

    ml_engineer: tuple[Group, ...] = Field((), description="Deploy and operate workloads. Default: [].")
    data_scientist: tuple[Group, ...] = Field((), description="Run jobs and notebooks, read logs. Default: [].")
    viewer: tuple[Group, ...] = Field((), description="Read-only. Default: [].")


class Quota(Spec):
    cpu: Quantity = Field("8", description="Total CPU requests. Default: 8.")
    memory: Quantity = Field("32Gi", description="Total memory requests. Default: 32Gi.")
    gpu: Count = Field(0, description="Total nvidia.com/gpu requests. Default: 0.")
    pods: PositiveCount = Field(50, description="Maximum pods. Default: 50.")
    storage: Quantity = Field("100Gi", description="Total PVC storage requests. Default: 100Gi.")


class ContainerDefaults(Spec):
    """Defaults the LimitRange applies to containers that do not set their own."""

    cpu_request: Quantity = Field("100m", description="Default CPU request. Default: 100m.")
    memory_request: Quantity = Field("128Mi", description="Default memory request. Default: 128Mi.")
    cpu_limit: Quantity = Field("1", description="Default CPU limit. Default: 1.")
    memory_limit: Quantity = Field("1Gi", description="Default memory limit. Default: 1Gi.")

    @model_validator(mode="after")
    def _requests_within_limits(self) -> ContainerDefaults:
        for resource, request, limit in (("cpu", self.cpu_request, self.cpu_limit),
                                         ("memory", self.memory_request, self.memory_limit)):
            if quantity_value(request) > quantity_value(limit):
                raise PydanticCustomError(
                    "request_over_limit", "the default {resource} request {request} is above its limit {limit} "
                    "(the API server rejects such a LimitRange)",
                    {"resource": resource, "request": request, "limit": limit})
        return self


class Team(Spec):
    name: Name = Field(description="Team name; also its namespace. Required.")
    cost_center: str | None = Field(None, description="Overrides metadata.costCenter for this team (label "
                                    "plinth.dev/cost-center, so a label value). Default: null.",
                                    pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
    groups: TeamGroups = Field(default_factory=TeamGroups, description="Groups per role. Default: none.")
    quota: Quota = Field(default_factory=Quota, description="ResourceQuota. Default: see Quota.")
    container_defaults: ContainerDefaults = Field(
        default_factory=ContainerDefaults, description="LimitRange defaults."
    )


def _issuer_url(value: Any) -> Any:
    return _https_url(value, "expected the issuer's https:// URL, exactly as its tokens' iss claim reads (no user "
                      "info, query or fragment), e.g. https://login.corp.internal/realms/platform")


def _endpoint_url(value: Any) -> Any:
    return _https_url(value, "expected the endpoint's https:// URL as the provider's discovery document lists it "
                      "(no user info, query or fragment)")


def _https_url(value: Any, expected: str) -> Any:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value) if isinstance(value, str) else None
    except ValueError:
        parts = None
    if (parts is None or parts.scheme != "https" or not parts.hostname or "@" in parts.netloc or parts.query
            or parts.fragment or "?" in value or "#" in value or any(c.isspace() for c in value)):
        raise PydanticCustomError("issuer_url", expected)
    return value


_PEM_CERTIFICATE = re.compile(r"-----BEGIN CERTIFICATE-----\s*([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----")


def _pem_certificates(value: Any) -> Any:
    """One or more PEM certificates and nothing else (no key: a CA certificate is public, a key never is)."""
    import base64
    import binascii

    expected = "expected PEM CA certificates (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----) only"
    if not isinstance(value, str):
        raise PydanticCustomError("pem_certificates", expected)
    blocks = _PEM_CERTIFICATE.findall(value)
    if not blocks or _PEM_CERTIFICATE.sub("", value).strip():
        raise PydanticCustomError("pem_certificates", expected)
    for block in blocks:
        try:
            base64.b64decode("".join(block.split()), validate=True)
        except (binascii.Error, ValueError):
            raise PydanticCustomError("pem_certificates", expected + " (one is not base64)") from None
    return value


def _claim_prefix(value: Any) -> Any:
    if not isinstance(value, str) or not re.fullmatch(r"([A-Za-z0-9][-A-Za-z0-9_.]{0,30}:)?", value):
        raise PydanticCustomError("claim_prefix", "expected a short prefix ending in ':' such as oidc:, or \"\"")
    if value.startswith("system:"):
        raise PydanticCustomError("claim_prefix", "'system:' is Kubernetes' own prefix; choose another, e.g. oidc:")
    return value


Claim = Annotated[str, Field(pattern=r"^\S{1,100}$")]
ClaimPrefix = Annotated[str, BeforeValidator(_claim_prefix)]


class OidcClients(Spec):
    """The identity provider's clients, one per surface that signs people on (each its own token audience)."""

    kubernetes: str = Field(
        description="The client ID the Kubernetes API accepts tokens for (their aud claim): the client kubectl "
        "signs in as (e.g. with the kubelogin plugin). A token issued to another client (Grafana's, Harbor's) is "
        "refused. Required.", pattern=r"^\S{1,255}$")
    grafana: str | None = Field(
        None, description="The client ID Grafana signs people on as (generic OAuth, authorization-code flow with "
        "PKCE; redirect URI https://<monitoring.grafana.hostname>/login/generic_oauth); its secret is the stack "
        "secret plinth:grafanaOidcClientSecret. Needs monitoring.grafana.hostname and identity.oidc.endpoints. "
        "Default: null (Grafana is not on the Gateway, or not with sign-on).", pattern=r"^\S{1,255}$")
    ui_proxy: str | None = Field(
        None, description="The client ID the sign-on proxy (identity.uiProxy) signs people on as; redirect URIs "
        "https://<each identity.uiProxy.hosts name>/oauth2/callback; its secret is the stack secret "
        "plinth:uiProxyClientSecret. Required with identity.uiProxy. Default: null.", pattern=r"^\S{1,255}$")
    vault: str | None = Field(
        None, description="The client ID Vault signs people on as: the configure stage mounts Vault's oidc auth "
        "method at auth/oidc with one role per team with groups, team-<team>, for the team's groups (every role's) "
        "and with the team's policy (vault login -method=oidc role=team-<team>). Redirect URIs "
        "<secrets.vault.address>/ui/vault/auth/oidc/oidc/callback (the UI) and http://localhost:8250/oidc/callback "
        "(the CLI); its secret is the stack secret plinth:vaultOidcClientSecret. Needs secrets.vault. Default: null "
        "(nobody signs on to Vault through the provider).", pattern=r"^\S{1,255}$")
    harbor: str | None = Field(
        None, description="The client ID Harbor signs people on as: the configure stage switches Harbor to OIDC "
        "authentication (users onboarded from usernameClaim, groups from groupsClaim, rbac.platformAdminGroup as "
        "Harbor admins, the teams' groups members of their projects). Redirect URI "
        "https://<registry.harbor.hostname>/c/oidc/callback; its secret is the stack secret "
        "plinth:harborOidcClientSecret. Needs registry.harbor with a hostname and groupType oidc. Default: null "
        "(Harbor keeps its own user database).", pattern=r"^\S{1,255}$")
    argo: str | None = Field(
        None, description="The client ID the Argo Server signs people on as (its native SSO, authorization-code "
        "flow; redirect URI https://<pipelines.argo.hostname>/oauth2/callback); its secret is the stack secret "
        "plinth:argoOidcClientSecret. Needs pipelines.argo with server and hostname. Default: null (the Argo "
        "Server, if on, stays in-cluster in client auth mode).", pattern=r"^\S{1,255}$")
    mlflow: str | None = Field(
        None, description="The client ID MLflow signs people on as (the chart's oidcAuth, the mlflow-oidc-auth "
        "plugin): rbac.platformAdminGroup administers MLflow, each team's groups read and write the experiments "
        "and registered models named <team>.<name> (ml-engineer MANAGE, data-scientist EDIT, viewer READ), nobody "
        "else anything. Workloads send a token the provider issued to this client (its aud) as "
        "MLFLOW_TRACKING_TOKEN. Redirect URI https://<registry.mlflow.hostname>/callback; its secret is the stack "
        "secret plinth:mlflowOidcClientSecret. Needs registry.mlflow. Default: null (MLflow without sign-on: "
        "every client may do everything; prod needs registry.mlflow.reason).", pattern=r"^\S{1,255}$")
    jupyterhub: str | None = Field(
        None, description="The client ID JupyterHub signs people on as (its GenericOAuthenticator, "
        "authorization-code flow with PKCE; redirect URI https://<notebooks.jupyterhub.hostname>/hub/oauth_callback): "
        "the teams' groups and rbac.platformAdminGroup may sign on, the platform admins as JupyterHub admins. Its "
        "secret is the stack secret plinth:jupyterhubOidcClientSecret. Required with notebooks.jupyterhub. "
        "Default: null.", pattern=r"^\S{1,255}$")


class OidcEndpoints(Spec):
    """The provider's endpoints, as its discovery document lists them, for the clients that do not read that
    document (Grafana's generic OAuth)."""

    authorization: Annotated[str, BeforeValidator(_endpoint_url)] = Field(
        description="authorization_endpoint (https): where a browser signs in. Required.")
    token: Annotated[str, BeforeValidator(_endpoint_url)] = Field(
        description="token_endpoint (https): where a client trades the code for tokens. Required.")


class Oidc(Spec):
    """An OpenID Connect identity provider: who the platform's people are and which groups they are in."""

    issuer: Annotated[str, BeforeValidator(_issuer_url)] = Field(
        description="The provider's issuer URL (https), exactly as its tokens' iss claim reads; its discovery "
        "document is <issuer>/.well-known/openid-configuration, which the API server must reach. Required.")
    certificate_authority: Annotated[str, BeforeValidator(_pem_certificates)] | None = Field(
        None, description="The PEM certificate(s) of the CA that signed the issuer's TLS certificate, inline "
        "(public: certificates only, never a key), e.g. the company CA. Default: null (the system's trusted "
        "CAs). Not on eks: EKS reaches the issuer over the internet and trusts public CAs only.")
    username_claim: Claim = Field(
        "email", description="The token claim naming the user; the Kubernetes user is <usernamePrefix><claim "
        "value>. With email, the API server also refuses a token whose email_verified is false. Default: email.")
    username_prefix: ClaimPrefix = Field(
        "oidc:", description="Put before every user name from the provider, so none can pass for a user of "
        "another authenticator (a client certificate, the eks access entry, system: users). Default: oidc:.")
    groups_claim: Claim = Field(
        "groups", description="The token claim listing the user's groups (a string or a list). Default: groups.")
    groups_prefix: ClaimPrefix = Field(
        "oidc:", description="Put before every group from the provider: the Kubernetes API names the group "
        "<groupsPrefix><group>, and so do Plinth's bindings of the teams' groups and rbac.platformAdminGroup. "
        "A provider group then never passes for a group of another authenticator: system:masters in a token "
        "becomes oidc:system:masters, which grants nothing. Default: oidc:.")
    clients: OidcClients = Field(description="The provider's client IDs, per surface. Required.")
    scopes: tuple[Annotated[str, Field(pattern=r"^[!#-\[\]-~]{1,100}$")], ...] = Field(
        ("openid", "email", "profile", "groups"), min_length=1, description="The scopes the platform's sign-on "
        "clients (Grafana, the sign-on proxy, the Argo Server) ask for: openid, and what puts the username and "
        "groups claims in the ID token (many providers, e.g. Dex and Okta, send groups only for the groups "
        "scope). Default: [openid, email, profile, groups].")
    endpoints: OidcEndpoints | None = Field(
        None, description="The provider's authorization and token endpoints, for Grafana (which does not read the "
        "discovery document). Default: null (required with clients.grafana).")
    mlflow_scope: str | None = Field(
        None, description="The scope under which the provider issues access tokens for MLflow's API, their "
        "audience clients.mlflow: JupyterHub asks for it beside `scopes`, and each notebook server gets that token "
        "for MLflow. For providers that issue API tokens per scope: Entra ID (api://<MLflow's application ID "
        "URI>/<scope>, MLflow's application issuing v2 tokens, whose audience is its client ID), Okta (a scope of a "
        "custom authorization server whose audience is MLflow's client ID). Not with Dex, whose cross-client "
        "audience does this. Default: null (the provider's own way, e.g. an audience mapper).",
        pattern=r"^[!#-\[\]-~]{1,200}$")


HOST = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
"""A host name on the platform Gateway (lowercase labels)."""


class UiHosts(Spec):
    """Host names on the platform Gateway of the web UIs without a login of their own: each one set puts an
    oauth2-proxy in front of that UI (its service must be on)."""

    prometheus: str | None = Field(None, description="Prometheus (monitoring). Default: null.", pattern=HOST)
    alertmanager: str | None = Field(None, description="Alertmanager (monitoring). Default: null.", pattern=HOST)
    hubble: str | None = Field(None, description="Hubble UI (network.cilium.hubble). Default: null.", pattern=HOST)
    longhorn: str | None = Field(None, description="The Longhorn UI (storage.longhorn). Default: null.",
                                 pattern=HOST)


class UiProxy(Spec):
    """oauth2-proxy in front of the web UIs that have no login of their own (namespace sign-on): one proxy per
    UI, each on its own host name with its own session cookie."""

    enabled: Flag = Field(False, description="Run the sign-on proxy (needs identity.oidc with clients.uiProxy, "
                          "the platform Gateway, and the stack secrets plinth:uiProxyClientSecret and "
                          "plinth:uiProxyCookieSecret). Only rbac.platformAdminGroup passes. Default: false.")
    hosts: UiHosts = Field(default_factory=UiHosts, description="One host name per UI. Default: none.")
    session: str = Field("8h", pattern=r"^[1-9][0-9]*[mh]$", description="How long a sign-on lasts (the session "
                         "cookie's lifetime) before the provider is asked again. Default: 8h.")
    values: Values = {}


DexText = Annotated[str, Field(min_length=1, max_length=500, pattern=r"^[^${}\n]*$")]
"""A setting of a Dex connector: one line, no `$` (Dex expands $VARIABLES in a connector's settings) and no braces
(the image's entrypoint renders the configuration file as a gomplate template first)."""


class LdapUserSearch(Spec):
    """How Dex finds the person who signs in (the connector's userSearch)."""

    base_dn: DexText = Field(description="Where users are searched, e.g. ou=people,dc=corp,dc=internal. Required.")
    filter: DexText = Field("(objectClass=person)", description="Filter every user matches. Default: "
                            "(objectClass=person).")
    username: DexText = Field("uid", description="The attribute a person types as their user name (AD: "
                              "sAMAccountName). Default: uid.")
    id_attr: DexText = Field("uid", description="The attribute that identifies the user (the token's sub). "
                             "Default: uid.")
    email_attr: DexText = Field("mail", description="The attribute holding the e-mail (the token's email claim, "
                                "the platform's usernameClaim). Default: mail.")
    name_attr: DexText = Field("cn", description="The attribute holding the display name. Default: cn.")


class LdapGroupSearch(Spec):
    """How Dex finds a user's groups (the connector's groupSearch): their names are the token's groups."""

    base_dn: DexText = Field(description="Where groups are searched, e.g. ou=groups,dc=corp,dc=internal. "
                             "Required.")
    filter: DexText = Field("(objectClass=groupOfNames)", description="Filter every group matches (AD: "
                            "(objectClass=group)). Default: (objectClass=groupOfNames).")
    user_attr: DexText = Field("DN", description="The user's attribute a group lists its members by. Default: DN.")
    group_attr: DexText = Field("member", description="The group's attribute listing its members. Default: "
                                "member.")
    name_attr: DexText = Field("cn", description="The group's name, as the teams' groups and "
                               "rbac.platformAdminGroup name it. Default: cn.")


class LdapConnector(Spec):
    """An LDAP or Active Directory directory Dex signs people in against."""

    name: Name = Field(description="The connector's ID, and its entry in the stack secret plinth:dexLdapBindPassword "
                       "(a map: `pulumi config set --secret --path 'plinth:dexLdapBindPassword.<name>'`). Required.")
    host: str = Field(description="host:port of the directory over TLS, e.g. ldap.corp.internal:636 (never in "
                      "clear). Required.", pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?:[0-9]{1,5}$")
    start_tls: Flag = Field(False, description="Connect in clear and upgrade with StartTLS (port 389) instead of "
                            "TLS from the start. Default: false.")
    certificate_authority: Annotated[str, BeforeValidator(_pem_certificates)] | None = Field(
        None, description="PEM certificate(s) of the CA that signed the directory's certificate. Default: null "
        "(the system's CAs).")
    bind_dn: DexText = Field(description="The account Dex searches the directory as; its password is the stack "
                             "secret plinth:dexLdapBindPassword.<name>. Required.")
    user_search: LdapUserSearch = Field(description="How users are found. Required.")
    group_search: LdapGroupSearch = Field(description="How their groups are found. Required.")


class Dex(Spec):
    """Dex in namespace dex: the platform's own OpenID Connect provider, brokering an on-prem directory (LDAP,
    Active Directory), e.g. in an air gap. It is identity.oidc's issuer: every client of identity.oidc.clients is one
    of its static clients."""

    enabled: Flag = Field(False, description="Run Dex (needs the platform Gateway, hostname, identity.oidc with "
                          "issuer https://<hostname>, and at least one connector). Default: false.")
    hostname: str | None = Field(
        None, description="Dex's host name on the platform Gateway (one name under network.gateway.hostname); "
        "identity.oidc.issuer must be https://<hostname>. Required when enabled. Default: null.",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    replicas: PositiveCount | None = Field(
        None, description="Dex replicas (stateless: its state is in Kubernetes objects). Default: null (1 in dev, "
        "2 in staging and prod).")
    ldap: tuple[LdapConnector, ...] = Field((), max_length=10, description="LDAP / Active Directory connectors. "
                                            "Default: [].")
    values: Values = {}


class SignOn(Spec):
    """How people sign on to the platform: one identity provider for every surface (this release: the
    Kubernetes API; the teams' groups come from the provider's groups claim)."""

    oidc: Oidc | None = Field(
        None, description="The OpenID Connect identity provider. existing: Plinth renders the API server's "
        "AuthenticationConfiguration (modules/cluster/README.md); eks: an OIDC identity provider config of the "
        "cluster; gke: not supported (GKE signs people on through Google identities). Default: null (the "
        "cluster's own authentication only; prod needs a reason).")
    reason: str | None = Field(
        None, description="Why the platform has no identity provider (required in prod without identity.oidc). "
        "Default: null.", min_length=10, max_length=200)
    ui_proxy: UiProxy = Field(default_factory=UiProxy, description="The sign-on proxy in front of the web UIs "
                              "without a login of their own. Default: off.")
    dex: Dex = Field(default_factory=Dex, description="Dex, the platform's own identity provider (a broker for "
                     "an on-prem directory). Default: off.")

    def kubernetes_group(self, group: str) -> str:
        """An identity-provider group as the Kubernetes API names it: with the groups prefix when sign-on is on."""
        return f"{self.oidc.groups_prefix}{group}" if self.oidc else group


class Rbac(Spec):
    platform_admin_group: Group = Field(description="Group bound to the ClusterRole "
                                        "plinth:<metadata.name>:platform-admin. Required.")


# --- air-gap -----------------------------------------------------------------


class PullSecret(Spec):
    username: str = Field(description="Robot account on the mirror; its password is the stack secret "
                          "`plinth:mirrorPassword`. Required.")


class Mirror(Spec):
    registry: str = Field(
        description="Image mirror prefix, e.g. harbor.corp.internal/mirror. Required.",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9._-]+)*$",
    )
    charts: str = Field(description="Chart source inside the perimeter: oci://registry/path, an https:// chart "
                        "repository, or a directory of packaged charts (see `charts.source`). Required.")
    files: str | None = Field(
        None, description="HTTPS location inside the perimeter serving plain manifest bundles (Gateway API CRDs) "
        "as <files>/<bundle>/<version>/<file>; `plinth images` lists them. Needed when the chart source is not "
        "a directory. Default: null.", pattern=r"^https://")
    pull_secret: PullSecret | None = Field(
        None, description="Create an image pull secret for the mirror in every team namespace. Default: null."
    )
    cidrs: tuple[Annotated[str, BeforeValidator(_cidr)], ...] = Field(
        (), description="Networks outside the cluster that platform namespaces may reach in air-gap mode: the "
        "mirror and the API server (e.g. 10.20.0.0/24), each at most a /8 (IPv6: /32). Everything else outside the "
        "cluster is denied. Default: [].")
    hosts: tuple[HostPort, ...] = Field(
        (), description="Other hosts inside the perimeter, as host[:port] (an internal ACME CA, the unsealing "
        "Vault, the Python index). The perimeter is these, the registry's host and the file mirror's host: every "
        "chart source and endpoint must name one of them exactly (a sibling host of the same domain is outside). "
        "Default: [].")


class Airgap(Spec):
    enabled: Flag = Field(False, description="Every image and chart comes from the mirror. Default: false.")
    mirror: Mirror | None = Field(None, description="The internal mirror (required when enabled). Default: null.")


class Charts(Spec):
    source: str | None = Field(
        None,
        description="Where every chart comes from: null = each chart's public repository (plinth/catalog.py); "
        "oci://registry/path (charts as OCI artifacts, e.g. in Harbor); https://... (a chart repository index); "
        "or a directory holding charts/<name>-<version>.tgz and crds/<bundle>/*.yaml (absolute, or relative to the "
        "project). In air-gap mode the default is airgap.mirror.charts. Default: null.")


class Admission(Spec):
    """Plinth's ValidatingAdmissionPolicies: the API server itself refuses what breaks the platform's rules."""

    enabled: Flag = Field(True, description="Install the admission policies (mirror-only images in air-gap, no "
                          "external Services, host access for the allowlisted platform workloads only, team "
                          "RoleBindings and ownership labels). Default: true.")
    mode: Literal["deny", "audit"] = Field(
        "deny", description="deny: the API server refuses a violating object (validationActions [Deny]); audit: it "
        "admits it with a warning to the client and an audit-log annotation ([Audit, Warn]), e.g. while a stack "
        "adopts the rules. Default: deny.")


class TestNodes(Spec):
    """The simulated nodes of an acceptance cluster on an `existing` target (tests/e2e); cloud targets get
    their node pools at their sizes instead. Plinth itself never reads this."""

    cpu_nodes: Count = Field(3, description="Nodes without GPUs. Default: 3.")
    gpu_nodes: Count = Field(1, description="GPU nodes: the GPU taint and label, nvidia.com/gpu capacity. "
                             "Default: 1.")
    gpus_per_node: PositiveCount = Field(1, description="nvidia.com/gpu of each GPU node. Default: 1.")
    cpu: PositiveCount = Field(16, description="CPU cores of every node. Default: 16.")
    memory: Quantity = Field("64Gi", description="Memory of every node. Default: 64Gi.")


class Testing(Spec):
    """Options for throw-away test clusters only; refused in prod."""

    skip_await: Flag = Field(
        False,
        description="For an API server without nodes: don't wait for workloads to become ready and delete in "
        "the background. Default: false.",
    )
    await_timeout_seconds: PositiveCount | None = Field(
        None, description="How long the engine waits for each workload and release to become ready before "
        "failing `up` (short, for tests that expect a failure). Default: null (the engine's own timeouts).")
    nodes: TestNodes = Field(default_factory=TestNodes, description="The acceptance cluster's simulated nodes "
                             "on an `existing` target. Default: 3 CPU nodes and 1 GPU node.")


class DatabaseBackups(Spec):
    """Every CloudNativePG cluster: WAL archived continuously, a base backup on a schedule, old ones pruned."""

    schedule: str = Field(
        "0 2 * * *", description="When each database takes its base backup: a 5-field cron expression (minute "
        "hour day month weekday, UTC). WAL is archived continuously besides, so a restore reaches any moment "
        "up to the last archived segment. Default: 0 2 * * * (daily at 02:00).",
        pattern=r"^\S+( \S+){4}$")
    retention: str | None = Field(
        None, description="How long base backups and the WAL they need are kept: <n>d, <n>w or <n>m (Barman's "
        "recovery window). Default: null (30d in prod, 7d in dev and staging).", pattern=r"^[1-9][0-9]{0,3}[dwm]$")


class VolumeBackups(Spec):
    """Longhorn's volumes: a recurring backup of every volume of the default group to the backups bucket."""

    schedule: str = Field(
        "0 3 * * *", description="When Longhorn backs up every volume (its RecurringJob of the default group): a "
        "5-field cron expression (UTC). Default: 0 3 * * * (daily at 03:00, after the databases).",
        pattern=r"^\S+( \S+){4}$")
    retain: PositiveCount = Field(
        14, le=100, description="How many backups of each volume Longhorn keeps; older ones are deleted "
        "from the bucket. Default: 14 (two weeks of daily backups).")


class VaultBackups(Spec):
    """Vault with raft (secrets.vault.ha): a raft snapshot on a schedule."""

    schedule: str = Field(
        "0 1 * * *", description="When Vault's raft snapshot is taken: a 5-field cron expression (UTC). "
        "Default: 0 1 * * * (daily at 01:00).", pattern=r"^\S+( \S+){4}$")
    retain: PositiveCount = Field(
        14, le=100, description="How many snapshots are kept on the snapshot volume; the job deletes "
        "older ones. Default: 14.")


class ClusterBackups(Spec):
    """Velero: the Kubernetes objects of the cluster's namespaces (and the cluster-scoped objects they use) on a
    schedule, to the backups bucket's `velero/` prefix."""

    schedule: str = Field(
        "0 4 * * *", description="When Velero backs up the namespaces: a 5-field cron expression (UTC). "
        "Default: 0 4 * * * (daily at 04:00, after Vault, the databases and the volumes).",
        pattern=r"^\S+( \S+){4}$")
    retention: str | None = Field(
        None, description="How long each backup is kept before Velero deletes it from the bucket: <n>d or <n>w "
        "(the backup's ttl). Default: null (30d in prod, 7d in dev and staging).", pattern=r"^[1-9][0-9]{0,3}[dw]$")
    namespaces: list[Name] = Field(
        default_factory=list, description="The namespaces backed up. Default: [] (every namespace).")
    values: Values = {}

    def ttl_for(self, environment: str) -> str:
        """The backups' ttl, as Velero writes a duration (hours, minutes, seconds)."""
        retention = self.retention or ("30d" if environment == "prod" else "7d")
        days = int(retention[:-1]) * (7 if retention.endswith("w") else 1)
        return f"{days * 24}h0m0s"


class Backups(Spec):
    """Backups of the platform's data, to the backups bucket: on an existing target the object store's
    <platform>-backups (storage.objectStore), on eks and gke the cloud's <bucketPrefix>-backups."""

    enabled: Flag | None = Field(
        None, description="Back up every stateful service of the platform (every CloudNativePG cluster, "
        "Longhorn's volumes, Vault's raft storage, the namespaces' objects through Velero). Default: null (on "
        "in prod, off in dev and staging; prod "
        "refuses false without a reason).")
    reason: str | None = Field(
        None, description="Why backups are off (required in prod with enabled: false). Default: null.",
        min_length=10, max_length=200)
    databases: DatabaseBackups = Field(default_factory=DatabaseBackups, description="PostgreSQL (CloudNativePG) "
                                       "backups. Default: daily base backups, WAL archived continuously.")
    volumes: VolumeBackups = Field(default_factory=VolumeBackups, description="Longhorn volume backups. "
                                   "Default: daily, 14 kept.")
    vault: VaultBackups = Field(default_factory=VaultBackups, description="Vault raft snapshots (with "
                                "secrets.vault.ha). Default: daily, 14 kept.")
    cluster: ClusterBackups = Field(default_factory=ClusterBackups, description="Velero backups of the "
                                    "namespaces' objects. Default: daily, every namespace, kept 30 days in prod.")
    values: Values = {}

    def active(self, environment: str) -> bool:
        """Whether backups are on in `environment` (null: prod only)."""
        return self.enabled if self.enabled is not None else environment == "prod"

    def retention_for(self, environment: str) -> str:
        return self.databases.retention or ("30d" if environment == "prod" else "7d")


# --- the whole platform ------------------------------------------------------


class PlatformSpec(Spec):
    """One governed ML platform."""

    api_version: Literal["plinth.dev/v1alpha1"] = Field(description=f"Spec API version: {API_VERSION}. Required.")
    kind: Literal["Platform"] = Field(description="Always Platform. Required.")
    metadata: Metadata = Field(description="Name, environment and cost center. Required.")
    target: Target = Field(description="Where the platform runs (existing | eks | gke). Required.")
    kubernetes: Kubernetes = Field(default_factory=Kubernetes, description="Kubernetes version.")
    charts: Charts = Field(default_factory=Charts, description="Chart source. Default: public repositories.")
    network: Network = Field(default_factory=Network, description="Networking.")
    certificates: Certificates = Field(default_factory=Certificates, description="Certificates.")
    storage: Storage = Field(default_factory=Storage, description="Storage.")
    secrets: Secrets = Field(default_factory=Secrets, description="Secrets management.")
    registry: Registry = Field(default_factory=Registry, description="Private registries.")
    feature_store: FeatureStore = Field(default_factory=FeatureStore, description="Feature store.")
    gpu: Gpu = Field(default_factory=Gpu, description="GPU scheduling.")
    serving: Serving = Field(default_factory=Serving, description="Model serving.")
    pipelines: Pipelines = Field(default_factory=Pipelines, description="Pipelines (workflows in the team namespaces).")
    notebooks: Notebooks = Field(default_factory=Notebooks, description="Notebooks for the platform's people. "
                                 "Default: off.")
    monitoring: Monitoring = Field(default_factory=Monitoring, description="Monitoring.")
    backups: Backups = Field(default_factory=Backups, description="Backups of the platform's data. Default: on "
                             "in prod, off in dev and staging.")
    identity: SignOn = Field(default_factory=SignOn, description="Sign-on through the identity provider. "
                             "Default: none (prod needs identity.oidc or identity.reason).")
    rbac: Rbac = Field(description="Platform-wide RBAC. Required.")
    teams: tuple[Team, ...] = Field((), max_length=MAX_TEAMS, description=f"Tenant teams, one namespace each, at most "
                                    f"{MAX_TEAMS}. Default: [].")
    airgap: Airgap = Field(default_factory=Airgap, description="Air-gap mode. Default: off.")
    admission: Admission = Field(default_factory=Admission, description="Admission policies. Default: on, deny.")
    testing: Testing = Field(default_factory=Testing, description="Test-cluster options. Default: off.")


def perimeter_hosts(spec: PlatformSpec) -> tuple[str, ...]:
    """The hosts inside an air gap, as host[:port]: the mirror registry's, the file mirror's and
    airgap.mirror.hosts. A URL is inside only when its host[:port] is one of them, exactly: a sibling
    host of the same parent domain (another tenant of a shared registry service) is outside."""
    mirror = spec.airgap.mirror
    if mirror is None:
        return ()
    hosts = [mirror.registry.split("/", 1)[0], url_host_port(mirror.files) if mirror.files else None, *mirror.hosts]
    return tuple(dict.fromkeys(h.lower() for h in hosts if h))


def url_host_port(url: str) -> str | None:
    """host[:port] of a URL as a client would connect to it (user info dropped), lower case; None if none."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port is not None else host
