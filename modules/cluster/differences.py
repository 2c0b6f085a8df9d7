"""Everything in the Kubernetes layer that differs by target, in one place (README.md: "Differences").

Each function returns the values a service adds for the target it runs on ({} on an existing cluster), so
the services stay the same code on every target and a test can list exactly what differs.
"""

from __future__ import annotations

from plinth.targets import TargetFacts, bounded_name

AGENT_NOT_READY_TAINT = {"key": "ignore-taint.cluster-autoscaler.kubernetes.io/cilium-agent-not-ready",
                         "value": "true", "effect": "NoExecute"}
"""Every cloud node pool starts tainted until the Cilium agent runs on the node (the agent removes the taint):
no pod starts with an address from anything but Cilium. The key is one the cluster autoscaler ignores, so it
still scales pools whose new nodes carry it (Cilium's own GKE setup)."""
GKE_NVIDIA_DIR = "/home/kubernetes/bin/nvidia"
"""Where GKE's driver installer puts the driver on Container-Optimized OS nodes."""


def cilium_values(facts: TargetFacts) -> dict:
    """Cilium as the CNI of a cloud cluster: ENI IPAM on EKS (pods get VPC addresses; no VPC CNI), GKE's pod
    ranges on GKE (with the node-init DaemonSet GKE nodes need)."""
    if facts.type == "eks":
        role = facts.identity("cilium-operator")
        # Pods egress with their VPC addresses (no masquerade in ENI mode); the NAT gateway translates.
        return {
            "eni": {"enabled": True, "iamRole": facts.principal(role) if role else ""},
            "ipam": {"mode": "eni"},
            "routingMode": "native",
            # ENI garbage collection tags name the cluster (at most 32 characters).
            "cluster": {"name": bounded_name(facts.prefix, 32)},
            "agentNotReadyTaintKey": AGENT_NOT_READY_TAINT["key"],
        }
    if facts.type == "gke":
        return {
            # disableDefaultSnat: Cilium, not GKE's IP masquerade agent, decides what leaves with the node address.
            "gke": {"enabled": True, "disableDefaultSnat": True},
            "ipam": {"mode": "kubernetes"},
            "routingMode": "native",
            "ipv4NativeRoutingCIDR": facts.native_cidr,
            "cni": {"binPath": "/home/kubernetes/bin"},
            "nodeinit": {"enabled": True, "reconfigureKubelet": True, "removeCbrBridge": True},
            "agentNotReadyTaintKey": AGENT_NOT_READY_TAINT["key"],
        }
    return {}


def cilium_operator_image(facts: TargetFacts) -> str:
    """The operator build for the target's IPAM: operator-aws for ENI, operator-generic elsewhere."""
    return "operator-aws" if facts.type == "eks" else "operator-generic"


def gpu_operator_values(facts: TargetFacts) -> dict:
    """The node image brings the GPU driver on the clouds: EKS's NVIDIA AMI also the container toolkit; on GKE
    the operator's toolkit and device plugin find GKE's driver under /home/kubernetes/bin/nvidia."""
    if facts.type == "eks":
        return {"toolkit": {"enabled": False}}
    if facts.type == "gke":
        return {"hostPaths": {"driverInstallDir": GKE_NVIDIA_DIR},
                "toolkit": {"installDir": GKE_NVIDIA_DIR},
                "cdi": {"enabled": True, "default": True}}
    return {}


def longhorn_values(facts: TargetFacts) -> dict:
    """Volume backups to the target's backups bucket (EKS, credentials from the ServiceAccount's IAM role)."""
    if facts.type == "eks" and facts.identity("longhorn"):
        return {"defaultBackupStore": {"backupTarget": f"{facts.bucket_url('backups')}@{facts.region}/"}}
    return {}


METADATA_SERVER = "169.254.169.254/32"
"""GKE's metadata server (Workload Identity tokens), as pods address it."""


def object_store_egress(facts: TargetFacts) -> list[dict]:
    """CiliumNetworkPolicy egress rules to the cloud's object store and the token service its workload identity
    needs, by DNS name (the DNS rule lets Cilium's proxy learn the names' addresses); [] on an existing cluster."""
    if facts.type == "eks":
        names = [{"matchPattern": f"*.s3.{facts.region}.amazonaws.com"},
                 {"matchName": f"s3.{facts.region}.amazonaws.com"}, {"matchName": f"sts.{facts.region}.amazonaws.com"}]
    elif facts.type == "gke":
        names = [{"matchName": "storage.googleapis.com"}, {"matchName": "oauth2.googleapis.com"},
                 {"matchName": "sts.googleapis.com"}]
    else:
        return []
    https = [{"ports": [{"port": "443", "protocol": "TCP"}]}]
    rules = [
        {"toEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "kube-system", "k8s-app": "kube-dns"}}],
         "toPorts": [{"ports": [{"port": "53", "protocol": "ANY"}], "rules": {"dns": [{"matchPattern": "*"}]}}]},
        {"toFQDNs": names, "toPorts": https},
    ]
    if facts.type == "gke":
        rules.append({"toCIDR": [METADATA_SERVER], "toPorts": [{"ports": [{"port": "80", "protocol": "TCP"}]}]})
    return rules
