"""Names several parts of Plinth must agree on: the platform Gateway and its listeners.

Modules (which create these objects) and the policies (which check them) both import them
from here, so a name is written once and nothing in the core imports a module for it.
"""

from __future__ import annotations

from plinth.catalog import PLATFORM_NAMESPACES

GATEWAY_NAME = "plinth"
"""The ONE platform Gateway (namespace plinth-gateway) every HTTPRoute of the platform attaches to."""
GATEWAY_NAMESPACE = PLATFORM_NAMESPACES["gateway"]
TEAM_LISTENER = "https"
"""The wildcard listener (network.gateway.hostname): team namespaces' routes, each team on its own host name
<team>.<domain>."""
SERVING_LISTENER = "serving"
"""The serving host's listener (serving.hostname): team namespaces' routes, each team under its path /<team>/."""
HTTP_LISTENER = "http"
"""The plain listener (80), there only with an ACME issuer: the HTTP-01 solver's routes and the redirect to
https."""


def platform_listener(namespace: str) -> str:
    """The listener of a platform service's own host name, named by its namespace: only that namespace's
    routes attach to it."""
    return namespace


def gateway_parent_ref(listener: str) -> dict:
    """An HTTPRoute's parentRef to one listener of the platform Gateway (every route of Plinth uses this)."""
    return {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": GATEWAY_NAME,
            "namespace": GATEWAY_NAMESPACE, "sectionName": listener}
