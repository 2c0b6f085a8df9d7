"""What to mirror for a spec: every image, chart and CRD bundle its enabled services use.

Built from the same catalog and the same mirror rule (`plinth.catalog.ImageRef.mirrored`)
the program's values use, so what `plinth images` lists is what the rendered charts pull.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from plinth.catalog import CrdBundle, ImageRef
from plinth.spec.models import PlatformSpec


@dataclass(frozen=True)
class MirrorImage:
    service: str
    source: str
    """Upstream reference, tag and digest where pinned (copy from here)."""
    target: str | None
    """Reference in the mirror, digest kept where pinned: what the rendered charts pull (copy by tag with a
    digest-preserving tool, then the digest resolves); the source itself for an image already in the mirror;
    None without air-gap (pulled from its source)."""


@dataclass(frozen=True)
class MirrorChart:
    service: str
    name: str
    version: str
    repository: str
    target: str | None
    """The chart source the plan pulls it from (oci://, https:// or a directory: spec charts.source, else in
    air-gap mode airgap.mirror.charts); None when it comes from its public repository."""


@dataclass(frozen=True)
class MirrorBundle:
    service: str
    name: str
    version: str
    url: str
    target: str | None


@dataclass(frozen=True)
class MirrorList:
    images: tuple[MirrorImage, ...]
    charts: tuple[MirrorChart, ...]
    bundles: tuple[MirrorBundle, ...]

    def why_empty(self, spec: PlatformSpec) -> str | None:
        """What to tell a user looking at an empty list, or at one with nothing to copy."""
        if not (self.images or self.charts or self.bundles):
            return f"nothing to mirror: {spec.metadata.name} enables no service that pulls an image or a chart"
        if not spec.airgap.enabled:
            return ("air-gap is off: every TARGET is `-` (pulled from its source); with airgap.enabled and "
                    "airgap.mirror, each line says where to copy it")
        return None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    def to_text(self) -> str:
        """One line per artifact: `image SOURCE TARGET`, `chart REPO NAME VERSION TARGET`, `bundle URL TARGET`
        (TARGET `-`: pulled from its source)."""
        lines = [f"image {i.source} {i.target or '-'}" for i in self.images]
        lines += [f"chart {c.repository} {c.name} {c.version} {c.target or '-'}" for c in self.charts]
        lines += [f"bundle {b.url} {b.target or '-'}" for b in self.bundles]
        return "".join(line + "\n" for line in lines)


def mirror_list(spec: PlatformSpec) -> MirrorList:
    from plinth.modules.helm import HelmService
    from plinth.program import SERVICES, platform_context

    ctx = platform_context(spec)
    mirror = spec.airgap.mirror if spec.airgap.enabled else None
    images: dict[str, MirrorImage] = {}
    charts, bundles = [], []
    for name, service in SERVICES:
        if not service.enabled(spec):
            continue
        if isinstance(service, type) and issubclass(service, HelmService):
            chart = service.chart()
            charts.append(MirrorChart(name, chart.name, chart.version, chart.repo, ctx.chart_source))
        block = service.block(spec)
        # A chart's images, or those a service runs without a chart (plinth.catalog.IMAGES).
        for ref in service.images(block, ctx):
            image = ImageRef.parse(ref)
            # Your own images already in the mirror (a Bento) are their own target: nothing to copy.
            inside = mirror is not None and ref.startswith(mirror.registry.rstrip("/") + "/")
            target = (ref if inside else str(image.mirrored(mirror.registry))) if mirror else None
            images.setdefault(ref, MirrorImage(name, ref, target))
        for bundle in service.bundles(block, ctx):
            bundles.append(MirrorBundle(name, bundle.name, bundle.version, bundle.url, bundle_target(bundle, ctx)))
    return MirrorList(tuple(sorted(images.values(), key=lambda i: i.source)), tuple(charts), tuple(bundles))


def bundle_target(bundle: CrdBundle, ctx) -> str | None:
    """Where the plan takes a bundle from when not upstream (the order of plinth.modules.helm.bundle_files):
    a directory chart source's crds/<bundle>/, else the air-gap file mirror; None: its public URL."""
    import os

    from plinth.modules.helm import source_kind

    if source_kind(ctx.chart_source) == "directory":
        return os.path.join(ctx.chart_source, "crds", bundle.directory)
    return bundle.mirrored_url(ctx.files_mirror) if ctx.files_mirror else None
