"""Air gap: every image from the mirror, every chart and manifest bundle from inside the perimeter."""

from __future__ import annotations

from plinth.governance.policies.core import HELM_RELEASE, MANDATORY, Policy, images, value_registries


def _mirror_only(subjects, platform):
    if not platform.mirror:
        return
    host = platform.mirror.rstrip("/") + "/"
    for s in subjects:
        for ref in images(s):
            if not ref.startswith(host):
                yield s, f"image {ref} is not from the mirror {platform.mirror}"
        if s.type == HELM_RELEASE:
            for registry in value_registries(s.props.get("values") or {}):
                if registry != platform.mirror and not registry.startswith(host):
                    yield s, f"image registry {registry} is not the mirror {platform.mirror}"


def _airgap_inside(subjects, platform):
    yield from _mirror_only(subjects, platform)
    yield from _chart_sources(subjects, platform)


def url_host(url: str) -> str | None:
    """host[:port] of a URL (oci://, https://), lower case; None for a local path."""
    from urllib.parse import urlsplit

    if "://" not in url:
        return None
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "?"
    host = f"[{host}]" if host and ":" in host else host or "?"
    return f"{host}:{port}" if port is not None else host


def _chart_sources(subjects, platform):
    """Air gap: every chart a release pulls and every manifest bundle comes from a host inside the perimeter."""
    if not platform.mirror:
        return
    inside = set(platform.perimeter) or {platform.mirror.split("/", 1)[0]}
    for s in subjects:
        if s.type == HELM_RELEASE:
            chart = str(s.props.get("chart") or "")
            repo = str((s.props.get("repositoryOpts") or {}).get("repo") or "")
            for source in (chart, repo):
                host = url_host(source) if source else None
                if host is not None and host not in inside:
                    yield s, f"chart source {source} is outside the perimeter ({', '.join(sorted(inside))})"
        elif s.type == "kubernetes:yaml/v2:ConfigGroup":
            for f in s.props.get("files") or []:
                host = url_host(str(f))
                if host is not None and host not in inside:
                    yield s, f"manifest {f} is outside the perimeter ({', '.join(sorted(inside))})"


AIRGAP_MIRROR_ONLY_POLICY = Policy(
    "airgap-mirror-only", "With air-gap on, every image (Plinth's and every chart's) comes from the mirror, "
    "and every chart and manifest bundle from a host inside the perimeter.",
    "set the image through plinth.catalog's mirror rule (ImageRef.mirrored); take charts from "
    "airgap.mirror.charts", MANDATORY, _airgap_inside)
