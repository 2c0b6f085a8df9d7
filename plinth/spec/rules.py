"""Cross-field and cross-service rules: one pure pass that reports every violation.

Each rule yields Violation(loc, message, rule, fix); `loc` is a path of YAML
keys and list indexes into the merged spec, mapped back to file:line:col by
the loader. Rules never raise and never stop at the first problem.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from plinth.catalog import PLATFORM_NAMESPACES
from plinth.modules.cluster.facts import target_facts, vault_uses_target_key
from plinth.spec.models import PlatformSpec, quantity_value

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
RESERVED_NAMESPACES = {"default", "kube-system", "kube-public", "kube-node-lease", *PLATFORM_NAMESPACES.values()}

# Services the spec already describes whose module has not landed yet: enabling
# one must fail loudly instead of planning nothing.
NOT_YET_BUILT: dict[tuple[str, ...], str] = {}


@dataclass(frozen=True)
class Violation:
    loc: tuple
    message: str
    rule: str
    fix: str


def check_rules(spec: PlatformSpec) -> list[Violation]:
    return [v for rule in RULES for v in rule(spec)]


def reserved_namespaces(spec: PlatformSpec) -> Iterator[Violation]:
    for index, team in enumerate(spec.teams):
        if team.name in RESERVED_NAMESPACES:
            yield Violation(("teams", index, "name"), f"{team.name!r} is a reserved namespace",
                            "reserved-namespace", "choose another team name")


def model_rules(spec: PlatformSpec) -> Iterator[Violation]:
    teams = {team.name: team for team in spec.teams}
    for index, model in enumerate(spec.serving.models):
        at = ("serving", "models", index)
        if model.team not in teams:
            yield Violation((*at, "team"), f"team {model.team!r} is not defined",
                            "model-team-exists", f"add a team named {model.team!r} under teams, or fix the name")
        if model.runtime == "triton" and not model.model_repository and spec.target.type == "existing":
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
        if model.runtime == "bentoml" and model.image and _has_tag(model.image):
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
    if model.runtime != "triton":
        return
    facts = target_facts(spec)
    # Cilium reaches the target's own object store by name (modules/cluster/differences.object_store_egress).
    by_name = spec.network.cilium.enabled and facts.in_object_store(repository)
    if not repository:
        if facts.cloud and not by_name and not model.repository_cidrs:
            yield Violation((*at, "modelRepository"), f"the model's pods cannot reach the models bucket: team "
                            "namespaces are default-deny for egress", "model-repository-egress",
                            "enable network.cilium (egress to the object store by name), or set repositoryCidrs")
        return
    scheme, _, rest = repository.partition("://")
    if scheme == "pvc":
        claim = rest.split("/", 1)[0]
        if not _DNS_SUBDOMAIN.match(claim) or ".." in rest.split("/"):
            yield Violation((*at, "modelRepository"), f"{repository!r} does not name a claim and a path inside it",
                            "triton-model-repository", "use pvc://<claim>/<path>, the claim in the team's namespace")
    elif not model.repository_cidrs and not by_name:
        yield Violation((*at, "modelRepository"), f"the model's pods cannot reach {scheme}:// storage: team "
                        "namespaces are default-deny for egress", "model-repository-egress",
                        "set repositoryCidrs to the object store's networks, or use a pvc:// repository")


def _has_tag(image: str) -> bool:
    return "@" in image or ":" in image.rsplit("/", 1)[-1]


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
        cpu[model.team] += quantity_value(model.cpu) * replicas
        memory[model.team] += quantity_value(model.memory) * replicas
    for index, team in enumerate(spec.teams):
        if needed[team.name] > team.quota.gpu:
            yield Violation(("teams", index, "quota", "gpu"),
                            f"the team's models need up to {needed[team.name]} GPUs but the quota is "
                            f"{team.quota.gpu}", "gpu-quota-fits", "raise quota.gpu or lower model replicas/gpu")
        for resource, used, quota in (("cpu", cpu, team.quota.cpu), ("memory", memory, team.quota.memory)):
            if used[team.name] > quantity_value(quota) * (1 + 1e-9):
                yield Violation(("teams", index, "quota", resource),
                                f"the team's models request up to {used[team.name]:g} {resource} (stable at its "
                                f"maximum, canary and shadow) but the quota is {quota}", "serving-quota-fits",
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


def available_modules(spec: PlatformSpec) -> Iterator[Violation]:
    raw = spec.model_dump(by_alias=True)
    for path, label in NOT_YET_BUILT.items():
        block = raw
        for key in path:
            block = block[key]
        if block.get("enabled"):
            yield Violation((*path, "enabled"), f"{label} is described by the spec but its module is not built yet",
                            "module-available", "set enabled: false for now")


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
        elif pool.gpu and (pool.gpu.type, pool.gpu.count) != (known.accelerator, known.count):
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
    ranges = {"subnetCidr": target.subnet_cidr, "podsCidr": target.pods_cidr,
              "servicesCidr": target.services_cidr, "controlPlaneCidr": target.control_plane_cidr}
    if ipaddress.ip_network(target.control_plane_cidr).prefixlen != 28:
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
    if cilium.enabled and (cilium.hubble or cilium.gateway_api) and not certs.enabled:
        yield Violation(("network", "cilium", "enabled"), "Hubble and the platform Gateway take their TLS "
                        "certificates from cert-manager, which is off", "cilium-needs-cert-manager",
                        "enable certificates.certManager, or set hubble and gatewayApi to false")
    vault = spec.secrets.vault
    if vault.enabled and not certs.enabled:
        yield Violation(("secrets", "vault", "enabled"), "Vault's listener takes its TLS certificate from "
                        "cert-manager, which is off", "vault-needs-cert-manager", "enable certificates.certManager")
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
    if certs.enabled and issuer.type == "acme" and not (cilium.enabled and cilium.gateway_api):
        yield Violation(("certificates", "certManager", "issuer", "type"), "ACME HTTP-01 is answered through the "
                        "platform Gateway, which is off", "acme-needs-gateway",
                        "enable network.cilium with gatewayApi: true, or use issuer type selfSigned or ca")
    if spec.airgap.enabled and certs.enabled and issuer.type == "acme" and issuer.acme and \
            not _inside_perimeter(issuer.acme.server, spec):
        yield Violation(("certificates", "certManager", "issuer", "acme", "server"), "air-gap mode needs an ACME "
                        "server inside the perimeter", "airgap-acme", "use an internal ACME CA, or issuer type ca")
    if spec.airgap.enabled and spec.charts.source and spec.charts.source.startswith(("https://", "http://")) and \
            not _inside_perimeter(spec.charts.source, spec):
        yield Violation(("charts", "source"), "air-gap mode takes charts from the mirror, not a public repository",
                        "airgap-chart-source", "remove charts.source (airgap.mirror.charts is used) or point it "
                        "inside the perimeter")


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
    """An air-gap URL is inside the perimeter when its host is the mirror's host or a sub-domain of its domain."""
    mirror = spec.airgap.mirror
    if mirror is None:
        return False
    host = url.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    mirror_host = mirror.registry.split("/", 1)[0].split(":", 1)[0]
    domain = mirror_host.split(".", 1)[-1]
    return host == mirror_host or host.endswith("." + domain)


def owned_values(spec: PlatformSpec) -> Iterator[Violation]:
    """A user `values` key that Plinth owns is an error, never silently overridden."""
    from plinth.context import PlatformContext
    from plinth.modules.helm import HelmService, owned_conflicts, owned_paths
    from plinth.program import SERVICES

    ctx = PlatformContext.from_spec(spec)
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


def python_index(spec: PlatformSpec) -> Iterator[Violation]:
    index, at = spec.registry.python_index, ("registry", "pythonIndex")
    if index.enabled and index.url:
        yield Violation((*at, "url"), "the Python index is both run by Plinth (enabled) and an existing one (url)",
                        "python-index-one-source", "remove url to run Plinth's index, or set enabled: false to "
                        "point the teams at the index at url")
    if not index.hostname:
        return
    if not index.enabled:
        yield Violation((*at, "hostname"), "a host name exposes the index Plinth runs, which is off",
                        "python-index-hostname", "remove hostname, or set enabled: true")
        return
    yield from _gateway_host(spec, at, index.hostname, "the index's", "python-index",
                             "teams use the in-cluster Service either way")


def _gateway_host(spec: PlatformSpec, at: tuple, hostname: str, what: str, rule_prefix: str,
                  without: str) -> Iterator[Violation]:
    """A service's `hostname` is exposed through the platform Gateway: the Gateway must be on and its
    listener (and certificate) must serve the name. `without` says what removing the hostname leaves."""
    cilium, listener = spec.network.cilium, spec.network.gateway.hostname
    if not (cilium.enabled and cilium.gateway_api):
        yield Violation((*at, "hostname"), f"{what} host name is served by the platform Gateway, which is off",
                        f"{rule_prefix}-needs-gateway", "enable network.cilium with gatewayApi: true, or remove "
                        f"hostname ({without})")
    elif not _listener_serves(listener, hostname):
        yield Violation((*at, "hostname"), f"{hostname!r} is not a name the Gateway listener {listener!r} "
                        "and its certificate serve", f"{rule_prefix}-hostname",
                        f"use one name under {listener.removeprefix('*.')}" if listener.startswith("*.")
                        else f"use {listener}, or change network.gateway.hostname")


def _listener_serves(listener: str, host: str) -> bool:
    """A wildcard listener (and its certificate) covers exactly one more label; a plain one, only itself."""
    if listener.startswith("*."):
        label, _, rest = host.partition(".")
        return bool(label) and rest == listener[2:]
    return host == listener


def serving_rules(spec: PlatformSpec) -> Iterator[Violation]:
    serving, at = spec.serving, ("serving",)
    cilium = spec.network.cilium
    if serving.models and cilium.enabled and cilium.gateway_api and not serving.hostname:
        yield Violation((*at, "hostname"), "models are routed through the platform Gateway, which needs their "
                        "host name", "serving-hostname-required", "set serving.hostname to one name under "
                        f"{spec.network.gateway.hostname.removeprefix('*.')}")
    if serving.hostname:
        yield from _gateway_host(spec, at, serving.hostname, "the models'", "serving",
                                 "models are then reachable in-cluster only")
    if serving.models and not spec.monitoring.enabled:
        yield Violation((*at, "models"), "every served model has alerts (a PrometheusRule, required by the "
                        "served-model-reliability policy) and monitoring is off", "serving-needs-monitoring",
                        "enable monitoring")
    drift = spec.monitoring.drift
    receivers = [receiver.name for receiver in spec.monitoring.alertmanager.receivers]
    if drift.receiver and drift.receiver not in receivers:
        yield Violation(("monitoring", "drift", "receiver"), f"receiver {drift.receiver!r} is not defined",
                        "drift-receiver-exists", "add it under monitoring.alertmanager.receivers"
                        + (f" (defined: {', '.join(receivers)})" if receivers else "") + ", or fix the name")


def harbor_rules(spec: PlatformSpec) -> Iterator[Violation]:
    harbor, at = spec.registry.harbor, ("registry", "harbor")
    if not harbor.enabled:
        return
    if not spec.certificates.cert_manager.enabled:
        yield Violation((*at, "enabled"), "Harbor's token-signing key comes from a cert-manager Certificate, and "
                        "cert-manager is off", "harbor-needs-cert-manager", "enable certificates.certManager")
    if harbor.hostname:
        yield from _gateway_host(spec, at, harbor.hostname, "Harbor's", "harbor",
                                 "Harbor is then reachable in-cluster only")

RULES = (reserved_namespaces, model_rules, gpu_quota, gpu_rules, governance, service_rules, airgap_bundles,
         available_modules, cloud_target, python_index, harbor_rules, serving_rules,
         owned_values)
