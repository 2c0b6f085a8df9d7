"""The model's HTTPRoute rules: the canary split, the shadow's mirror, and one rule per track."""

from __future__ import annotations

from plinth.modules.serving.names import route_prefix, service_name, tracks
from plinth.modules.serving.runtimes import RUNTIMES

TRACK_HEADER = "x-plinth-track"
"""Request header naming one track (stable, canary or shadow): the route sends it to that track's Service
alone, past the canary split and the mirror (`plinth verify` probes each track this way)."""


def backend_refs(model) -> list[dict]:
    """The canary split, exactly: canary weight W -> stable 100-W, canary W."""
    port = RUNTIMES[model.runtime].http_port
    if not model.canary:
        return [{"name": service_name(model, "stable"), "port": port, "weight": 100}]
    weight = model.canary.weight
    return [{"name": service_name(model, "stable"), "port": port, "weight": 100 - weight},
            {"name": service_name(model, "canary"), "port": port, "weight": weight}]


def route_rules(model) -> list[dict]:
    """The rules of the ONE HTTPRoute per model on the platform Gateway: /<team>/<model>/... rewritten to
    the runtime's own paths, weighted to stable and canary, mirrored to the shadow; then per track the same
    paths with the header `x-plinth-track: <track>`, to that track's Service alone."""
    runtime = RUNTIMES[model.runtime]

    def path_match(path: str) -> dict:
        return {"type": "PathPrefix", "value": route_prefix(model) + ("" if path == "/" else path)}

    def rewrite(path: str) -> dict:
        return {"type": "URLRewrite",
                "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": path}}}

    rules = []
    for path in runtime.routes:
        filters: list[dict] = [rewrite(path)]
        if model.shadow:
            # The shadow gets a copy of every request; its answers are discarded (it answers nobody).
            filters.append({"type": "RequestMirror", "requestMirror": {"backendRef": {
                "name": service_name(model, "shadow"), "port": runtime.http_port}}})
        rules.append({"matches": [{"path": path_match(path)}], "filters": filters, "backendRefs": backend_refs(model)})
    # Track selection: a request carrying `x-plinth-track: <track>` reaches that track's Service and nothing
    # else (no split, no mirror), so a prober (`plinth verify`) can test each release through the Gateway.
    # Why these rules win over the weighted ones: Gateway API v1.6.1, HTTPRouteRule.matches (the CRD's
    # description, gateway.networking.k8s.io_httproutes.yaml of the standard bundle): "precedence must be
    # given to the match having: 'Exact' path match. 'Prefix' path match with largest number of characters.
    # Method match. Largest number of header matches. ...". Path comes first, so each track rule carries
    # exactly the weighted rule's path prefix: a tie on the path, won by the one header match. Any other
    # value of the header matches no track rule and takes the weighted rules, like a request without it.
    # At most 8 rules (Triton: 2 paths x (1 + 3 tracks)); the CRD allows 16.
    for track, _ in tracks(model):
        for path in runtime.routes:
            rules.append({
                "matches": [{"path": path_match(path),
                             "headers": [{"type": "Exact", "name": TRACK_HEADER, "value": track}]}],
                "filters": [rewrite(path)],
                "backendRefs": [{"name": service_name(model, track), "port": runtime.http_port}],
            })
    return rules
