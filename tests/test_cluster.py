"""The eks and gke targets under Pulumi mocks: the cloud resources' key inputs, identities scoped to one
ServiceAccount, and the Kubernetes layer identical to an existing cluster's except the documented differences."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pulumi.runtime import mocks as pulumi_mocks

from plinth.engine.offline import plan
from plinth.governance.check import check
from plinth.spec.load import load_spec
from plinth.spec.models import PlatformSpec
from plinth.spec.rules import check_rules
from support import ROOT

ACCOUNT = "123456789012"
ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF"
EKS_ENDPOINT = "https://0123456789ABCDEF.gr7.eu-west-1.eks.amazonaws.com"
GKE_ENDPOINT = "172.16.0.2"


class CloudMocks(pulumi_mocks.Mocks):
    """What AWS and GCP answer after create, for the outputs the program reads (the rest echoes the inputs)."""

    def new_resource(self, args: pulumi_mocks.MockResourceArgs) -> tuple[str | None, dict]:
        out = dict(args.inputs)
        if args.typ == "aws:eks/cluster:Cluster":
            out.update(identities=[{"oidcs": [{"issuer": ISSUER}]}], endpoint=EKS_ENDPOINT,
                       certificateAuthority={"data": "Q0EtREFUQQ=="})
        elif args.typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            out["arn"] = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{ISSUER.removeprefix('https://')}"
        elif args.typ in ("aws:iam/role:Role", "aws:kms/key:Key"):
            out.update(arn=f"arn:aws:{args.typ.split(':')[1].split('/')[0]}::{ACCOUNT}:{args.name}", keyId=args.name)
        elif args.typ == "aws:eks/nodeGroup:NodeGroup":
            out["resources"] = [{"autoscalingGroups": [{"name": f"eks-{args.inputs['nodeGroupName']}-asg"}]}]
        elif args.typ == "gcp:container/cluster:Cluster":
            out.update(endpoint=GKE_ENDPOINT, masterAuth={"clusterCaCertificate": "Q0EtREFUQQ=="})
        elif args.typ == "gcp:serviceaccount/account:Account":
            project = "acme-ml-prod"
            out.update(email=f"{args.inputs['accountId']}@{project}.iam.gserviceaccount.com",
                       name=f"projects/{project}/serviceAccounts/{args.inputs['accountId']}")
        return f"{args.name}-id", out

    def call(self, args: pulumi_mocks.MockCallArgs) -> dict:
        return {}


def cloud_plan(stack: str, mocks: pulumi_mocks.Mocks | None = None):
    from plinth.stackconfig import load_stack_spec

    return plan(load_stack_spec(ROOT, stack), f"stack:{stack}", stack=stack, mocks=mocks)


@pytest.fixture(scope="module")
def eks():
    return cloud_plan("eks-gpu-prod", CloudMocks())


@pytest.fixture(scope="module")
def gke():
    return cloud_plan("gke-gpu-prod", CloudMocks())


def one(plan_, type_: str, name: str) -> dict:
    found = [r for r in plan_.resources if r.type == type_ and r.name == name]
    assert len(found) == 1, (type_, name, [r.name for r in plan_.resources if r.type == type_])
    return found[0].inputs


def of_type(plan_, type_: str) -> list:
    return [r for r in plan_.resources if r.type == type_]


# --- EKS ------------------------------------------------------------------------------------------------


def test_eks_cluster_is_private_encrypted_logged_and_without_the_vpc_cni(eks):
    cluster = one(eks, "aws:eks/cluster:Cluster", "cluster-eks")
    assert cluster["vpcConfig"]["endpointPrivateAccess"] is True
    assert cluster["vpcConfig"]["endpointPublicAccess"] is False
    assert "publicAccessCidrs" not in cluster["vpcConfig"]
    assert cluster["encryptionConfig"]["resources"] == ["secrets"]
    assert cluster["encryptionConfig"]["provider"]["keyArn"] == f"arn:aws:kms::{ACCOUNT}:cluster-secrets"
    assert cluster["enabledClusterLogTypes"] == ["api", "audit", "authenticator", "controllerManager", "scheduler"]
    assert cluster["accessConfig"]["authenticationMode"] == "API"
    assert cluster["bootstrapSelfManagedAddons"] is False
    assert cluster["deletionProtection"] is True  # prod
    addons = {r.inputs["addonName"] for r in of_type(eks, "aws:eks/addon:Addon")}
    assert addons == {"coredns", "aws-ebs-csi-driver"}  # no vpc-cni, no kube-proxy: Cilium replaces both
    entry = one(eks, "aws:eks/accessEntry:AccessEntry", "cluster-admins")
    assert entry["principalArn"] == f"arn:aws:iam::{ACCOUNT}:role/ml-platform-admins"
    assert entry["kubernetesGroups"] == ["ml-platform-admins"]


def test_eks_network_is_private_subnets_in_every_zone_with_nat_per_zone(eks):
    subnets = {r.name: r.inputs for r in of_type(eks, "aws:ec2/subnet:Subnet")}
    private = {n: s for n, s in subnets.items() if "private" in n}
    assert sorted(s["availabilityZone"] for s in private.values()) == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    assert sorted(s["cidrBlock"] for s in private.values()) == ["10.40.0.0/19", "10.40.32.0/19", "10.40.64.0/19"]
    assert all(s["mapPublicIpOnLaunch"] is False for s in subnets.values())
    assert len(of_type(eks, "aws:ec2/natGateway:NatGateway")) == 3  # prod: one per zone
    endpoint = one(eks, "aws:ec2/vpcEndpoint:VpcEndpoint", "cluster-s3")
    assert endpoint["vpcEndpointType"] == "Gateway"


def test_eks_dev_has_one_nat_and_a_public_endpoint_only_for_its_networks_with_the_reason():
    dev = cloud_plan("eks-gpu-dev")
    assert len(of_type(dev, "aws:ec2/natGateway:NatGateway")) == 1
    cluster = one(dev, "aws:eks/cluster:Cluster", "cluster-eks")
    assert cluster["vpcConfig"]["endpointPublicAccess"] is True
    assert cluster["vpcConfig"]["publicAccessCidrs"] == ["203.0.113.0/24"]
    assert cluster["tags"]["plinth.dev/public-endpoint-reason"].startswith("developers reach")


def test_eks_gpu_node_group_is_tainted_labelled_and_on_the_nvidia_image(eks):
    gpu = one(eks, "aws:eks/nodeGroup:NodeGroup", "cluster-gpu")
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"} in gpu["taints"]
    assert gpu["labels"]["nvidia.com/gpu.present"] == "true"
    assert gpu["amiType"] == "AL2023_x86_64_NVIDIA"
    assert gpu["instanceTypes"] == ["g6.xlarge"]
    system = one(eks, "aws:eks/nodeGroup:NodeGroup", "cluster-system")
    assert all(t["key"] != "nvidia.com/gpu" for t in system["taints"])
    assert "nvidia.com/gpu.present" not in system["labels"]
    # Every pool waits for Cilium's agent before pods start.
    for pool in (gpu, system):
        assert {"key": "ignore-taint.cluster-autoscaler.kubernetes.io/cilium-agent-not-ready", "value": "true",
                "effect": "NO_EXECUTE"} in pool["taints"]


def test_eks_workload_roles_trust_exactly_one_service_account(eks):
    roles = {r.inputs["name"]: json.loads(r.inputs["assumeRolePolicy"]) for r in of_type(eks, "aws:iam/role:Role")
             if "Federated" in r.inputs["assumeRolePolicy"]}
    host = ISSUER.removeprefix("https://")
    expected = {
        "eks-gpu-prod-vault": "vault:vault",
        "eks-gpu-prod-feast": "feast:feast-server",
        "eks-gpu-prod-models-vision": "vision:workloads",
        "eks-gpu-prod-cilium-operator": "kube-system:cilium-operator",
        "eks-gpu-prod-ebs-csi": "kube-system:ebs-csi-controller-sa",
        "eks-gpu-prod-cluster-autoscaler": "cluster-autoscaler:cluster-autoscaler",
        # Prod backs its databases up: each CloudNativePG Cluster's pods archive as their own role.
        "eks-gpu-prod-feast-postgres": "feast:feast-postgres",
        "eks-gpu-prod-grafana-postgres": "monitoring:grafana-postgres",
        # ... and Velero backs the namespaces up with its server's role.
        "eks-gpu-prod-velero": "velero:velero-server",
    }
    assert set(roles) == set(expected)
    for name, subject in expected.items():
        [statement] = roles[name]["Statement"]
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert statement["Condition"] == {"StringEquals": {f"{host}:sub": f"system:serviceaccount:{subject}",
                                                           f"{host}:aud": "sts.amazonaws.com"}}


def test_eks_role_policies_grant_only_their_own_resources(eks):
    policies = {r.name: json.loads(r.inputs["policy"]) for r in of_type(eks, "aws:iam/rolePolicy:RolePolicy")}
    vault = policies["cluster-vault"]["Statement"]
    assert vault == [{"Effect": "Allow", "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt"],
                      "Resource": f"arn:aws:kms::{ACCOUNT}:cluster-vault-unseal"}]
    listing, objects = policies["cluster-models-vision"]["Statement"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["vision/*"]}}
    assert objects == {"Effect": "Allow", "Action": ["s3:GetObject"],
                       "Resource": "arn:aws:s3:::eks-gpu-prod-models/vision/*"}
    assert "growth" not in json.dumps(policies)  # a BentoML team reads no bucket


def test_eks_autoscaler_scales_only_this_clusters_node_groups_and_gpu_pools_from_zero(eks):
    policies = {r.name: json.loads(r.inputs["policy"]) for r in of_type(eks, "aws:iam/rolePolicy:RolePolicy")}
    describe, scale = policies["cluster-cluster-autoscaler"]["Statement"]
    assert describe["Resource"] == "*" and all(":Describe" in a or ":Get" in a for a in describe["Action"])
    assert scale == {"Effect": "Allow", "Resource": "*",
                     "Action": ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
                     "Condition": {"StringEquals": {
                         "aws:ResourceTag/k8s.io/cluster-autoscaler/eks-gpu-prod": "owned"}}}
    # The GPU pool (minSize 0) tells the autoscaler what a node would bring; the system pool never is at zero.
    tags = {r.inputs["tag"]["key"]: (r.inputs["autoscalingGroupName"], r.inputs["tag"]["value"],
                                     r.inputs["tag"]["propagateAtLaunch"])
            for r in of_type(eks, "aws:autoscaling/tag:Tag")}
    template = "k8s.io/cluster-autoscaler/node-template"
    assert tags == {
        f"{template}/label/nvidia.com/gpu.present": ("eks-gpu-asg", "true", False),
        f"{template}/label/plinth.dev/node-pool": ("eks-gpu-asg", "gpu", False),
        f"{template}/resources/nvidia.com/gpu": ("eks-gpu-asg", "1", False),
        f"{template}/taint/nvidia.com/gpu": ("eks-gpu-asg", "present:NoSchedule", False),
    }
    values = one(eks, "kubernetes:helm.sh/v3:Release", "cluster-autoscaler")["values"]
    assert values["autoDiscovery"] == {"clusterName": "eks-gpu-prod"}
    assert (values["cloudProvider"], values["awsRegion"]) == ("aws", "eu-west-1")
    assert values["rbac"]["serviceAccount"] == {
        "create": True, "name": "cluster-autoscaler",
        "annotations": {"eks.amazonaws.com/role-arn": f"arn:aws:iam::{ACCOUNT}:role/eks-gpu-prod-cluster-autoscaler"}}
    assert values["image"]["repository"].endswith("/autoscaling/cluster-autoscaler")
    assert values["image"]["tag"] == "v1.35.0"


def test_an_airgapped_autoscaler_reaches_the_aws_apis_inside_the_vpc():
    doc = load_spec(ROOT / "blueprints" / "eks-gpu.yaml").model_dump(by_alias=True)
    doc["target"]["egress"] = "none"
    doc["airgap"] = {"enabled": True, "mirror": {"registry": "mirror.corp/m", "charts": "oci://mirror.corp/charts",
                                                 "cidrs": ["10.99.0.0/24"]}}
    spec = PlatformSpec.model_validate(doc)
    resources = {r.name: r.inputs for r in plan(spec, "airgap").resources if r.custom}
    assert resources["cluster-autoscaler-aws-apis"]["spec"]["egress"] == [{
        "to": [{"ipBlock": {"cidr": "10.40.0.0/16"}}], "ports": [{"protocol": "TCP", "port": 443}]}]
    assert resources["cluster-autoscaler"]["values"]["image"]["repository"] == \
        "mirror.corp/m/autoscaling/cluster-autoscaler"
    assert "cluster-autoscaler-aws-apis" not in {r.name for r in plan(load_spec(ROOT / "blueprints" / "eks-gpu.yaml"),
                                                                      "nat").resources}


def test_cloud_gateways_get_internal_load_balancers(eks, gke):
    for plan_, annotations in ((eks, {"service.beta.kubernetes.io/aws-load-balancer-internal": "true",
                                      "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}),
                               (gke, {"networking.gke.io/load-balancer-type": "Internal"})):
        gateway = one(plan_, "kubernetes:gateway.networking.k8s.io/v1:Gateway", "gateway-gateway")
        assert gateway["spec"]["infrastructure"] == {"annotations": annotations,
                                                     "labels": {"plinth.dev/gateway": "plinth"}}
    assert not [r for r in gke.resources if r.name.startswith("cluster-autoscaler")]
    assert not [r for r in eks.resources if "CiliumLoadBalancerIPPool" in r.type]


def test_eks_buckets_are_named_encrypted_versioned_and_blocked(eks):
    buckets = sorted(r.inputs["bucket"] for r in of_type(eks, "aws:s3/bucket:Bucket"))
    assert buckets == ["eks-gpu-prod-artifacts", "eks-gpu-prod-backups", "eks-gpu-prod-features", "eks-gpu-prod-models"]
    for r in of_type(eks, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"):
        assert all(r.inputs[flag] is True for flag in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                                        "restrictPublicBuckets"))
    for r in of_type(eks, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"):
        assert r.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    assert {r.inputs["versioningConfiguration"]["status"]
            for r in of_type(eks, "aws:s3/bucketVersioning:BucketVersioning")} == {"Enabled"}


def test_eks_kubernetes_provider_uses_exec_credentials_and_the_account_is_pinned(eks):
    kubeconfig = json.loads(one(eks, "pulumi:providers:kubernetes", "cluster-kubernetes")["kubeconfig"])
    [user] = kubeconfig["users"]
    assert user["user"]["exec"]["command"] == "aws"
    assert user["user"]["exec"]["args"][:2] == ["eks", "get-token"]
    assert "token" not in user["user"] and "client-key-data" not in user["user"]
    assert kubeconfig["clusters"][0]["cluster"]["server"] == EKS_ENDPOINT
    assert json.loads(one(eks, "pulumi:providers:aws", "cluster-aws")["allowedAccountIds"]) == [ACCOUNT]


def test_eks_cilium_runs_eni_mode_with_its_role_and_the_cluster_endpoint(eks):
    values = one(eks, "kubernetes:helm.sh/v3:Release", "cilium")["values"]
    assert values["eni"] == {"enabled": True, "iamRole": f"arn:aws:iam::{ACCOUNT}:role/eks-gpu-prod-cilium-operator"}
    assert values["ipam"] == {"mode": "eni"}
    assert values["k8sServiceHost"] == EKS_ENDPOINT.removeprefix("https://")
    assert values["k8sServicePort"] == 443
    assert values["operator"]["image"]["override"].startswith("quay.io/cilium/operator-aws:v1.20.0@sha256:")


def test_cloud_stacks_pass_the_cloud_policies(eks, gke):
    for plan_ in (eks, gke):
        results = {r.policy.name: list(r.violations) for r in check(plan_)
                   if r.policy.name in ("cloud-private-and-encrypted", "workload-identity-scoped")}
        assert results == {"cloud-private-and-encrypted": [], "workload-identity-scoped": []}
        # The policies saw the resolved trust policies and the buckets (not vacuous).
        assert any(r.type in ("aws:iam/role:Role", "gcp:serviceaccount/iAMMember:IAMMember") for r in plan_.resources)


# --- GKE ------------------------------------------------------------------------------------------------


def test_gke_cluster_is_private_vpc_native_with_workload_identity_and_cilium(gke):
    cluster = one(gke, "gcp:container/cluster:Cluster", "cluster-gke")
    assert cluster["privateClusterConfig"] == {"enablePrivateNodes": True, "enablePrivateEndpoint": True,
                                               "masterIpv4CidrBlock": "172.16.0.0/28"}
    assert cluster["masterAuthorizedNetworksConfig"]["cidrBlocks"][0]["cidrBlock"] == "10.100.0.0/16"
    assert cluster["workloadIdentityConfig"] == {"workloadPool": "acme-ml-prod.svc.id.goog"}
    assert cluster["ipAllocationPolicy"] == {"clusterSecondaryRangeName": "pods",
                                             "servicesSecondaryRangeName": "services"}
    assert cluster["datapathProvider"] == "LEGACY_DATAPATH"
    assert cluster["removeDefaultNodePool"] is True
    values = one(gke, "kubernetes:helm.sh/v3:Release", "cilium")["values"]
    assert values["ipam"] == {"mode": "kubernetes"} and values["ipv4NativeRoutingCIDR"] == "10.52.0.0/14"
    assert values["k8sServiceHost"] == GKE_ENDPOINT and values["nodeinit"]["enabled"] is True
    assert values["nodeinit"]["image"]["override"].startswith("quay.io/cilium/startup-script:")


def test_gke_gpu_pool_is_tainted_labelled_with_the_driver_from_gke(gke):
    pool = one(gke, "gcp:container/nodePool:NodePool", "cluster-gpu")
    config = pool["nodeConfig"]
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NO_SCHEDULE"} in config["taints"]
    assert config["labels"]["nvidia.com/gpu.present"] == "true"
    assert config["guestAccelerators"] == [{"type": "nvidia-l4", "count": 1,
                                            "gpuDriverInstallationConfig": {"gpuDriverVersion": "DEFAULT"}}]
    assert config["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}
    assert pool["autoscaling"] == {"minNodeCount": 0, "maxNodeCount": 4}


def test_gke_workload_identity_grants_exactly_one_service_account_each(gke):
    grants = {r.name: r.inputs for r in of_type(gke, "gcp:serviceaccount/iAMMember:IAMMember")}
    assert {name: g["member"] for name, g in grants.items()} == {
        "cluster-vault": "serviceAccount:acme-ml-prod.svc.id.goog[vault/vault]",
        "cluster-feast": "serviceAccount:acme-ml-prod.svc.id.goog[feast/feast-server]",
        "cluster-models-vision": "serviceAccount:acme-ml-prod.svc.id.goog[vision/workloads]",
        "cluster-feast-postgres": "serviceAccount:acme-ml-prod.svc.id.goog[feast/feast-postgres]",
        "cluster-grafana-postgres": "serviceAccount:acme-ml-prod.svc.id.goog[monitoring/grafana-postgres]",
        "cluster-velero": "serviceAccount:acme-ml-prod.svc.id.goog[velero/velero-server]",
    }
    assert {g["role"] for g in grants.values()} == {"roles/iam.workloadIdentityUser"}
    models = one(gke, "gcp:storage/bucketIAMMember:BucketIAMMember", "cluster-models-vision")
    assert models["role"] == "roles/storage.objectViewer"
    # Objects under the team's prefix, and listings of that prefix only (a listing is checked on the bucket).
    assert models["condition"]["expression"] == \
        'resource.name.startsWith("projects/_/buckets/gke-gpu-prod-models/objects/vision/") || ' \
        'api.getAttribute("storage.googleapis.com/objectListPrefix", "").startsWith("vision/")'
    for bucket in of_type(gke, "gcp:storage/bucket:Bucket"):
        assert bucket.inputs["uniformBucketLevelAccess"] is True
        assert bucket.inputs["publicAccessPrevention"] == "enforced"
        assert bucket.inputs["versioning"] == {"enabled": True}


def test_gke_kubernetes_provider_uses_the_gke_auth_plugin(gke):
    kubeconfig = json.loads(one(gke, "pulumi:providers:kubernetes", "cluster-kubernetes")["kubeconfig"])
    assert kubeconfig["users"][0]["user"]["exec"]["command"] == "gke-gcloud-auth-plugin"
    assert kubeconfig["clusters"][0]["cluster"]["server"] == f"https://{GKE_ENDPOINT}"


# --- identical above the target -------------------------------------------------------------------------

SERVICES = {
    "network": {"cilium": {"enabled": True, "gatewayApi": True, "hubble": True}},
    "certificates": {"certManager": {"enabled": True}},
    "storage": {"longhorn": {"enabled": True, "defaultClass": False}},
    "secrets": {"vault": {"enabled": True}},
    "featureStore": {"feast": {"enabled": True, "offlineStore": "postgres"}},
    "gpu": {"operator": {"enabled": True}},
    "monitoring": {"enabled": True},
    "serving": {"hostname": "serving.models.plinth.internal", "models": [
        {"name": "detector", "team": "vision", "runtime": "triton", "gpu": 1,
         "modelRepository": "pvc://models/detector",
         "stable": {"version": "1"}, "canary": {"version": "2", "weight": 10}},
        {"name": "churn", "team": "vision", "runtime": "bentoml", "image": "registry.example/churn",
         "stable": {"version": "1.0.0"}, "shadow": {"version": "1.1.0"}},
    ]},
    "rbac": {"platformAdminGroup": "ml-platform-admins"},
    "pipelines": {"argo": {"enabled": True}},
    "teams": [{"name": "vision", "quota": {"gpu": 4, "cpu": "16", "memory": "64Gi"}}],
}
POOLS = {"eks": [{"name": "system", "instanceType": "m7i.xlarge"},
                 {"name": "gpu", "instanceType": "g6.xlarge", "gpu": {"type": "nvidia-l4", "count": 1}}],
         "gke": [{"name": "system", "instanceType": "n2-standard-8"},
                 {"name": "gpu", "instanceType": "g2-standard-8", "gpu": {"type": "nvidia-l4", "count": 1}}]}
TARGETS = {
    "existing": {"type": "existing"},
    "eks": {"type": "eks", "accountId": ACCOUNT, "region": "eu-west-1", "availabilityZones": ["eu-west-1a", "eu-west-1b"],
            "adminRoleArn": f"arn:aws:iam::{ACCOUNT}:role/admins", "nodePools": POOLS["eks"]},
    "gke": {"type": "gke", "project": "acme-ml-prod", "region": "europe-west4", "nodePools": POOLS["gke"]},
}
UNSEAL = {"existing": {"type": "transit", "key": "plinth", "address": "https://vault.corp.internal:8200"},
          "eks": {"type": "awskms"}, "gke": {"type": "gcpckms"}}

# The documented differences (modules/cluster/README.md, "Differences"): (resource name, input path prefix).
DIFFERENCES = {
    "cilium": ("values.eni", "values.ipam", "values.routingMode", "values.cluster", "values.agentNotReadyTaintKey",
               "values.gke", "values.ipv4NativeRoutingCIDR", "values.cni", "values.nodeinit",
               "values.k8sServiceHost", "values.k8sServicePort", "values.operator.image",
               # existing: the Gateway's address from the spec's ranges, announced on L2
               "values.l2announcements", "values.k8sClientRateLimit"),
    # cloud: the Gateway's load balancer is internal
    "gateway-gateway": ("spec.infrastructure.annotations",),
    "gpu-operator": ("values.toolkit", "values.hostPaths", "values.cdi"),
    "longhorn": ("values.defaultBackupStore", "values.serviceAccount"),
    "vault": ("values.server.serviceAccount", "values.server.standalone.config", "values.server.extraSecretEnvironmentVars"),
    "feast": ("values.serviceAccount",),
    "tenancy-vision-workloads": ("metadata.annotations",),
    # The team's workflow account carries its artifacts identity.
    "argo-workflows-vision-workflow-account": ("metadata.annotations",),
    # The ledger records the spec (whose target differs) and nothing else.
    "ledger": ("data",),
}
ONLY_ON_CLOUD = {("kubernetes:core/v1:ServiceAccount", "feast-service-account"),
                 ("kubernetes:core/v1:ConfigMap", "argo-workflows-vision-artifact-repositories"),
                 ("kubernetes:cilium.io/v2:CiliumNetworkPolicy", "argo-workflows-vision-allow-workflows-to-bucket")}
"""The Feast server's own ServiceAccount: it carries the features bucket's identity. The team's artifact repository
in the cloud's bucket and its workflow pods' way there (on an existing cluster only with the object store, off
here)."""
ONLY_ON_EXISTING = {("kubernetes:cilium.io/v2:CiliumLoadBalancerIPPool", "gateway-address-pool"),
                    ("kubernetes:cilium.io/v2alpha1:CiliumL2AnnouncementPolicy", "gateway-l2-announcement")}
"""The Gateway's address pool and its L2 announcement: a cloud's load balancer gives the address instead."""
ONLY_ON_EKS = "cluster-autoscaler"
"""Cluster Autoscaler's namespace, release and policies (GKE autoscales its node pools itself)."""


def target_spec(kind: str) -> PlatformSpec:
    doc = {"apiVersion": "plinth.dev/v1alpha1", "kind": "Platform",
           "metadata": {"name": "same", "environment": "dev", "costCenter": "cc"},
           "target": TARGETS[kind], **SERVICES}
    doc["secrets"] = {"vault": {"enabled": True, "autoUnseal": UNSEAL[kind]}}
    if kind == "existing":
        doc["network"] = {"cilium": {**SERVICES["network"]["cilium"], "apiServer": {"host": "api.corp.internal"}},
                          "loadBalancer": {"ranges": ["172.31.255.240/29"]}}
    spec = PlatformSpec.model_validate(doc)
    assert check_rules(spec) == [], check_rules(spec)
    return spec


def kubernetes_layer(kind: str) -> dict[tuple[str, str], dict]:
    plan_ = plan(target_spec(kind), kind, stack="same")
    return {(r.type, r.name): r.inputs for r in plan_.resources
            if r.type.startswith("kubernetes:") and not r.type.startswith("pulumi:providers")}


def differing_paths(a: Any, b: Any, path: tuple = ()) -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [p for key in sorted(set(a) | set(b), key=str)
                for p in differing_paths(a.get(key, "<absent>"), b.get(key, "<absent>"), (*path, str(key)))]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [p for i, (x, y) in enumerate(zip(a, b)) for p in differing_paths(x, y, (*path, str(i)))]
    return [] if a == b else [".".join(path)]


@pytest.mark.parametrize("cloud", ["eks", "gke"])
def test_the_kubernetes_layer_is_the_same_as_on_an_existing_cluster_but_the_documented_differences(cloud):
    here, there = kubernetes_layer("existing"), kubernetes_layer(cloud)
    autoscaler = {key for key in there if key[1].startswith(ONLY_ON_EKS)}
    assert bool(autoscaler) == (cloud == "eks")
    assert set(there) - set(here) - autoscaler == ONLY_ON_CLOUD
    assert set(here) - set(there) == ONLY_ON_EXISTING
    undocumented, seen = [], set()
    for key in sorted(set(here) & set(there)):
        for path in differing_paths(here[key], there[key]):
            allowed = DIFFERENCES.get(key[1], ())
            if any(path == p or path.startswith(p + ".") for p in allowed):
                seen.add(key[1])
            else:
                undocumented.append(f"{key[1]}: {path}")
    assert undocumented == []
    # Each documented difference is real on this target (the list is not stale).
    expected = {"cilium", "gateway-gateway", "gpu-operator", "vault", "feast", "tenancy-vision-workloads", "ledger",
                "argo-workflows-vision-workflow-account"}
    if cloud == "eks":
        expected.add("longhorn")
    assert seen == expected


# --- rules ----------------------------------------------------------------------------------------------


def violations(path: str, edit) -> set[tuple[tuple, str]]:
    spec = load_spec(ROOT / path)
    changed = PlatformSpec.model_validate(edit(spec.model_dump(by_alias=True)))
    return {(v.loc, v.rule) for v in check_rules(changed)}


def edited(change):
    def apply(doc: dict) -> dict:
        change(doc)
        return doc
    return apply


@pytest.mark.parametrize("change, expected", [
    (lambda d: d["target"].update(private=False),
     (("target", "private"), "prod-private-endpoint")),
    (lambda d: d["target"].update(private=False, publicEndpointReason="partner access for the demo"),
     (("target", "authorizedNetworks"), "public-endpoint-networks")),
    (lambda d: d["target"].update(publicEndpointReason="partner access for the demo"),
     (("target", "publicEndpointReason"), "public-endpoint-reason-unused")),
    (lambda d: d["target"]["nodePools"][1].update(instanceType="g5.xlarge"),
     (("target", "nodePools", 1, "gpu"), "gpu-machine-type")),
    (lambda d: d["target"]["nodePools"][1].update(instanceType="x9.huge"),
     (("target", "nodePools", 1, "instanceType"), "gpu-machine-type")),
    (lambda d: d["target"]["nodePools"][0].update(instanceType="g6.xlarge"),
     (("target", "nodePools", 0, "gpu"), "gpu-machine-type")),
    (lambda d: d["target"].update(nodePools=[d["target"]["nodePools"][1]]),
     (("target", "nodePools"), "cpu-node-pool")),
    (lambda d: d["target"]["nodePools"][0].update(name="gpu"),
     (("target", "nodePools", 1, "name"), "node-pool-unique")),
    (lambda d: d["target"].update(vpcCidr="10.0.0.0/24"),
     (("target", "vpcCidr"), "cidr-valid")),
    (lambda d: d["target"].update(availabilityZones=["eu-west-1a", "us-east-1b"]),
     (("target", "availabilityZones", 1), "availability-zones")),
    (lambda d: d["target"].update(egress="none"),
     (("target", "egress"), "cloud-egress-needs-mirror")),
    (lambda d: d["serving"]["models"][0].update(gpu=2),
     (("serving", "models", 0, "gpu"), "gpu-fits-node")),
    (lambda d: d["gpu"]["operator"].update(driver=True),
     (("gpu", "operator", "driver"), "gpu-driver-by-target")),
    (lambda d: d["network"]["cilium"].update(apiServer={"host": "api.example"}),
     (("network", "cilium", "apiServer"), "cilium-api-server-by-target")),
    (lambda d: d["network"]["cilium"].update(enabled=False),
     (("serving", "models", 0, "modelRepository"), "model-repository-egress")),
    (lambda d: d["target"].update(autoscaler={"enabled": False}),
     (("target", "autoscaler", "enabled"), "gpu-pool-scales")),
], ids=lambda v: v[1] if isinstance(v, tuple) else "")
def test_eks_rules(change, expected):
    assert expected in violations("blueprints/eks-gpu.yaml", edited(change))


@pytest.mark.parametrize("change, expected", [
    (lambda d: d["target"].update(podsCidr="10.50.0.0/16"), (("target", "podsCidr"), "cidr-overlap")),
    (lambda d: d["target"].update(controlPlaneCidr="172.16.0.0/27"), (("target", "controlPlaneCidr"), "cidr-valid")),
    (lambda d: d["target"]["nodePools"][1]["gpu"].update(count=2), (("target", "nodePools", 1, "gpu"),
                                                                      "gpu-machine-type")),
], ids=lambda v: v[1] if isinstance(v, tuple) else "")
def test_gke_rules(change, expected):
    assert expected in violations("blueprints/gke-gpu.yaml", edited(change))


def test_cloud_blueprints_and_stacks_are_clean():
    for path in ("blueprints/eks-gpu.yaml", "blueprints/gke-gpu.yaml"):
        assert violations(path, lambda d: d) == set()


def test_a_triton_model_on_a_cloud_target_defaults_to_its_teams_prefix_of_the_models_bucket(eks, gke):
    for plan_, url in ((eks, "s3://eks-gpu-prod-models"), (gke, "gs://gke-gpu-prod-models")):
        deployment = one(plan_, "kubernetes:apps/v1:Deployment", "serving-vision-detector-stable")
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert f"--model-repository={url}/vision/detector/2026-11-01" in args
        policy = one(plan_, "kubernetes:cilium.io/v2:CiliumNetworkPolicy",
                     "serving-vision-allow-to-repository-detector")
        assert policy["spec"]["egress"][1]["toPorts"] == [{"ports": [{"port": "443", "protocol": "TCP"}]}]


@pytest.mark.parametrize("cloud", ["eks", "gke"])
def test_plinth_diff_between_the_dev_and_prod_stacks_names_the_cloud_changes(cloud):
    import subprocess
    import sys
    from pathlib import Path

    plinth = str(Path(sys.executable).parent / "plinth")
    done = subprocess.run([plinth, "diff", f"stack:{cloud}-gpu-dev", f"stack:{cloud}-gpu-prod", "--exit-code"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    if cloud == "eks":
        assert "+ NatGateway cluster-nat-eu-west-1b" in done.stdout  # one NAT per zone in prod
        assert 'vpcConfig.endpointPublicAccess: true -> false' in done.stdout
    else:
        assert 'project: "acme-ml-dev" -> "acme-ml-prod"' in done.stdout
        assert "deletionProtection: false -> true" in done.stdout
