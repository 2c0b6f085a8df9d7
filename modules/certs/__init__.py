"""cert-manager and the platform ClusterIssuer `plinth-ca` every platform certificate comes from."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import ImageRef
from plinth.context import ISSUER, PlatformContext, resource_name
from plinth.modules.helm import HelmService
from plinth.service import Need, Peer
from plinth.spec import models
from plinth.vocabulary import HTTP_LISTENER, gateway_parent_ref

SELF_SIGNED = "plinth-selfsigned"
CA_SECRET = "plinth-ca"
ACME_ACCOUNT_SECRET = "plinth-acme-account"


class CertManager(HelmService):
    """cert-manager with its CRDs, and the platform ClusterIssuer (plinth:certs:CertManager)."""

    type_token = "plinth:certs:CertManager"
    chart_key = "cert-manager"
    spec_path = ("certificates", "certManager")
    capability = "cert-manager"
    capability_fix = "enable certificates.certManager"

    @classmethod
    def needs(cls, spec) -> tuple[Need, ...]:
        certs = spec.certificates.cert_manager
        if certs.enabled and certs.issuer.type == "acme":
            return (Need("gateway", ("certificates", "certManager", "issuer", "type"),
                         "ACME HTTP-01 is answered through the platform Gateway", "acme",
                         "use issuer type selfSigned or ca"),)
        return ()

    @classmethod
    def ingress(cls, block: models.CertManager, ctx: PlatformContext) -> tuple[Peer, ...]:
        return (cls.webhook(10250),)  # the webhook's securePort

    @classmethod
    def owned_values(cls, block: models.CertManager, ctx: PlatformContext) -> dict:
        replicas = 2 if ctx.prod_like else 1
        # The chart composes <imageRegistry>/<imageNamespace>/<name>: the mirror rule keeps the path.
        upstream = ImageRef.parse(cls.chart().images[0])
        return {
            "imageRegistry": ctx.mirror_registry or upstream.registry,
            "imageNamespace": upstream.repository.rsplit("/", 1)[0],
            "global": {"imagePullSecrets": [{"name": s} for s in ctx.image_pull_secrets]},
            # CRDs with the chart, kept on uninstall (certificates outlive a reinstall).
            "crds": {"enabled": True, "keep": True},
            "replicaCount": replicas,
            # Every Deployment of the chart (controller, webhook, cainjector) keeps one pod through a drain.
            "webhook": {"replicaCount": replicas, "podDisruptionBudget": {"enabled": replicas > 1}},
            "cainjector": {"replicaCount": replicas, "podDisruptionBudget": {"enabled": replicas > 1}},
            "podDisruptionBudget": {"enabled": replicas > 1},
            "prometheus": {"enabled": ctx.monitoring, "servicemonitor": {"enabled": ctx.monitoring}},
        }

    def objects(self, name: str, block: models.CertManager, ctx: PlatformContext,
                after: pulumi.ResourceOptions) -> None:
        issuer = block.issuer
        if issuer.type == "selfSigned":
            # A self-signed root issues the platform CA; the CA issuer signs everything else.
            root = _cluster_issuer(resource_name(name, "selfsigned"), ctx.metadata(SELF_SIGNED, name),
                                   {"selfSigned": {}}, after)
            ca = k8s.apiextensions.CustomResource(
                resource_name(name, "ca"),
                api_version="cert-manager.io/v1",
                kind="Certificate",
                metadata=ctx.metadata(CA_SECRET, name, namespace=self.chart().namespace),
                spec={
                    "isCA": True,
                    "commonName": f"{ctx.platform} platform CA",
                    "secretName": CA_SECRET,
                    "duration": "87600h",
                    "privateKey": {"algorithm": "ECDSA", "size": 256},
                    "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": SELF_SIGNED},
                },
                opts=pulumi.ResourceOptions.merge(after, pulumi.ResourceOptions(depends_on=[root])),
            )
            spec: dict = {"ca": {"secretName": CA_SECRET}}
            opts = pulumi.ResourceOptions.merge(after, pulumi.ResourceOptions(depends_on=[ca]))
        elif issuer.type == "ca":
            spec, opts = {"ca": {"secretName": issuer.ca_secret}}, after
        else:
            spec = {"acme": {
                # An acme issuer has its acme block (validated).
                "server": issuer.acme.server,  # type: ignore[union-attr]
                "email": issuer.acme.email,  # type: ignore[union-attr]
                "privateKeySecretRef": {"name": ACME_ACCOUNT_SECRET},
                # The platform Gateway's port-80 listener (plinth:network:PlatformGateway adds it for ACME).
                "solvers": [{"http01": {"gatewayHTTPRoute": {"parentRefs": [gateway_parent_ref(HTTP_LISTENER)]}}}],
            }}
            opts = after
        self.issuer = _cluster_issuer(resource_name(name, "issuer"), ctx.metadata(ISSUER, name), spec, opts)


def _cluster_issuer(name: str, metadata: dict, spec: dict, opts: pulumi.ResourceOptions):
    return k8s.apiextensions.CustomResource(name, api_version="cert-manager.io/v1", kind="ClusterIssuer",
                                            metadata=metadata, spec=spec, opts=opts)


def certificate(name: str, metadata: dict, secret: str, dns_names: list[str], usages: list[str],
                opts: pulumi.ResourceOptions, ip_addresses: tuple[str, ...] = ()) -> k8s.apiextensions.CustomResource:
    """A cert-manager Certificate from the platform ClusterIssuer (renewed by cert-manager, never by a render)."""
    return k8s.apiextensions.CustomResource(
        name,
        api_version="cert-manager.io/v1",
        kind="Certificate",
        metadata=metadata,
        spec={
            "secretName": secret,
            "commonName": dns_names[0],
            "dnsNames": dns_names,
            **({"ipAddresses": list(ip_addresses)} if ip_addresses else {}),
            "usages": ["digital signature", "key encipherment", *usages],
            "duration": "2160h",
            "renewBefore": "360h",
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": ISSUER},
        },
        opts=opts,
    )


def trust_bundle(name: str, metadata: dict, opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
    """The platform CA in a namespace whose clients need it: a client certificate from the platform ClusterIssuer
    whose Secret (`metadata`'s name and namespace) carries the issuing CA as `ca.crt`, which cert-manager keeps
    current. Clients mount that key only; the certificate itself goes unused."""
    secret, namespace = metadata["name"], metadata["namespace"]
    return certificate(name, metadata, secret, [f"{secret}.{namespace}.trust"], ["client auth"], opts)
