"""The ONE Helm service mechanism every chart-based service uses.

A service is a subclass of `HelmService` that names its catalog chart, the
YAML path of its spec block, and computes the values Plinth owns from its
block and the shared context. The mechanism does the rest, the same way for
every chart: the service's namespace (Pod Security level, mirror pull secret,
air-gap egress policy), the chart from the configured chart source, the values
(Plinth's over the user's `values`; the rules pass refuses a user value that
sets an owned key, so nothing is silently overridden), and explicit ordering
(`depends_on` the services before it: CRDs first). Why `helm.v3.Release`
rather than `helm.v4.Chart`: see README.md beside this file.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from typing import Any, ClassVar

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import CHARTS, Chart, CrdBundle, ImageRef
from plinth.context import PULL_SECRET, PlatformContext, resource_name
from plinth.objects import airgap_egress_policy, children, namespace, platform_ingress, pull_secret
from plinth.service import Peer, PlatformService
from plinth.spec.models import PlatformSpec

SYSTEM_NAMESPACES = frozenset({"kube-system"})
"""Namespaces that exist in every cluster: never created or owned by Plinth."""


# --- values ---------------------------------------------------------------------------------------


def merge_values(user: dict, owned: dict) -> dict:
    """The release's values: the user's escape hatch with Plinth's owned values over it (sorted keys)."""
    out = dict(user)
    for key, value in owned.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_values(out[key], value)
        else:
            out[key] = value
    return {k: out[k] for k in sorted(out)}


def owned_conflicts(user: dict, owned: dict, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Paths of user values that would set (or replace a map holding) a key Plinth owns."""
    for key, value in user.items():
        if key not in owned:
            continue
        if isinstance(value, dict) and isinstance(owned[key], dict):
            yield from owned_conflicts(value, owned[key], (*path, key))
        else:
            yield (*path, key)


def owned_paths(owned: dict, path: tuple[str, ...] = ()) -> Iterator[str]:
    """Every owned leaf as a dotted path (for docs and error messages)."""
    for key, value in sorted(owned.items()):
        if isinstance(value, dict) and value:
            yield from owned_paths(value, (*path, key))
        else:
            yield ".".join((*path, key))


def image_values(ref: str, ctx: PlatformContext) -> dict:
    """A chart's usual image keys for a catalog image, mirrored in air-gap mode: {repository, tag}."""
    image = ImageRef.parse(ref).mirrored(ctx.mirror_registry)
    return {"repository": f"{image.registry}/{image.repository}", "tag": image.tag}


# --- chart source ---------------------------------------------------------------------------------


def source_kind(source: str | None) -> str:
    """public | oci | https | directory."""
    if not source:
        return "public"
    if source.startswith("oci://"):
        return "oci"
    if source.startswith(("https://", "http://")):
        return "https"
    return "directory"


def release_chart_args(chart: Chart, source: str | None) -> dict:
    """`chart`, `version` and `repository_opts` of a Release for the spec's chart source."""
    kind = source_kind(source)
    if kind == "public":
        if chart.repo.startswith("oci://"):
            return {"chart": f"{chart.repo}/{chart.name}", "version": chart.version}
        return {"chart": chart.name, "version": chart.version,
                "repository_opts": k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo)}
    if kind == "oci":
        return {"chart": f"{source.rstrip('/')}/{chart.name}",  # type: ignore[union-attr]  # oci: a source
                "version": chart.version}
    if kind == "https":
        return {"chart": chart.name, "version": chart.version,
                "repository_opts": k8s.helm.v3.RepositoryOptsArgs(repo=source)}
    # A local archive carries its version; `version` would make Helm look for a repository.
    return {"chart": chart_archive(chart, source)}  # type: ignore[arg-type]  # a directory source


def chart_archive(chart: Chart, directory: str) -> str:
    return os.path.join(directory, "charts", chart.archive)


def bundle_files(bundle: CrdBundle, ctx: PlatformContext) -> list[str]:
    """The manifest files (or URL) of a CRD bundle: a directory chart source, the air-gap file mirror, or upstream."""
    if source_kind(ctx.chart_source) == "directory":
        # A directory source is a path, never None.
        pattern = os.path.join(ctx.chart_source, "crds", bundle.directory, "*.yaml")  # type: ignore[arg-type]
        return sorted(glob.glob(pattern)) or [pattern]
    if ctx.files_mirror:
        return [bundle.mirrored_url(ctx.files_mirror)]
    return [bundle.url]


# --- the component --------------------------------------------------------------------------------


class HelmService(PlatformService):
    """Base of every chart-based service: namespace, release, then the service's own objects."""

    type_token: ClassVar[str]
    """Pulumi type token, plinth:<area>:<Class>."""
    chart_key: ClassVar[str]
    """Key of the chart in plinth.catalog.CHARTS."""
    spec_path: ClassVar[tuple[str, ...]]
    """YAML path of the service's block in the spec (e.g. network.cilium); the block has `enabled` and `values`."""
    pod_security: ClassVar[str] = "restricted"
    """Pod Security level of the service's namespace."""
    awaits_readiness: ClassVar[bool] = True
    """Whether `pulumi up` waits for the release's workloads to become ready."""
    shares_namespace: ClassVar[bool] = False
    """The chart's namespace is another service's, installed before it (its namespace, network policies and
    pull secret come from that one)."""

    release: k8s.helm.v3.Release

    @staticmethod
    def webhook(port: int) -> Peer:
        """The API server calling the service's admission or conversion webhook on `port`."""
        return Peer("apiserver", ports=(port,), entity="kube-apiserver")

    @classmethod
    def isolated_pods(cls, block: Any, ctx: PlatformContext) -> str | None:
        """A label whose pods the namespace's own pods do not reach through `allow-same-namespace` (a database's
        instances): the service admits their clients with a policy of its own. Default: none."""
        return None

    @classmethod
    def airgap_egress(cls, block: Any, ctx: PlatformContext) -> tuple[Peer, ...]:
        """Air-gap under Cilium: entities (nodes) the namespace's pods reach besides pods, the declared CIDRs
        and the API server. Default: none."""
        return ()

    @classmethod
    def block(cls, spec: PlatformSpec) -> Any:
        node = spec
        for key in cls.spec_path:
            node = getattr(node, _snake(key))
        return node

    @classmethod
    def enabled(cls, spec: PlatformSpec) -> bool:
        return bool(cls.block(spec).enabled)

    @classmethod
    def holds_data(cls, block: Any, ctx: PlatformContext) -> bool:
        """Whether the release itself holds data that `pulumi destroy` must not delete (storage.deleteDataOnDestroy
        off): then destroy leaves the release, its namespace and objects installed and the stack forgets them.
        Default: no (a service's volumes are kept by their StorageClass, not by keeping the service)."""
        return False

    @classmethod
    def owned_values(cls, block: Any, ctx: PlatformContext) -> dict:
        """The values Plinth owns for this service (pure: from the spec block and the context)."""
        raise NotImplementedError

    @classmethod
    def chart(cls) -> Chart:
        return CHARTS[cls.chart_key]

    @classmethod
    def images(cls, block: Any, ctx: PlatformContext) -> tuple[str, ...]:
        """The upstream images the release runs with Plinth's values (what `plinth images` lists)."""
        return cls.chart().images

    @classmethod
    def user_values(cls, block: Any) -> dict:
        """The spec's `values` escape hatch for this chart."""
        return dict(block.values)

    @classmethod
    def release_values(cls, block: Any, ctx: PlatformContext) -> dict:
        return merge_values(cls.user_values(block), cls.owned_values(block, ctx))

    @classmethod
    def releases(cls, block: Any, ctx: PlatformContext) -> tuple[tuple[str, str, dict], ...]:
        """(resource name suffix, Helm release name, values) of each release of the chart. Default: one, named
        as the chart, with `release_values`."""
        return (("", cls.chart().name, cls.release_values(block, ctx)),)

    def __init__(self, name: str, block: Any, ctx: PlatformContext, opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.type_token, name, None, opts)
        chart = self.chart()
        component = name
        child = children(self, ctx, opts)
        if self.holds_data(block, ctx):
            child = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(retain_on_delete=True))
        waits: list[pulumi.Resource] = []
        in_ns = child
        if chart.namespace not in SYSTEM_NAMESPACES and not self.shares_namespace:
            ns = namespace(name, chart.namespace, component, ctx, child, pod_security=self.pod_security)
            waits.append(ns)
            in_ns = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[ns]))
            airgap_egress_policy(name, ctx.metadata("airgap-egress", component, namespace=chart.namespace),
                                 ctx, in_ns, self.airgap_egress(block, ctx))
            platform_ingress(name, chart.namespace, component, self.namespace_peers(block, ctx, chart.namespace),
                             ctx, in_ns, isolated=self.isolated_pods(block, ctx))
        # Only a release that runs images pulls; one pull secret per namespace (kube-system is shared).
        if self.images(block, ctx) and not self.shares_namespace:
            secret = pull_secret(name, ctx.metadata(PULL_SECRET, component, namespace=chart.namespace), ctx, in_ns)
            if secret:
                waits.append(secret)
        waits += self.prerequisites(name, block, ctx, in_ns)
        releases = [k8s.helm.v3.Release(
            resource_name(name, suffix) if suffix else resource_name(name),
            k8s.helm.v3.ReleaseArgs(
                name=release_name,
                namespace=chart.namespace,
                values=values,
                max_history=10,
                # Without nodes nothing becomes ready (spec `testing`); Helm hooks always run.
                skip_await=ctx.skip_await or not self.awaits_readiness,
                **({"timeout": ctx.await_timeout} if ctx.await_timeout is not None else {}),
                **release_chart_args(chart, ctx.chart_source),
            ),
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=waits)),
        ) for suffix, release_name, values in self.releases(block, ctx)]
        self.release = releases[0]
        self.objects(name, block, ctx, pulumi.ResourceOptions.merge(
            child, pulumi.ResourceOptions(depends_on=releases)))
        self.register_outputs({"release": self.release.name, **self.endpoints(block, ctx)})

    def prerequisites(self, name: str, block: Any, ctx: PlatformContext,
                      opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        """Objects in the service's namespace its release reads (secrets, dashboards); default: none."""
        return []

    def objects(self, name: str, block: Any, ctx: PlatformContext, opts: pulumi.ResourceOptions) -> None:
        """Objects the service adds after its release (custom resources of its CRDs); default: none."""


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)
