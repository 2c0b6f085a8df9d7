"""GCP GKE target (`target.type: gke`): a VPC-native private cluster, node pools, Workload Identity, a Cloud
KMS key and buckets.

Why each choice: README.md beside this file. Every name is derived from the spec (`TargetFacts`).
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from plinth.modules.cluster import Target, TargetArgs, exec_kubeconfig, kubernetes_provider, pool_labels, pool_taints
from plinth.spec.models import GkeTarget
from plinth.targets import BUCKET_PURPOSES, Identity, TargetFacts, bounded_name
from plinth.vocabulary import GCP_PUBLIC_ENDPOINT_REASON

NODE_ROLES = ("roles/logging.logWriter", "roles/monitoring.metricWriter", "roles/artifactregistry.reader")
"""The nodes' service account: logs, metrics and images, nothing else (never the default compute account)."""
GKE_DEVICE_PLUGIN_OFF = {"gke-no-default-nvidia-gpu-device-plugin": "true"}
"""GPU pools: GKE's own device plugin stays off, so the GPU operator's (with Plinth's sharing config) serves
the GPUs as on every other target."""
KMS_ROTATION = "7776000s"
"""90 days."""
BUCKET_ROLES = {"bucket-rw": "roles/storage.objectUser", "bucket-read": "roles/storage.objectViewer"}
LIST_PREFIX = "storage.googleapis.com/objectListPrefix"
"""The request attribute a condition reads for an object listing (`storage.objects.list`): its prefix."""


class GkeCluster(Target):
    """A new GKE cluster in its own VPC (plinth:cluster:GkeCluster)."""

    type_token = "plinth:cluster:GkeCluster"

    def __init__(self, name: str, args: TargetArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(name, args, opts)
        spec, facts = args.target, args.facts
        prefix = facts.prefix
        labels = {key: _label_value(value) for key, value in args.tags().items()}
        self.gcp = gcp.Provider(f"{name}-gcp", project=spec.project, region=spec.region, default_labels=labels,
                                opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=self, provider=self.gcp)

        # --- network: one subnet with the pods' and services' secondary ranges; Cloud NAT or nothing -------
        network = gcp.compute.Network(f"{name}-vpc", name=prefix, auto_create_subnetworks=False, opts=child)
        subnet = gcp.compute.Subnetwork(
            f"{name}-nodes", name=f"{prefix}-nodes", network=network.id, region=spec.region,
            ip_cidr_range=spec.subnet_cidr, private_ip_google_access=True,
            secondary_ip_ranges=[{"range_name": "pods", "ip_cidr_range": spec.pods_cidr},
                                 {"range_name": "services", "ip_cidr_range": spec.services_cidr}], opts=child)
        if spec.egress == "nat":
            router = gcp.compute.Router(f"{name}-router", name=prefix, network=network.id, region=spec.region,
                                        opts=child)
            gcp.compute.RouterNat(f"{name}-nat", name=prefix, router=router.name, region=spec.region,
                                  nat_ip_allocate_option="AUTO_ONLY",
                                  source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
                                  log_config={"enable": True, "filter": "ERRORS_ONLY"}, opts=child)

        # --- the cluster ---------------------------------------------------------------------------------
        nodes_account = gcp.serviceaccount.Account(f"{name}-nodes", account_id=bounded_name(f"{prefix}-nodes", 30),
                                                   display_name=f"{prefix} GKE nodes", opts=child)
        for role in NODE_ROLES:
            gcp.projects.IAMMember(f"{name}-nodes-{role.rsplit('/', 1)[1]}", project=spec.project, role=role,
                                   member=nodes_account.email.apply(lambda e: f"serviceAccount:{e}"), opts=child)
        cluster_labels = {}
        if not spec.private and spec.public_endpoint_reason:
            cluster_labels[GCP_PUBLIC_ENDPOINT_REASON] = _label_value(spec.public_endpoint_reason)
        self.cluster = gcp.container.Cluster(
            f"{name}-gke",
            name=prefix,
            location=spec.region,
            network=network.id,
            subnetwork=subnet.id,
            min_master_version=args.kubernetes_version,
            release_channel={"channel": "UNSPECIFIED"},
            # Node pools are Plinth's own (below), never the default pool.
            remove_default_node_pool=True,
            initial_node_count=1,
            deletion_protection=args.prod,
            ip_allocation_policy={"cluster_secondary_range_name": "pods", "services_secondary_range_name": "services"},
            private_cluster_config={
                "enable_private_nodes": True,
                "enable_private_endpoint": spec.private,
                "master_ipv4_cidr_block": spec.control_plane_cidr,
            },
            master_authorized_networks_config={"cidr_blocks": [
                {"cidr_block": cidr, "display_name": f"authorized-{index}"}
                for index, cidr in enumerate(spec.authorized_networks)]},
            workload_identity_config={"workload_pool": f"{spec.project}.svc.id.goog"},
            # Cilium (installed by Plinth, as on every target) is the dataplane and network policy, not GKE's.
            datapath_provider="LEGACY_DATAPATH",
            network_policy={"enabled": False},
            addons_config={"http_load_balancing": {"disabled": True},
                           "network_policy_config": {"disabled": True}},
            resource_labels=cluster_labels or None,
            opts=child,
        )
        for pool in spec.node_pools:
            self._node_pool(name, pool, spec, nodes_account, child)

        # --- Vault's unseal key ----------------------------------------------------------------------------
        unseal_key = None
        if facts.identity("vault"):
            # Key rings cannot be deleted in GCP: destroy forgets it, and a re-create adopts the same name.
            ring = gcp.kms.KeyRing(f"{name}-keyring", name=prefix, location=spec.region, opts=child)
            unseal_key = gcp.kms.CryptoKey(f"{name}-vault-unseal", name="vault-unseal", key_ring=ring.id,
                                           rotation_period=KMS_ROTATION, opts=child)

        # --- buckets and identities ------------------------------------------------------------------------
        buckets = {purpose: gcp.storage.Bucket(
            f"{name}-{purpose}", name=facts.bucket(purpose), location=spec.region, uniform_bucket_level_access=True,
            public_access_prevention="enforced", versioning={"enabled": True}, force_destroy=args.delete_data,
            opts=args.bucket_options(child)) for purpose in BUCKET_PURPOSES}
        for identity in facts.identities:
            self._workload_identity(name, identity, facts, spec.project, unseal_key, buckets, child)

        # --- the Kubernetes provider: exec credentials (gke-gcloud-auth-plugin), no static token -------------
        # With a private endpoint, GKE's `endpoint` is the control plane's private address (what nodes use too).
        endpoint = self.cluster.endpoint
        self.kubeconfig = kubeconfig = exec_kubeconfig(
            prefix, endpoint.apply(lambda host: f"https://{host}"),
            self.cluster.master_auth.apply(lambda auth: auth.cluster_ca_certificate),
            "gke-gcloud-auth-plugin", [], "gke-gcloud-auth-plugin on PATH (gcloud components install "
            "gke-gcloud-auth-plugin), logged in to the platform project")
        self.provider = kubernetes_provider(name, self, kubeconfig, depends_on=[self.cluster])
        self.api_server = (endpoint, 443)
        self.register_outputs({"cluster": self.cluster.name, "endpoint": endpoint})

    def _node_pool(self, name, pool, spec: GkeTarget, account, child) -> gcp.container.NodePool:
        """A node pool of private nodes on Workload Identity; a GPU pool carries the GPU taint and label."""
        labels = pool_labels(pool)
        accelerators = None
        if pool.gpu:
            labels.update(GKE_DEVICE_PLUGIN_OFF)
            # GKE installs the driver (the GPU operator does not, on this target).
            accelerators = [{"type": pool.gpu.type, "count": pool.gpu.count,
                             "gpu_driver_installation_config": {"gpu_driver_version": "DEFAULT"}}]
        return gcp.container.NodePool(
            f"{name}-{pool.name}", name=pool.name, cluster=self.cluster.id, location=spec.region,
            initial_node_count=pool.min_size,
            autoscaling={"min_node_count": pool.min_size, "max_node_count": pool.max_size},
            management={"auto_repair": True, "auto_upgrade": True},
            node_config={
                "machine_type": pool.instance_type, "disk_size_gb": pool.disk_gib,
                "service_account": account.email, "oauth_scopes": ["https://www.googleapis.com/auth/cloud-platform"],
                "workload_metadata_config": {"mode": "GKE_METADATA"},
                "shielded_instance_config": {"enable_secure_boot": True, "enable_integrity_monitoring": True},
                "labels": labels, "taints": pool_taints(pool), "guest_accelerators": accelerators,
            },
            # The autoscaler owns the node count; the initial count matters only at creation (a change would replace
            # the pool).
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(ignore_changes=["initialNodeCount"])))

    def _workload_identity(self, name, identity: Identity, facts: TargetFacts, project: str, unseal_key,
                           buckets: dict, child) -> None:
        """A Google service account per identity, usable by exactly one ServiceAccount, with exactly its access."""
        account = gcp.serviceaccount.Account(f"{name}-{identity.name}", account_id=facts.account_id(identity),
                                             display_name=f"{facts.prefix} {identity.name}", opts=child)
        gcp.serviceaccount.IAMMember(
            f"{name}-{identity.name}", service_account_id=account.name, role="roles/iam.workloadIdentityUser",
            member=f"serviceAccount:{project}.svc.id.goog[{identity.namespace}/{identity.service_account}]",
            opts=child)
        member = account.email.apply(lambda e: f"serviceAccount:{e}")
        kind, _, what = identity.access.partition(":")
        if kind == "unseal":
            for role in ("roles/cloudkms.cryptoKeyEncrypterDecrypter", "roles/cloudkms.viewer"):
                gcp.kms.CryptoKeyIAMMember(f"{name}-{identity.name}-{role.rsplit('.', 1)[1]}",
                                           crypto_key_id=unseal_key.id, role=role, member=member, opts=child)
            return
        purpose, _, path = what.partition("/")
        bucket = facts.bucket(purpose)
        condition = None
        if path:
            # A listing is checked against the bucket, not an object: its prefix attribute admits the listings
            # under the path (Argo's GCS driver lists before every download; Triton lists a model's directory).
            condition = {"title": f"{path} only", "expression":
                         f'resource.name.startsWith("projects/_/buckets/{bucket}/objects/{path}/") || '
                         f'api.getAttribute("{LIST_PREFIX}", "").startsWith("{path}/")'}
        gcp.storage.BucketIAMMember(f"{name}-{identity.name}", bucket=buckets[purpose].name, role=BUCKET_ROLES[kind],
                                    member=member, condition=condition, opts=child)


def _label_value(text: str) -> str:
    """A GCP label value: lowercase letters, digits, '-' and '_', at most 63 characters."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text.lower())[:63]
