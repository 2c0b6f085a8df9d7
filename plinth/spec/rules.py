"""Cross-field and cross-service rules: one pure pass that reports every violation.

Each rule yields Violation(loc, message, rule, fix); `loc` is a path of YAML
keys and list indexes into the merged spec, mapped back to file:line:col by
the loader. Rules never raise and never stop at the first problem.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator

from plinth.catalog import CHARTS, PLATFORM_NAMESPACES, ImageRef
from plinth.spec.errors import Violation
from plinth.spec.models import DEFAULT_POD_CIDR, PlatformSpec, perimeter_hosts, quantity_value, url_host_port
from plinth.targets import target_facts, vault_uses_target_key
from plinth.vocabulary import OBJECT_STORE_ENDPOINT, in_cluster_store

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
RESERVED_NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease", *PLATFORM_NAMESPACES.values(),
                       *(chart.namespace for chart in CHARTS.values()),
                       # Namespaces the charts create for themselves: Cilium's copies of the Gateway's TLS
                       # keys (gatewayAPI.secretsNamespace) and its SPIRE server.
                       "cilium-secrets", "cilium-spire"}
RESERVED_PREFIX = "kube-"
"""Kubernetes keeps every kube-* namespace for itself (kube-system, kube-public, and add-ons' kube-flannel...)."""

def check_rules(spec: PlatformSpec) -> list[Violation]:
    return [v for rule in RULES for v in rule(spec)]


def service_needs(spec: PlatformSpec) -> Iterator[Violation]:
    """Every need of a service (PlatformService.needs) that no service of this spec provides."""
    from plinth.program import SERVICES

    providers = {service.capability: service for _, service in SERVICES if service.capability}
    for _, service in SERVICES:
        for need in service.needs(spec):
            provider = providers[need.capability]
            if not provider.provides(spec):
                fix = provider.capability_fix + (f", or {need.otherwise}" if need.otherwise else "")
                yield Violation(need.loc, f"{need.why}, which is off", f"{need.rule_prefix}-needs-{need.capability}",
                                fix)


def service_own_rules(spec: PlatformSpec) -> Iterator[Violation]:
    """Each service's and configure part's own rules (PlatformService.rules): one spec feeds both stages."""
    from plinth.program import CONFIGURATION, SERVICES

    for _, service in (*SERVICES, *CONFIGURATION):
        yield from service.rules(spec)


def reserved_namespaces(spec: PlatformSpec) -> Iterator[Violation]:
    for index, team in enumerate(spec.teams):
        if team.name in RESERVED_NAMESPACES or team.name.startswith(RESERVED_PREFIX):
            yield Violation(("teams", index, "name"), f"{team.name!r} is a reserved namespace",
                            "reserved-namespace", "choose another team name")


def model_rules(spec: PlatformSpec) -> Iterator[Violation]:
    teams = {team.name: team for team in spec.teams}
    for index, model in enumerate(spec.serving.models):
        at = ("serving", "models", index)
        if model.team not in teams:
            yield Violation((*at, "team"), f"team {model.team!r} is not defined",
                            "model-team-exists", f"add a team named {model.team!r} under teams, or fix the name")
        if model.runtime == "triton" and not model.model_repository and not model.registry and \
                spec.target.type == "existing":
            yield Violation((*at, "modelRepository"), "a Triton model needs a model repository",
                            "triton-model-repository", "set modelRepository (s3://, gs:// or a PVC path); on eks "
                            "and gke the default is the team's prefix of the models bucket")
        if model.runtime == "bentoml" and not model.image:
            yield Violation((*at, "image"), "a BentoML model needs its Bento image",
                            "bentoml-image", "set image to the containerized Bento (without tag)")
        if model.canary and model.canary.version == model.stable.version:
            yield Violation((*at, "canary", "version"), "the canary runs the same version as stable",
                            "canary-differs", "set canary.version to the new version, or remove canary")
        if model.canary and not (spec.network.cilium.enabled and spec.network.cilium.gateway_api):
            yield Violation((*at, "canary"), "a canary needs weighted routing (Gateway API)",
                            "canary-needs-gateway", "enable network.cilium with gatewayApi: true")
        if model.shadow and not (spec.network.cilium.enabled and spec.network.cilium.gateway_api):
            yield Violation((*at, "shadow"), "a shadow needs the Gateway's request mirroring (Gateway API)",
                            "shadow-needs-gateway", "enable network.cilium with gatewayApi: true, or remove shadow")
        if model.shadow and model.shadow.version == model.stable.version:
            yield Violation((*at, "shadow", "version"), "the shadow runs the same version as stable",
                            "shadow-differs", "set shadow.version to the version to try, or remove shadow")
        yield from _repository_rules(model, at, spec)
        # A registry-backed Bento names its own tag instead (plinth.modules.serving.registry.rules).
        if model.runtime == "bentoml" and model.image and not model.registry and ImageRef.parse(model.image).pinned:
            yield Violation((*at, "image"), f"image {model.image!r} has a tag or digest; each release's version "
                            "is its tag", "bentoml-image", "give the image without tag (set the tag as "
                            "stable.version)")
        if model.autoscaling.enabled and model.stable.replicas < 1:
            yield Violation((*at, "stable", "replicas"), "an autoscaled model needs at least 1 stable replica "
                            "(the autoscaler's minimum)", "autoscaling-bounds", "set stable.replicas to 1 or more")
        if model.gpu and not spec.gpu.operator.enabled:
            yield Violation((*at, "gpu"), "the model requests GPUs but the GPU operator is disabled",
                            "gpu-needs-operator", "enable gpu.operator, or set gpu: 0")
        if model.autoscaling.enabled and model.autoscaling.max_replicas < model.stable.replicas:
            yield Violation((*at, "autoscaling", "maxReplicas"),
                            f"maxReplicas {model.autoscaling.max_replicas} is below stable.replicas "
                            f"{model.stable.replicas}", "autoscaling-bounds", "raise maxReplicas")
        if spec.airgap.enabled and spec.airgap.mirror and model.image and not model.image.startswith(
            spec.airgap.mirror.registry + "/"
        ):
            yield Violation((*at, "image"), f"image {model.image!r} is not in the mirror "
                            f"{spec.airgap.mirror.registry!r}", "airgap-mirror-only",
                            "push the image to the mirror and reference it there")


def _repository_rules(model, at: tuple, spec: PlatformSpec) -> Iterator[Violation]:
    """Triton's model repository: a claim name that can be mounted, and a way out for an object store (named
    by its CIDRs, or on eks/gke with Cilium by the cloud's own names)."""
    repository = model.model_repository
    if model.runtime != "triton" or model.registry:  # a registered model's files come through MLflow
        return
    for track in ("stable", "canary", "shadow"):
        release = getattr(model, track)
        if release is not None and release.version != release.tag:
            yield Violation((*at, track, "version"), "a Triton release is a directory of the model repository, "
                            "not an image: it has no digest", "triton-version-directory",
                            f"set {track}.version to the directory name ({release.tag!r})")
    facts = target_facts(spec)
    # Cilium reaches the target's own object store by name (modules/cluster/differences.object_store_egress).
    by_name = spec.network.cilium.enabled and facts.in_object_store(repository)
    if not repository:
        if facts.cloud and not by_name and not model.repository_cidrs:
            yield Violation((*at, "modelRepository"), "the model's pods cannot reach the models bucket: team "
                            "namespaces are default-deny for egress", "model-repository-egress",
                            "enable network.cilium (egress to the object store by name), or set repositoryCidrs")
        return
    scheme, _, rest = repository.partition("://")
    # The platform's own store: team namespaces reach its S3 port already (ObjectStore.tenant_egress).
    in_store, store_scheme = in_cluster_store(repository)
    in_store = in_store and spec.storage.object_store.enabled
    if scheme == "pvc":
        claim = rest.split("/", 1)[0]
        if not _DNS_SUBDOMAIN.match(claim) or ".." in rest.split("/"):
            yield Violation((*at, "modelRepository"), f"{repository!r} does not name a claim and a path inside it",
                            "triton-model-repository", "use pvc://<claim>/<path>, the claim in the team's namespace")
    elif in_store:
        if store_scheme != "https":
            yield Violation((*at, "modelRepository"), f"the platform's object store speaks HTTPS only, not "
                            f"{store_scheme or 'a plain host'}", "model-repository-tls",
                            f"use s3://{OBJECT_STORE_ENDPOINT}/<bucket>/<path>")
    elif not model.repository_cidrs and not by_name:
        yield Violation((*at, "modelRepository"), f"the model's pods cannot reach {scheme}:// storage: team "
                        "namespaces are default-deny for egress", "model-repository-egress",
                        "set repositoryCidrs to the object store's networks, or use a pvc:// repository")


def _serving_replicas(model) -> int:
    """Every replica a model can run at once: stable (at the autoscaler's maximum), canary and shadow."""
    stable = model.autoscaling.max_replicas if model.autoscaling.enabled else model.stable.replicas
    return stable + sum(release.replicas for release in (model.canary, model.shadow) if release)


def gpu_quota(spec: PlatformSpec) -> Iterator[Violation]:
    """A team's models fit its quota at their largest: GPUs, and the CPU and memory they request."""
    needed: Counter[str] = Counter()
    cpu: Counter[str] = Counter()
    memory: Counter[str] = Counter()
    for model in spec.serving.models:
        replicas = _serving_replicas(model)
        needed[model.team] += model.gpu * replicas
        # Counters of floats: CPU and memory quantities are not whole numbers.
        cpu[model.team] += quantity_value(model.cpu) * replicas  # type: ignore[assignment]
        memory[model.team] += quantity_value(model.memory) * replicas  # type: ignore[assignment]
        if model.drift:  # its drift job runs beside the servers (and serves its score until the next run)
            cpu[model.team] += quantity_value(model.drift.cpu)  # type: ignore[assignment]
            memory[model.team] += quantity_value(model.drift.memory)  # type: ignore[assignment]
        if model.request_log:  # the request logger in every stable and canary pod
            logged = replicas - (model.shadow.replicas if model.shadow else 0)
            cpu[model.team] += quantity_value(model.request_log.cpu) * logged  # type: ignore[assignment]
            memory[model.team] += quantity_value(model.request_log.memory) * logged  # type: ignore[assignment]
    with_jobs = {model.team for model in spec.serving.models if model.drift}
    with_logs = {model.team for model in spec.serving.models if model.request_log}
    for index, team in enumerate(spec.teams):
        if needed[team.name] > team.quota.gpu:
            yield Violation(("teams", index, "quota", "gpu"),
                            f"the team's models need up to {needed[team.name]} GPUs but the quota is "
                            f"{team.quota.gpu}", "gpu-quota-fits", "raise quota.gpu or lower model replicas/gpu")
        jobs = (", drift jobs" if team.name in with_jobs else "") + \
            (", request loggers" if team.name in with_logs else "")
        for resource, used, quota in (("cpu", cpu, team.quota.cpu), ("memory", memory, team.quota.memory)):
            if used[team.name] > quantity_value(quota) * (1 + 1e-9):
                yield Violation(("teams", index, "quota", resource),
                                f"the team's models request up to {used[team.name]:g} {resource} (stable at its "
                                f"maximum, canary and shadow{jobs}) but the quota is {quota}", "serving-quota-fits",
                                f"raise quota.{resource} or lower the models' replicas/{resource}")


def gpu_rules(spec: PlatformSpec) -> Iterator[Violation]:
    from plinth.modules.gpu import MIG_PROFILE

    sharing, at = spec.gpu.operator.sharing, ("gpu", "operator", "sharing")
    if sharing.type == "mig" and not sharing.mig_profile:
        yield Violation((*at, "migProfile"), "MIG sharing needs a profile",
                        "mig-profile", "set migProfile, e.g. all-1g.10gb")
    if sharing.type == "mig" and sharing.mig_profile and not MIG_PROFILE.match(sharing.mig_profile):
        yield Violation((*at, "migProfile"), f"{sharing.mig_profile!r} is not a MIG configuration MIG manager "
                        "provides", "mig-profile-format", "use all-<n>g.<m>gb (one size on every GPU, e.g. "
                        "all-1g.10gb) or all-balanced (sizes mixed)")
    if sharing.type != "mig" and sharing.mig_profile:
        yield Violation((*at, "migProfile"), f"migProfile is set but sharing type is {sharing.type!r}",
                        "mig-profile-unused", "set type: mig, or remove migProfile")
    if sharing.type == "timeSlicing" and sharing.replicas < 2:
        yield Violation((*at, "replicas"), "time-slicing needs at least 2 replicas",
                        "time-slicing-replicas", "set replicas to 2 or more, or type: none")
    if sharing.type != "timeSlicing" and sharing.replicas > 1:
        yield Violation((*at, "replicas"), f"replicas is set but sharing type is {sharing.type!r}",
                        "time-slicing-replicas-unused", "set type: timeSlicing, or remove replicas")
    wants_gpu = any(model.gpu for model in spec.serving.models)
    pools = getattr(spec.target, "node_pools", None)
    if wants_gpu and pools is not None and not any(pool.gpu for pool in pools):
        yield Violation(("target", "nodePools"), "models request GPUs but no node pool has one",
                        "gpu-node-pool", "add a node pool with gpu: {type: ..., count: ...}")


def governance(spec: PlatformSpec) -> Iterator[Violation]:
    prod = spec.metadata.environment == "prod"
    if prod and spec.secrets.vault.enabled and not spec.secrets.vault.ha:
        yield Violation(("secrets", "vault", "ha"), "prod requires Vault in HA mode", "prod-vault-ha",
                        "set secrets.vault.ha: true")
    if prod and spec.testing.skip_await:
        yield Violation(("testing", "skipAwait"), "skipAwait is for throw-away test clusters, not prod",
                        "prod-no-test-options", "remove testing.skipAwait")
    if prod and spec.testing.await_timeout_seconds is not None:
        yield Violation(("testing", "awaitTimeoutSeconds"), "awaitTimeoutSeconds is for throw-away test clusters, "
                        "not prod", "prod-no-test-options", "remove testing.awaitTimeoutSeconds")
    if spec.airgap.enabled and spec.airgap.mirror is None:
        yield Violation(("airgap", "mirror"), "air-gap mode needs a mirror", "airgap-needs-mirror",
                        "set airgap.mirror.registry and airgap.mirror.charts")
    unseal = spec.secrets.vault.auto_unseal
    if unseal.type != "none" and not unseal.key and not vault_uses_target_key(spec):
        yield Violation(("secrets", "vault", "autoUnseal", "key"), f"auto-unseal {unseal.type!r} needs a key",
                        "unseal-key", "set autoUnseal.key to the KMS key or transit key name (on eks with awskms "
                        "and gke with gcpckms the target creates one)")
    if spec.monitoring.drift.enabled and not spec.monitoring.enabled:
        yield Violation(("monitoring", "drift", "enabled"), "drift alerts need monitoring", "drift-needs-monitoring",
                        "enable monitoring, or disable drift")


def identity_rules(spec: PlatformSpec) -> Iterator[Violation]:
    """Sign-on: prod has an identity provider (or says why not), and the target can use the one given."""
    identity, at = spec.identity, ("identity",)
    if spec.metadata.environment == "prod" and identity.oidc is None and not identity.reason:
        # At the line that makes it prod: the identity block is usually absent.
        yield Violation(("metadata", "environment"), "prod signs people on through an identity provider, and "
                        "identity.oidc is not set", "prod-identity",
                        "set identity.oidc (issuer and clients.kubernetes), or say why not in identity.reason")
    if identity.oidc is None:
        return
    if identity.reason:
        yield Violation((*at, "reason"), "a reason for having no identity provider, but identity.oidc is set",
                        "identity-reason-unused", "remove identity.reason")
    if spec.target.type == "gke":
        yield Violation((*at, "oidc"), "GKE signs people on through Google identities (Workforce Identity "
                        "Federation, set up in the organization's IAM), not through an issuer Plinth configures",
                        "identity-oidc-target", "remove identity.oidc (modules/cluster/README.md says how GKE "
                        "signs people on); in prod say so in identity.reason")
    if spec.target.type == "eks" and identity.oidc.certificate_authority:
        yield Violation((*at, "oidc", "certificateAuthority"), "EKS reaches the issuer over the internet and "
                        "trusts publicly trusted certificates only", "identity-oidc-target",
                        "remove certificateAuthority, and serve the issuer with a publicly trusted certificate")


def target_sdk(spec: PlatformSpec) -> Iterator[Violation]:
    """A cloud target's SDK is an extra of the install (`plinth[eks]`, `plinth[gke]`): say which, before planning."""
    from plinth.modules.cluster import missing_sdk

    missing = missing_sdk(spec.target.type)
    if missing:
        sdk, extra = missing
        yield Violation(("target", "type"), f"the {spec.target.type} target needs {sdk}, which is not installed",
                        "target-sdk-installed", f"pip install 'plinth[{extra}]' (or 'plinth[all]'; from a checkout: "
                        f"pip install -e '.[{extra}]')")


def cloud_target(spec: PlatformSpec) -> Iterator[Violation]:
    """EKS and GKE: endpoints, networks, node pools and what the target provides instead of the spec."""
    from plinth.catalog import GPU_MACHINES

    target, at = spec.target, ("target",)
    if target.type == "existing":
        return
    prod = spec.metadata.environment == "prod"
    if prod and not target.private and not target.public_endpoint_reason:
        yield Violation((*at, "private"), "prod keeps the API endpoint private", "prod-private-endpoint",
                        "set private: true, or give publicEndpointReason (why it must be public)")
    if target.private and target.public_endpoint_reason:
        yield Violation((*at, "publicEndpointReason"), "a reason for a public endpoint, but the endpoint is private",
                        "public-endpoint-reason-unused", "remove publicEndpointReason, or set private: false")
    if target.type == "eks" and not target.private and not target.authorized_networks:
        yield Violation((*at, "authorizedNetworks"), "a public EKS endpoint would answer the whole internet",
                        "public-endpoint-networks", "list the networks allowed to reach it in authorizedNetworks")
    if target.type == "eks" and target.private and target.authorized_networks:
        yield Violation((*at, "authorizedNetworks"), "a private EKS endpoint is reached from the VPC only",
                        "public-endpoint-networks", "remove authorizedNetworks, or set private: false")
    if target.egress == "none" and not (spec.airgap.enabled and spec.airgap.mirror):
        yield Violation((*at, "egress"), "without egress, nodes pull images from the mirror only",
                        "cloud-egress-needs-mirror", "enable airgap with a mirror inside the VPC, or egress: nat")
    yield from _cloud_networks(spec)
    names = Counter(pool.name for pool in target.node_pools)
    machines = GPU_MACHINES[target.type]
    for index, pool in enumerate(target.node_pools):
        where = (*at, "nodePools", index)
        if names[pool.name] > 1:
            yield Violation((*where, "name"), f"node pool {pool.name!r} is defined twice", "node-pool-unique",
                            "give each node pool its own name")
        known = machines.get(pool.instance_type)
        if pool.gpu and known is None:
            yield Violation((*where, "instanceType"), f"{pool.instance_type!r} is not a GPU machine type Plinth "
                            f"knows for {target.type}", "gpu-machine-type",
                            f"use one of {', '.join(sorted(machines))}, or add it to plinth.catalog.GPU_MACHINES")
        elif pool.gpu and known is not None and (pool.gpu.type, pool.gpu.count) != (known.accelerator, known.count):
            yield Violation((*where, "gpu"), f"{pool.instance_type} has {known.count} x {known.accelerator} "
                            f"({known.memory_gib} GiB each), not {pool.gpu.count} x {pool.gpu.type}",
                            "gpu-machine-type", f"set gpu: {{type: {known.accelerator}, count: {known.count}}}")
        elif not pool.gpu and known is not None:
            yield Violation((*where, "gpu"), f"{pool.instance_type} has GPUs but the pool does not say so: its "
                            "nodes would lack the GPU taint, and any pod could take them", "gpu-machine-type",
                            f"add gpu: {{type: {known.accelerator}, count: {known.count}}}")
    if all(pool.gpu for pool in target.node_pools):
        yield Violation((*at, "nodePools"), "every node pool is a GPU pool: the platform's own pods do not "
                        "tolerate the GPU taint", "cpu-node-pool", "add a node pool without gpu")
    gpus_per_node = max((pool.gpu.count for pool in target.node_pools if pool.gpu), default=0)
    sharing = spec.gpu.operator.sharing
    if sharing.type == "timeSlicing":
        gpus_per_node *= sharing.replicas
    for index, model in enumerate(spec.serving.models):
        if gpus_per_node and model.gpu > gpus_per_node:
            yield Violation(("serving", "models", index, "gpu"), f"a replica asks for {model.gpu} GPUs but the "
                            f"largest GPU node has {gpus_per_node}: it could never be scheduled", "gpu-fits-node",
                            "lower gpu, or add a node pool with more GPUs per node")
    # maxSize is at least 1 (schema): a GPU pool stays at zero only where nothing scales it (eks without the
    # autoscaler keeps every group at minSize; GKE autoscales its pools itself).
    scales = target.type == "gke" or target.autoscaler.enabled
    gpu_pools = [pool for pool in target.node_pools if pool.gpu]
    if gpu_pools and any(model.gpu for model in spec.serving.models) and \
            not any((pool.max_size if scales else pool.min_size) > 0 for pool in gpu_pools):
        yield Violation((*at, "autoscaler", "enabled"), "models request GPUs, but without the autoscaler every GPU "
                        "pool stays at its minSize 0: no GPU node would ever start", "gpu-pool-scales",
                        "keep target.autoscaler.enabled: true, or give a GPU pool minSize 1 or more")
    if spec.gpu.operator.enabled and spec.gpu.operator.driver:
        yield Violation(("gpu", "operator", "driver"), f"on {target.type} the node image brings the GPU driver",
                        "gpu-driver-by-target", "set driver: false")
    if spec.network.cilium.api_server is not None:
        yield Violation(("network", "cilium", "apiServer"), f"on {target.type} the cluster's own endpoint is "
                        "used", "cilium-api-server-by-target", "remove network.cilium.apiServer")


def _cloud_networks(spec: PlatformSpec) -> Iterator[Violation]:
    import ipaddress

    target, at = spec.target, ("target",)
    if target.type == "eks":
        vpc = ipaddress.ip_network(target.vpc_cidr)
        if not 16 <= vpc.prefixlen <= 22:
            yield Violation((*at, "vpcCidr"), f"{target.vpc_cidr} is a /{vpc.prefixlen}; EKS VPCs are /16 to /22 "
                            "here (eight subnets of it, pods take VPC addresses)", "cidr-valid",
                            "use a /16 to /22, e.g. 10.0.0.0/16")
        zones = Counter(target.availability_zones)
        for index, zone in enumerate(target.availability_zones):
            if not (zone.startswith(target.region) and len(zone) == len(target.region) + 1 and zone[-1].isalpha()):
                yield Violation((*at, "availabilityZones", index), f"{zone!r} is not a zone of {target.region}",
                                "availability-zones", f"use zones such as {target.region}a, {target.region}b")
            elif zones[zone] > 1:
                yield Violation((*at, "availabilityZones", index), f"zone {zone} is listed twice",
                                "availability-zones", "list each zone once")
        return
    # gke from here on (cloud targets only).
    ranges = {"subnetCidr": target.subnet_cidr, "podsCidr": target.pods_cidr,  # type: ignore[union-attr]
              "servicesCidr": target.services_cidr, "controlPlaneCidr": target.control_plane_cidr}  # type: ignore[union-attr]
    if ipaddress.ip_network(target.control_plane_cidr).prefixlen != 28:  # type: ignore[union-attr]
        yield Violation((*at, "controlPlaneCidr"), "GKE's control plane takes exactly a /28", "cidr-valid",
                        "use a /28, e.g. 172.16.0.0/28")
    keys = list(ranges)
    for i, first in enumerate(keys):
        for second in keys[i + 1:]:
            if ipaddress.ip_network(ranges[first]).overlaps(ipaddress.ip_network(ranges[second])):
                yield Violation((*at, second), f"{second} {ranges[second]} overlaps {first} {ranges[first]}",
                                "cidr-overlap", "give each range its own addresses")


def service_rules(spec: PlatformSpec) -> Iterator[Violation]:
    cilium, certs = spec.network.cilium, spec.certificates.cert_manager
    if cilium.enabled and cilium.kube_proxy_replacement and cilium.api_server is None and \
            spec.target.type == "existing":
        yield Violation(("network", "cilium", "apiServer"), "kube-proxy replacement needs the API server endpoint",
                        "cilium-api-server", "set network.cilium.apiServer.host (and port), or "
                        "kubeProxyReplacement: false")
    if cilium.enabled and cilium.gateway_api and not cilium.kube_proxy_replacement:
        yield Violation(("network", "cilium", "gatewayApi"), "Cilium's Gateway API needs kube-proxy replacement",
                        "gateway-needs-kpr", "set kubeProxyReplacement: true, or gatewayApi: false")
    vault = spec.secrets.vault
    if vault.enabled and vault.auto_unseal.type == "transit" and not vault.auto_unseal.address:
        yield Violation(("secrets", "vault", "autoUnseal", "address"), "transit auto-unseal needs the address of "
                        "the unsealing Vault", "unseal-transit-address", "set autoUnseal.address")
    issuer = certs.issuer
    if certs.enabled and issuer.type == "ca" and not issuer.ca_secret:
        yield Violation(("certificates", "certManager", "issuer", "caSecret"), "issuer type 'ca' needs the "
                        "Secret holding your CA", "issuer-ca-secret", "set caSecret to a kubernetes.io/tls Secret "
                        "in namespace cert-manager")
    if certs.enabled and issuer.type == "acme" and issuer.acme is None:
        yield Violation(("certificates", "certManager", "issuer", "acme"), "issuer type 'acme' needs the ACME "
                        "account", "issuer-acme", "set acme.server and acme.email")


def airgap_bundles(spec: PlatformSpec) -> Iterator[Violation]:
    from plinth.modules.helm import source_kind

    mirror = spec.airgap.mirror if spec.airgap.enabled else None
    cilium = spec.network.cilium
    source = spec.charts.source or (mirror.charts if mirror else None)
    if mirror and cilium.enabled and cilium.gateway_api and not mirror.files and source_kind(source) != "directory":
        yield Violation(("airgap", "mirror", "files"), "the Gateway API CRDs are plain manifests, not a chart: "
                        "air-gap mode needs a file mirror for them", "airgap-files",
                        "set airgap.mirror.files (see `plinth images`), or use a directory chart source")


def _inside_perimeter(url: str, spec: PlatformSpec) -> bool:
    host = url_host_port(url)
    return host is not None and host in perimeter_hosts(spec)


def airgap_perimeter(spec: PlatformSpec) -> Iterator[Violation]:
    """In air-gap mode every chart source and every endpoint the platform calls out to is inside the perimeter."""
    from plinth.modules.helm import source_kind

    mirror = spec.airgap.mirror
    if not (spec.airgap.enabled and mirror):
        return
    hosts = ", ".join(perimeter_hosts(spec))
    fix = "use a host of the mirror, or list the internal host in airgap.mirror.hosts"
    sources: list[tuple[tuple[str, ...], str, str]] = [(("airgap", "mirror", "charts"), mirror.charts,
                                                        "the mirror's chart source")]
    if spec.charts.source:
        sources.append((("charts", "source"), spec.charts.source, "the chart source"))
    for at, source, what in sources:
        if source_kind(source) != "directory" and not _inside_perimeter(source, spec):
            yield Violation(at, f"{what} {source!r} is outside the air gap: its host is not one of the "
                            f"perimeter's hosts ({hosts})", "airgap-chart-source", fix)
    certs, vault, index = spec.certificates.cert_manager, spec.secrets.vault, spec.registry.python_index
    endpoints: list[tuple[tuple[str | int, ...], str, str, str]] = []
    if certs.enabled and certs.issuer.type == "acme" and certs.issuer.acme:
        endpoints.append((("certificates", "certManager", "issuer", "acme", "server"), certs.issuer.acme.server,
                          "the ACME server", "airgap-acme"))
    if vault.enabled and vault.auto_unseal.type == "transit" and vault.auto_unseal.address:
        endpoints.append((("secrets", "vault", "autoUnseal", "address"), vault.auto_unseal.address,
                          "the unsealing Vault", "airgap-endpoint"))
    if index.url:
        endpoints.append((("registry", "pythonIndex", "url"), index.url, "the Python index", "airgap-endpoint"))
    dex = spec.identity.dex
    # A cloud's control plane is outside the air gap; Dex on the platform's own Gateway is inside it.
    if spec.identity.oidc and spec.target.type == "existing" and not (
            dex.enabled and spec.identity.oidc.issuer == f"https://{dex.hostname}"):
        endpoints.append((("identity", "oidc", "issuer"), spec.identity.oidc.issuer, "the identity provider",
                          "airgap-endpoint"))
    if dex.enabled:
        endpoints += [(("identity", "dex", "ldap", i, "host"), f"ldaps://{ldap.host}", "the directory",
                       "airgap-endpoint") for i, ldap in enumerate(dex.ldap)]
    for loc, url, what, rule in endpoints:
        if not _inside_perimeter(url, spec):
            yield Violation(loc, f"{what} {url!r} is outside the air gap: its host is not one of the perimeter's "
                            f"hosts ({hosts})", rule, fix)


WIDEST_PREFIX = {4: 8, 6: 32}
"""The widest network a spec may open egress to or an endpoint to: an IPv4 /8, an IPv6 /32. Anything wider
(0.0.0.0/0, ::/0) is "the internet", which an egress allow or an endpoint allowlist must never mean."""


def network_ranges(spec: PlatformSpec) -> Iterator[Violation]:
    import ipaddress

    ranges: list[tuple[tuple[str | int, ...], str]] = [(("airgap", "mirror", "cidrs", i), cidr) for i, cidr in
              enumerate(spec.airgap.mirror.cidrs if spec.airgap.mirror else ())]
    ranges += [(("serving", "models", m, "repositoryCidrs", i), cidr)
               for m, model in enumerate(spec.serving.models) for i, cidr in enumerate(model.repository_cidrs)]
    for at, cidr in ranges:
        network = ipaddress.ip_network(cidr)
        if network.prefixlen < WIDEST_PREFIX[network.version]:
            yield Violation(at, f"{cidr} is wider than a /{WIDEST_PREFIX[network.version]}: egress there would "
                            "reach the internet", "cidr-too-wide", "list the exact networks (at most a "
                            f"/{WIDEST_PREFIX[network.version]} each)")
    target = spec.target
    if target.type != "existing" and spec.metadata.environment == "prod" and not target.private:
        for i, cidr in enumerate(target.authorized_networks):
            network = ipaddress.ip_network(cidr)
            if network.prefixlen < WIDEST_PREFIX[network.version]:
                yield Violation(("target", "authorizedNetworks", i), f"{cidr} opens the prod API endpoint to "
                                f"more than a /{WIDEST_PREFIX[network.version]}", "prod-endpoint-networks",
                                "list the networks that administer the cluster (a VPN, a bastion)")


def owned_values(spec: PlatformSpec) -> Iterator[Violation]:
    """A user `values` key that Plinth owns is an error, never silently overridden."""
    from plinth.modules.helm import HelmService, owned_conflicts, owned_paths
    from plinth.program import SERVICES, platform_context

    ctx = platform_context(spec)
    for _, service in SERVICES:
        if not (isinstance(service, type) and issubclass(service, HelmService)) or not service.enabled(spec):
            continue
        block = service.block(spec)
        owned = service.owned_values(block, ctx)
        for path in owned_conflicts(service.user_values(block), owned):
            key = ".".join(path)
            mine = [p for p in owned_paths(owned) if p == key or p.startswith(key + ".")]
            yield Violation((*service.spec_path, "values", *path),
                            f"{key} is set by Plinth ({', '.join(mine[:4])}{', ...' if len(mine) > 4 else ''}); "
                            f"a value here would be overridden", "values-owned-key",
                            f"remove it; the spec field or module README says how Plinth sets {key}")


_CREDENTIAL_KEY = re.compile(r"(password|passwd|passphrase|token|apikey|accesskey|secretkey|privatekey|clientsecret|"
                             r"sharedsecret|htpasswd|credentials?)$|^secret$")
"""A `values` key (lowercase, without `-` and `_`) that holds a credential: the credential word ends the key.
Keys naming where one is kept (passwordKey, credentialSecret, tokenTTL) do not match, nor do _REFERENCE."""
_REFERENCE = re.compile(r"existing|secretname|ref$|file$|path$")
"""Keys that name a Secret or file holding the credential (existingSecretAdminPassword, passwordFile)."""
_PEM_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def plaintext_secrets(spec: PlatformSpec) -> Iterator[Violation]:
    """A credential in `values` lands in the plan, the rendered manifests and the Pulumi state as plain text."""
    from plinth.modules.helm import HelmService
    from plinth.program import SERVICES, stack_secrets

    stack_keys = ", ".join(f"plinth:{key}" for key in stack_secrets())
    paths = {service.spec_path for _, service in SERVICES
             if isinstance(service, type) and issubclass(service, HelmService)}
    for spec_path in sorted(paths):
        block = _spec_block(spec, spec_path)
        if block is None:  # a block of another variant (target.autoscaler: eks only)
            continue
        for path, value in _strings(block.values, ()):
            key = path[-1].lower().replace("-", "").replace("_", "")
            if (_CREDENTIAL_KEY.search(key) and not _REFERENCE.search(key)) or _PEM_KEY.search(value):
                yield Violation((*spec_path, "values", *path), "a credential in plain text: it would be written "
                                "into the plan, the rendered manifests and the deployment's state",
                                "values-plaintext-secret",
                                "remove it; set it as a stack secret (`pulumi config set --secret plinth:<key> "
                                f"VALUE`; the keys: {stack_keys}), Plinth passes those to the charts, or point "
                                "the chart's existing-Secret key at a Secret kept in Vault")


def _spec_block(spec: PlatformSpec, spec_path: tuple[str, ...]):
    """The spec block at a path of YAML keys (aliases), or None where the spec has no such block."""
    block = spec
    for key in spec_path:
        field = next((n for n, f in type(block).model_fields.items() if (f.alias or n) == key), None)
        if field is None:
            return None
        block = getattr(block, field)
    return block


def _strings(value: object, path: tuple) -> Iterator[tuple[tuple, str]]:
    """(key path, value) of every non-empty string under a mapping key."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, str(key)))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from ((p, v) for p, v in _strings(item, path) if _PEM_KEY.search(v))
    elif isinstance(value, str) and value.strip() and path:
        yield path, value


def cilium_pod_cidr(spec: PlatformSpec) -> Iterator[Violation]:
    """Cilium's pod pool (existing targets) holds no network pods must reach outside the cluster: a packet to
    an address of the pool is routed to a pod, never to the mirror, the API server or an object store."""
    import ipaddress

    cilium, at = spec.network.cilium, ("network", "cilium", "podCidr")
    if not cilium.enabled:
        return
    if spec.target.type != "existing":
        if cilium.pod_cidr != DEFAULT_POD_CIDR:
            yield Violation(at, f"on {spec.target.type} pods take the target's addresses (eks: the VPC, gke: "
                            "target.podsCidr)", "cilium-pod-cidr-by-target", "remove network.cilium.podCidr")
        return
    pool = ipaddress.ip_network(cilium.pod_cidr)
    if pool.prefixlen > 22:
        yield Violation(at, f"{cilium.pod_cidr} is a /{pool.prefixlen}; each node takes a /24 of it, so it holds "
                        f"{2 ** max(24 - pool.prefixlen, 0)} node(s)", "cidr-valid",
                        "use a /22 or larger, e.g. 100.64.0.0/14")
    lb_ranges = [(("network", "loadBalancer", "ranges", i), "the Gateway's load-balancer range", r)
                 for i, r in enumerate(spec.network.load_balancer.ranges)]
    declared = [*_declared_networks(spec), *lb_ranges]
    for loc, what, network in declared:
        if any(net.overlaps(pool) for net in _address_networks(network)):
            yield Violation(loc, f"{what} {network} overlaps Cilium's pod address pool network.cilium.podCidr "
                            f"{cilium.pod_cidr}: its traffic would stay inside the cluster",
                            "cilium-pod-cidr-overlap", "set network.cilium.podCidr to a range no declared network "
                            "uses (default 100.64.0.0/14)")


def gateway_hosts_unique(spec: PlatformSpec) -> Iterator[Violation]:
    """Each host name on the platform Gateway has one owner (its own listener): a platform service
    (PlatformService.gateway_host) or the models."""
    from plinth.program import SERVICES

    owned = [(own.loc, own.host) for _, service in SERVICES if service.enabled(spec)
             for own in service.gateway_hosts(spec)]
    seen: dict[str, str] = {}
    for at, host in (*owned, (("serving", "hostname"), spec.serving.hostname)):
        if not host:
            continue
        if host in seen:
            yield Violation(at, f"{host!r} is already {seen[host]}'s host name on the platform Gateway",
                            "gateway-host-unique", "give each service its own host name")
        seen.setdefault(host, ".".join(at[:-1]))


def _is_address(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _address_networks(value: str) -> list:
    """The networks of a normalized address range (a CIDR, or first-last)."""
    import ipaddress

    if "-" in value:
        first, last = (ipaddress.ip_address(part) for part in value.split("-", 1))
        return list(ipaddress.summarize_address_range(first, last))
    return [ipaddress.ip_network(value)]


def _yaml_path(where: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in where).lstrip(".")


def _declared_networks(spec: PlatformSpec) -> Iterator[tuple[tuple, str, str]]:
    """Networks the spec declares outside the cluster (not the load-balancer ranges): (where, what, network)."""
    mirror = spec.airgap.mirror
    for index, cidr in enumerate(mirror.cidrs if mirror else ()):
        yield ("airgap", "mirror", "cidrs", index), "the mirror network", cidr
    api = spec.network.cilium.api_server
    if api is not None and _is_address(api.host):  # a host name: its address is not in the spec
        yield ("network", "cilium", "apiServer", "host"), "the API server", api.host
    for m, model in enumerate(spec.serving.models):
        for index, cidr in enumerate(model.repository_cidrs):
            yield ("serving", "models", m, "repositoryCidrs", index), f"model {model.name}'s repository", cidr


def load_balancer_rules(spec: PlatformSpec) -> Iterator[Violation]:
    lb, at, target = spec.network.load_balancer, ("network", "loadBalancer"), spec.target
    cilium = spec.network.cilium
    if target.type == "existing":
        if cilium.enabled and cilium.gateway_api and lb.mode == "l2" and not lb.ranges:
            yield Violation((*at, "ranges"), "the platform Gateway is a LoadBalancer Service: on an existing "
                            "cluster it gets no address without ranges", "load-balancer-ranges",
                            "list addresses reserved for it on the nodes' network (e.g. ranges: [10.20.0.240/28]), "
                            "or set mode: external when MetalLB or your own BGP setup assigns them")
        if lb.mode == "external":
            for key in ("ranges", "interfaces"):
                if getattr(lb, key):
                    yield Violation((*at, key), f"{key} are for mode l2; with external, something else assigns "
                                    "and announces the addresses", "load-balancer-mode",
                                    f"remove {key}, or set mode: l2")
        if lb.public or lb.public_reason:
            yield Violation((*at, "public" if lb.public else "publicReason"), "public and publicReason are for eks "
                            "and gke: on an existing cluster the ranges decide who reaches the Gateway",
                            "load-balancer-public", "remove public and publicReason")
    else:
        for key in ("ranges", "interfaces"):
            if getattr(lb, key):
                yield Violation((*at, key), f"on {target.type} the cloud's load balancer gives the Gateway its "
                                "address", "load-balancer-by-target", f"remove {key}")
        if lb.public and not lb.public_reason:
            yield Violation((*at, "publicReason"), "a public Gateway needs a reason: the platform is private "
                            "by default", "public-load-balancer-reason",
                            "say why models must be reachable from the internet, or remove public")
        if lb.public_reason and not lb.public:
            yield Violation((*at, "publicReason"), "a reason for a public Gateway, but the Gateway is internal",
                            "public-load-balancer-reason", "set public: true, or remove publicReason")
        if lb.public and target.type == "eks" and target.egress == "none":
            yield Violation((*at, "public"), "an internet-facing load balancer needs public subnets, and egress "
                            "none has none", "public-load-balancer-subnets", "set target.egress: nat, or remove public")
    networks = [_address_networks(r) for r in lb.ranges]
    for i, nets in enumerate(networks):
        for j in range(i):
            if any(a.overlaps(b) for a in nets for b in networks[j]):
                yield Violation((*at, "ranges", i), f"{lb.ranges[i]} overlaps {lb.ranges[j]}",
                                "load-balancer-ranges-overlap", "give each range its own addresses")
        for where, _, cidr in _declared_networks(spec):
            if any(a.overlaps(b) for a in nets for b in _address_networks(cidr)):
                yield Violation((*at, "ranges", i), f"{lb.ranges[i]} overlaps {cidr} "
                                f"({_yaml_path(where)})", "load-balancer-ranges-overlap",
                                "take load-balancer addresses no other network of the spec uses")


RULES = (reserved_namespaces, model_rules, gpu_quota, gpu_rules, governance, identity_rules, service_rules,
         airgap_bundles, target_sdk, cloud_target, service_needs, service_own_rules, load_balancer_rules,
         owned_values, plaintext_secrets, cilium_pod_cidr, gateway_hosts_unique, airgap_perimeter, network_ranges)
