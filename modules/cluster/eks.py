"""AWS EKS target (`target.type: eks`): a private VPC, the cluster, node groups, identities, keys and buckets.

Why each choice: README.md beside this file. Every name is derived from the spec (`TargetFacts`), so the
Kubernetes layer above refers to roles, buckets and keys by name and never waits for a cloud ID.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any

import pulumi
import pulumi_aws as aws

from plinth.modules.cluster import (
    CLOUD_TAINT_EFFECTS,
    Target,
    TargetArgs,
    exec_kubeconfig,
    kubernetes_provider,
    pool_labels,
    pool_taints,
)
from plinth.modules.cluster.autoscaler import NODE_TEMPLATE, node_template_tags
from plinth.modules.gpu import GPU_RESOURCE
from plinth.spec.models import EksTarget
from plinth.targets import BUCKET_PURPOSES, Identity, TargetFacts
from plinth.vocabulary import AWS_PUBLIC_ENDPOINT_REASON

LOG_TYPES = ["api", "audit", "authenticator", "controllerManager", "scheduler"]
"""Every control-plane log, to CloudWatch."""
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly")
"""The node role's managed policies: join the cluster, pull from ECR. No CNI policy: Cilium's operator
manages ENIs with its own identity."""
INTERFACE_ENDPOINTS = ("ec2", "ecr.api", "ecr.dkr", "sts", "logs", "kms", "eks", "eks-auth",
                       "elasticloadbalancing", "autoscaling")
"""egress none: the AWS APIs nodes and the platform call, reached inside the VPC."""
CILIUM_ENI_ACTIONS = (
    "ec2:AssignPrivateIpAddresses", "ec2:AttachNetworkInterface", "ec2:CreateNetworkInterface",
    "ec2:CreateTags", "ec2:DeleteNetworkInterface", "ec2:DescribeInstanceTypes", "ec2:DescribeManagedPrefixLists",
    "ec2:DescribeNetworkInterfaces", "ec2:DescribeRouteTables", "ec2:DescribeSecurityGroups", "ec2:DescribeSubnets",
    "ec2:DescribeTags", "ec2:DescribeVpcs", "ec2:GetManagedPrefixListEntries", "ec2:ModifyNetworkInterfaceAttribute",
    "ec2:UnassignPrivateIpAddresses",
)
"""What Cilium's operator needs for ENI IPAM (Cilium's documented privileges, with ENI garbage collection);
EC2's ENI actions cannot be scoped to resources."""


AUTOSCALER_READ_ACTIONS = (
    "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations", "autoscaling:DescribeScalingActivities", "autoscaling:DescribeTags",
    "ec2:DescribeImages", "ec2:DescribeInstanceTypes", "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements", "eks:DescribeNodegroup",
)

"""Cluster Autoscaler's read-only calls (its AWS provider's documented policy); describe calls take no resource."""
AUTOSCALER_SCALE_ACTIONS = ("autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup")
"""The calls that change a node group: allowed only on groups tagged as this cluster's."""


KUBERNETES_TAINT_EFFECTS = {cloud: effect for effect, cloud in CLOUD_TAINT_EFFECTS.items()}


def subnet_blocks(vpc_cidr: str, zones: int) -> tuple[list[str], list[str]]:
    """(private, public) subnets: the VPC in eight equal blocks, private first, public from the fifth."""
    network = ipaddress.ip_network(vpc_cidr)
    blocks = [str(b) for b in network.subnets(new_prefix=network.prefixlen + 3)]
    return blocks[:zones], blocks[4:4 + zones]


def _policy(*statements: dict) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, sort_keys=True)


class EksCluster(Target):
    """A new EKS cluster in its own VPC (plinth:cluster:EksCluster)."""

    type_token = "plinth:cluster:EksCluster"

    def __init__(self, name: str, args: TargetArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(name, args, opts)
        spec, facts = args.target, args.facts
        prefix = facts.prefix
        tags = args.tags()
        self.aws = aws.Provider(
            f"{name}-aws", region=spec.region, allowed_account_ids=[spec.account_id],
            default_tags={"tags": tags}, opts=pulumi.ResourceOptions(parent=self))
        child = pulumi.ResourceOptions(parent=self, provider=self.aws)

        # --- network: private node subnets in every zone; NAT (or nothing) for egress ------------------
        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=spec.vpc_cidr, enable_dns_hostnames=True,
                          enable_dns_support=True, tags={"Name": prefix}, opts=child)
        private_cidrs, public_cidrs = subnet_blocks(spec.vpc_cidr, len(spec.availability_zones))
        private_subnets, private_tables = [], []
        for zone, cidr in zip(spec.availability_zones, private_cidrs):
            subnet = aws.ec2.Subnet(f"{name}-private-{zone}", vpc_id=vpc.id, cidr_block=cidr,
                                    availability_zone=zone, map_public_ip_on_launch=False,
                                    tags={"Name": f"{prefix}-private-{zone}",
                                          "kubernetes.io/role/internal-elb": "1"}, opts=child)
            table = aws.ec2.RouteTable(f"{name}-private-{zone}", vpc_id=vpc.id,
                                       tags={"Name": f"{prefix}-private-{zone}"}, opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-private-{zone}", subnet_id=subnet.id, route_table_id=table.id,
                                          opts=child)
            private_subnets.append(subnet)
            private_tables.append(table)
        # S3 through a gateway endpoint always: bucket traffic never leaves the VPC (and costs no NAT).
        aws.ec2.VpcEndpoint(f"{name}-s3", vpc_id=vpc.id, service_name=f"com.amazonaws.{spec.region}.s3",
                            vpc_endpoint_type="Gateway", route_table_ids=[t.id for t in private_tables],
                            tags={"Name": f"{prefix}-s3"}, opts=child)
        if spec.egress == "nat":
            self._nat(name, spec, prefix, vpc, public_cidrs, private_tables, args.prod_like, args.public_load_balancer,
                      child)
        else:
            self._interface_endpoints(name, spec, prefix, vpc, private_subnets, child)

        # --- keys: envelope encryption of Secrets; Vault's unseal key -----------------------------------
        secrets_key = aws.kms.Key(f"{name}-secrets", description=f"{prefix}: EKS Secrets envelope encryption",
                                  enable_key_rotation=True, deletion_window_in_days=30, opts=child)
        aws.kms.Alias(f"{name}-secrets", name=f"alias/{prefix}-eks-secrets", target_key_id=secrets_key.key_id,
                      opts=child)
        unseal_key = None
        if facts.identity("vault"):
            unseal_key = aws.kms.Key(f"{name}-vault-unseal", description=f"{prefix}: Vault auto-unseal",
                                     enable_key_rotation=True, deletion_window_in_days=30, opts=child)
            aws.kms.Alias(f"{name}-vault-unseal", name=facts.unseal_key, target_key_id=unseal_key.key_id,
                          opts=child)

        # --- the cluster ---------------------------------------------------------------------------------
        cluster_role = self._service_role(name, "cluster", "eks.amazonaws.com", ("AmazonEKSClusterPolicy",),
                                          prefix, child)
        cluster_tags = {}
        if not spec.private and spec.public_endpoint_reason:
            cluster_tags[AWS_PUBLIC_ENDPOINT_REASON] = spec.public_endpoint_reason
        self.cluster = aws.eks.Cluster(
            f"{name}-eks",
            name=prefix,
            version=args.kubernetes_version,
            role_arn=cluster_role.arn,
            vpc_config={
                "subnet_ids": [s.id for s in private_subnets],
                "endpoint_private_access": True,
                "endpoint_public_access": not spec.private,
                # A public endpoint answers only the spec's networks (rule public-endpoint-networks).
                **({} if spec.private else {"public_access_cidrs": list(spec.authorized_networks)}),
            },
            encryption_config={"resources": ["secrets"], "provider": {"key_arn": secrets_key.arn}},
            enabled_cluster_log_types=LOG_TYPES,
            # Access entries only (no aws-auth ConfigMap); whoever runs `pulumi up` administers the cluster.
            access_config={"authentication_mode": "API", "bootstrap_cluster_creator_admin_permissions": True},
            # No VPC CNI and no kube-proxy: Cilium (ENI mode, kube-proxy replacement) is the CNI on every target.
            bootstrap_self_managed_addons=False,
            deletion_protection=args.prod,
            tags=cluster_tags or None,
            opts=child,
        )
        cluster_name = self.cluster.name
        aws.eks.AccessEntry(f"{name}-admins", cluster_name=cluster_name, principal_arn=spec.admin_role_arn,
                            kubernetes_groups=[args.admin_group], type="STANDARD", opts=child)
        oidc = args.oidc
        if oidc:
            # People sign on through the identity provider; tenancy binds its groups with the same prefix.
            aws.eks.IdentityProviderConfig(f"{name}-signon", cluster_name=cluster_name, oidc={
                "identity_provider_config_name": "plinth-oidc", "issuer_url": oidc.issuer,
                "client_id": oidc.clients.kubernetes, "username_claim": oidc.username_claim,
                "username_prefix": oidc.username_prefix, "groups_claim": oidc.groups_claim,
                "groups_prefix": oidc.groups_prefix}, opts=child)

        # --- identities: one IAM role per ServiceAccount, trusted through the cluster's OIDC issuer -------
        issuer = self.cluster.identities.apply(lambda ids: ids[0].oidcs[0].issuer)
        oidc = aws.iam.OpenIdConnectProvider(f"{name}-oidc", url=issuer, client_id_lists=["sts.amazonaws.com"],
                                             opts=child)
        roles = {identity.name: self._workload_role(name, identity, facts, oidc, issuer, unseal_key, child)
                 for identity in facts.identities}

        # --- nodes ---------------------------------------------------------------------------------------
        node_role = self._service_role(name, "nodes", "ec2.amazonaws.com", NODE_POLICIES, prefix, child)
        groups = [self._node_group(name, pool, cluster_name, node_role, private_subnets, child)
                  for pool in spec.node_pools]
        if facts.identity("cluster-autoscaler"):
            for pool, group in zip(spec.node_pools, groups):
                self._scale_from_zero(name, pool, group, child)
        # Add-ons that run pods need nodes first (their pods wait for Cilium, which the platform installs).
        after_nodes = pulumi.ResourceOptions(parent=self, provider=self.aws, depends_on=groups)
        aws.eks.Addon(f"{name}-coredns", cluster_name=cluster_name, addon_name="coredns",
                      resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="OVERWRITE",
                      opts=after_nodes)
        aws.eks.Addon(f"{name}-ebs-csi", cluster_name=cluster_name, addon_name="aws-ebs-csi-driver",
                      service_account_role_arn=roles["ebs-csi"].arn, resolve_conflicts_on_create="OVERWRITE",
                      resolve_conflicts_on_update="OVERWRITE", opts=after_nodes)

        # --- buckets -------------------------------------------------------------------------------------
        for purpose in BUCKET_PURPOSES:
            self._bucket(name, purpose, facts.bucket(purpose), args, child)

        # --- the Kubernetes provider every module uses: exec credentials (aws eks get-token), no token ---
        endpoint = self.cluster.endpoint
        self.kubeconfig = kubeconfig = exec_kubeconfig(
            prefix, endpoint, self.cluster.certificate_authority.apply(lambda ca: ca.data), "aws",
            ["eks", "get-token", "--cluster-name", prefix, "--region", spec.region, "--output", "json"],
            "the AWS CLI v2 on PATH, with credentials for the platform account")
        # The platform's pods (Cilium's operator first) need their roles when they start; node groups become active
        # only once Cilium runs, so nothing above the target waits for them.
        self.provider = kubernetes_provider(name, self, kubeconfig, depends_on=[self.cluster, *roles.values()])
        self.api_server = (endpoint.apply(lambda url: url.removeprefix("https://")), 443)
        self.register_outputs({"cluster": cluster_name, "endpoint": endpoint})

    # --- parts ------------------------------------------------------------------------------------------

    def _nat(self, name, spec: EksTarget, prefix, vpc, public_cidrs, private_tables, prod_like, public_load_balancer,
             child) -> None:
        """An internet gateway for NAT: NAT gateways in public subnets (one per zone in staging and prod, one in
        dev); the public subnets hold a load balancer only when the spec makes the Gateway public (with its
        reason), which is when they carry the tag load balancers are placed by."""
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags={"Name": prefix}, opts=child)
        public = aws.ec2.RouteTable(f"{name}-public", vpc_id=vpc.id, tags={"Name": f"{prefix}-public"},
                                    routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": gateway.id}], opts=child)
        nats = []
        for index, (zone, cidr) in enumerate(zip(spec.availability_zones, public_cidrs)):
            subnet = aws.ec2.Subnet(f"{name}-public-{zone}", vpc_id=vpc.id, cidr_block=cidr, availability_zone=zone,
                                    map_public_ip_on_launch=False, opts=child,
                                    tags={"Name": f"{prefix}-public-{zone}",
                                          **({"kubernetes.io/role/elb": "1"} if public_load_balancer else {})})
            aws.ec2.RouteTableAssociation(f"{name}-public-{zone}", subnet_id=subnet.id, route_table_id=public.id,
                                          opts=child)
            if index == 0 or prod_like:
                ip = aws.ec2.Eip(f"{name}-nat-{zone}", domain="vpc", tags={"Name": f"{prefix}-nat-{zone}"},
                                 opts=child)
                nats.append(aws.ec2.NatGateway(f"{name}-nat-{zone}", subnet_id=subnet.id, allocation_id=ip.id,
                                               tags={"Name": f"{prefix}-nat-{zone}"},
                                               opts=pulumi.ResourceOptions.merge(
                                                   child, pulumi.ResourceOptions(depends_on=[gateway]))))
        for index, (zone, table) in enumerate(zip(spec.availability_zones, private_tables)):
            aws.ec2.Route(f"{name}-private-{zone}-egress", route_table_id=table.id,
                          destination_cidr_block="0.0.0.0/0", nat_gateway_id=nats[min(index, len(nats) - 1)].id,
                          opts=child)

    def _interface_endpoints(self, name, spec: EksTarget, prefix, vpc, private_subnets, child) -> None:
        """No internet: the AWS APIs through interface endpoints in the node subnets (HTTPS from the VPC)."""
        group = aws.ec2.SecurityGroup(
            f"{name}-endpoints", vpc_id=vpc.id, description="HTTPS from the VPC to AWS interface endpoints",
            ingress=[{"protocol": "tcp", "from_port": 443, "to_port": 443, "cidr_blocks": [spec.vpc_cidr]}],
            tags={"Name": f"{prefix}-endpoints"}, opts=child)
        for service in INTERFACE_ENDPOINTS:
            aws.ec2.VpcEndpoint(f"{name}-{service.replace('.', '-')}", vpc_id=vpc.id,
                                service_name=f"com.amazonaws.{spec.region}.{service}", vpc_endpoint_type="Interface",
                                private_dns_enabled=True, subnet_ids=[s.id for s in private_subnets],
                                security_group_ids=[group.id], tags={"Name": f"{prefix}-{service}"}, opts=child)

    def _service_role(self, name, role, service, managed, prefix, child) -> aws.iam.Role:
        """A role an AWS service assumes (the control plane, the nodes), with AWS-managed policies."""
        created = aws.iam.Role(f"{name}-{role}", name=f"{prefix}-{role}", assume_role_policy=_policy(
            {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}), opts=child)
        for policy in managed:
            aws.iam.RolePolicyAttachment(f"{name}-{role}-{policy}", role=created.name,
                                         policy_arn=f"arn:aws:iam::aws:policy/{policy}", opts=child)
        return created

    def _workload_role(self, name, identity: Identity, facts: TargetFacts, oidc, issuer, unseal_key,
                       child) -> aws.iam.Role:
        """IRSA: trusted by exactly one ServiceAccount (StringEquals on sub and aud), with exactly its access."""
        subject = f"system:serviceaccount:{identity.namespace}:{identity.service_account}"

        def trust(values: list) -> str:
            provider_arn, issuer_url = values
            host = issuer_url.removeprefix("https://")
            return _policy({"Effect": "Allow", "Principal": {"Federated": provider_arn},
                            "Action": "sts:AssumeRoleWithWebIdentity",
                            "Condition": {"StringEquals": {f"{host}:sub": subject,
                                                           f"{host}:aud": "sts.amazonaws.com"}}})

        role = aws.iam.Role(f"{name}-{identity.name}", name=facts.role_name(identity),
                            assume_role_policy=pulumi.Output.all(oidc.arn, issuer).apply(trust), opts=child)
        kind, _, what = identity.access.partition(":")
        if kind == "ebs":
            aws.iam.RolePolicyAttachment(f"{name}-{identity.name}", role=role.name, opts=child,
                                         policy_arn="arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy")
            return role
        if kind == "unseal":
            document = unseal_key.arn.apply(lambda arn: _policy(
                {"Effect": "Allow", "Action": ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt"], "Resource": arn}))
        elif kind == "eni":
            document = _policy({"Effect": "Allow", "Action": list(CILIUM_ENI_ACTIONS), "Resource": "*"})
        elif kind == "autoscale":
            # EKS tags each managed node group's ASG k8s.io/cluster-autoscaler/<cluster>: owned.
            document = _policy(
                {"Effect": "Allow", "Action": list(AUTOSCALER_READ_ACTIONS), "Resource": "*"},
                {"Effect": "Allow", "Action": list(AUTOSCALER_SCALE_ACTIONS), "Resource": "*", "Condition": {
                    "StringEquals": {f"aws:ResourceTag/k8s.io/cluster-autoscaler/{facts.prefix}": "owned"}}})
        else:
            purpose, _, path = what.partition("/")
            bucket = f"arn:aws:s3:::{facts.bucket(purpose)}"
            objects = f"{bucket}/{path}/*" if path else f"{bucket}/*"
            actions = ["s3:GetObject"] if kind == "bucket-read" else \
                ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
            listing: dict[str, Any] = {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket}
            if path:
                listing["Condition"] = {"StringLike": {"s3:prefix": [f"{path}/*"]}}
            document = _policy(listing, {"Effect": "Allow", "Action": actions, "Resource": objects})
        aws.iam.RolePolicy(f"{name}-{identity.name}", role=role.name, policy=document, opts=child)
        return role

    def _node_group(self, name, pool, cluster_name, node_role, subnets, child) -> aws.eks.NodeGroup:
        """A managed node group; a GPU pool carries the GPU taint and label GPU workloads tolerate and select."""
        return aws.eks.NodeGroup(
            f"{name}-{pool.name}", cluster_name=cluster_name, node_group_name=pool.name,
            node_role_arn=node_role.arn, subnet_ids=[s.id for s in subnets], instance_types=[pool.instance_type],
            # The NVIDIA AMI brings the driver and container toolkit (the GPU operator installs neither here).
            ami_type="AL2023_x86_64_NVIDIA" if pool.gpu else "AL2023_x86_64_STANDARD",
            disk_size=pool.disk_gib,
            scaling_config={"min_size": pool.min_size, "max_size": pool.max_size, "desired_size": pool.min_size},
            update_config={"max_unavailable": 1}, labels=pool_labels(pool), taints=pool_taints(pool),
            # The autoscaler owns the node count: drift previews stay clean while it scales.
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(
                ignore_changes=["scalingConfig.desiredSize"])))

    def _scale_from_zero(self, name, pool, group: aws.eks.NodeGroup, child) -> None:
        """A group at zero nodes has no node to show Cluster Autoscaler what it would add: tags on its ASG say
        (labels, taints, GPUs). EKS does not copy node-group tags to the ASG, so each tag is its own resource."""
        if pool.min_size > 0:
            return
        taints = [{**t, "effect": KUBERNETES_TAINT_EFFECTS[t["effect"]]} for t in pool_taints(pool)]
        resources = {GPU_RESOURCE: str(pool.gpu.count)} if pool.gpu else {}
        asg = group.resources.apply(lambda r: r[0].autoscaling_groups[0].name)
        for key, value in node_template_tags(pool_labels(pool), taints, resources).items():
            what = re.sub(r"[^a-z0-9]+", "-", key.removeprefix(f"{NODE_TEMPLATE}/").lower())
            aws.autoscaling.Tag(f"{name}-{pool.name}-{what}", autoscaling_group_name=asg,
                                tag={"key": key, "value": value, "propagate_at_launch": False}, opts=child)

    def _bucket(self, name, purpose, bucket, args: TargetArgs, child) -> None:
        """Encrypted (SSE-KMS), versioned, every public access blocked, ACLs off; named, so policies match it."""
        child = args.bucket_options(child)  # the bucket's settings stay with the bucket
        created = aws.s3.Bucket(f"{name}-{purpose}", bucket=bucket, force_destroy=args.delete_data, opts=child)
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-{purpose}", bucket=created.bucket, opts=child,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms"},
                    "bucket_key_enabled": True}])
        aws.s3.BucketVersioning(f"{name}-{purpose}", bucket=created.bucket,
                                versioning_configuration={"status": "Enabled"}, opts=child)
        aws.s3.BucketPublicAccessBlock(f"{name}-{purpose}", bucket=created.bucket, block_public_acls=True,
                                       block_public_policy=True, ignore_public_acls=True,
                                       restrict_public_buckets=True, opts=child)
        aws.s3.BucketOwnershipControls(f"{name}-{purpose}", bucket=created.bucket,
                                       rule={"object_ownership": "BucketOwnerEnforced"}, opts=child)
