"""The names every part of serving agrees on: tracks, Deployment and Service names, selectors, labels,
the model's path on the serving host."""

from __future__ import annotations

from typing import Any

from plinth.context import PlatformContext
from plinth.vocabulary import MODEL_LABEL

TRACK_LABEL = "plinth.dev/track"
"""stable, canary or shadow: which release of the model a pod, Service or metric belongs to."""
TRACKS = ("stable", "canary", "shadow")


def tracks(model) -> list[tuple[str, Any]]:
    """(track, release) of every release the model runs, stable first."""
    return [(track, release) for track, release in
            (("stable", model.stable), ("canary", model.canary), ("shadow", model.shadow)) if release]


def deployment_name(model, track: str) -> str:
    return f"{model.name}-{track}"


def service_name(model, track: str) -> str:
    """Stable keeps the model's own name: the in-cluster address clients use (`<model>.<team>.svc`)."""
    return model.name if track == "stable" else f"{model.name}-{track}"


def selector(model, ctx: PlatformContext, track: str | None = None) -> dict[str, str]:
    """The model's pods (of one track); immutable in a Deployment, so nothing version-dependent."""
    labels = {"app.kubernetes.io/instance": ctx.platform, MODEL_LABEL: model.name}
    if track:
        labels[TRACK_LABEL] = track
    return labels


def model_labels(model, track: str, release) -> dict[str, str]:
    """The labels of a track's objects and pods; a registry-backed model's also name its registered model and
    version (plinth.modules.serving.registry)."""
    from plinth.modules.serving.registry import registered_labels as registered

    return {"app.kubernetes.io/name": model.name, "app.kubernetes.io/version": release.tag,
            MODEL_LABEL: model.name, TRACK_LABEL: track, **(registered(model, release) if model.registry else {})}


def route_prefix(model) -> str:
    """The model's path on the serving host name: /<team>/<model> (team first, as namespaces own models)."""
    return f"/{model.team}/{model.name}"
