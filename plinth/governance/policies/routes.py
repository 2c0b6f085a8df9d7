"""Routes on the platform Gateway: a team's HTTPRoutes take only the team's own traffic; no route reaches a web UI
without sign-on."""

from __future__ import annotations

from collections.abc import Iterator

from plinth.governance.policies.core import HELM_RELEASE, MANDATORY, Policy, dig
from plinth.vocabulary import (
    ARGO_SERVER_SERVICE,
    GATEWAY_NAME,
    GRAFANA_SERVICE,
    JUPYTERHUB_SERVICE,
    SERVING_LISTENER,
    TEAM_LISTENER,
    UIS_WITHOUT_LOGIN,
)

HTTP_ROUTE = "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute"
GATEWAY = "kubernetes:gateway.networking.k8s.io/v1:Gateway"


def host_covers(route_host: str, host: str) -> bool:
    """Gateway API host name matching: a wildcard route host (*.example.com) covers every name under it."""
    return route_host == host or (route_host.startswith("*.") and host.endswith(route_host[1:]))


def _path_matches(rule: dict) -> Iterator[dict]:
    """A rule's path matches, with Gateway API's defaults (no match, or a match without a path: prefix /)."""
    for match in rule.get("matches") or [{}]:
        yield match.get("path") or {"type": "PathPrefix", "value": "/"}


def team_route_problems(team: str, route: dict, reserved: set[str], serving: str | None,
                        domain: str | None) -> Iterator[str]:
    """Why a team's HTTPRoute could take another team's or the platform's traffic: a host name of the platform,
    a path outside /<team>/ on the serving host, or a host name that is not the team's own <team>.<domain>."""
    hosts = route.get("hostnames") or []
    if not hosts:
        yield "names no host name, so it would answer for every host name of the listeners it attaches to"
    own = f"{team}.{domain}" if domain else None
    for host in hosts:
        taken = sorted(p for p in reserved if host_covers(host, p))
        if taken:
            yield f"host name {host} is the platform's ({', '.join(taken)}), reserved to platform routes"
        elif serving and host_covers(host, serving):
            for rule in route.get("rules") or [{}]:
                for path in _path_matches(rule):
                    value, kind = str(path.get("value", "/")), path.get("type", "PathPrefix")
                    if kind not in ("PathPrefix", "Exact") or not (value == f"/{team}" or
                                                                    value.startswith(f"/{team}/")):
                        yield f"path {value} ({kind}) on the serving host {serving} is outside /{team}/"
        elif host != own:
            yield f"host name {host} is not the team's own ({own or 'none: the Gateway has no wildcard listener'})"


def gateway_hosts(subjects) -> tuple[set[str], str | None, str | None]:
    """(the platform's reserved host names, the serving host, the team hosts' domain) from the platform
    Gateway's listeners and the routes of platform namespaces."""
    teams = {s.metadata.get("name") for s in subjects if s.kind == "Namespace" and s.labels.get("plinth.dev/team")}
    reserved = {h for s in subjects if s.type == HTTP_ROUTE and s.metadata.get("namespace") not in teams
                for h in (s.props.get("spec") or {}).get("hostnames") or []}
    serving = domain = None
    for s in subjects:
        if s.type != GATEWAY or s.metadata.get("name") != GATEWAY_NAME:
            continue
        for listener in (s.props.get("spec") or {}).get("listeners") or []:
            host = listener.get("hostname")
            if listener.get("name") == SERVING_LISTENER:
                serving = host
            elif listener.get("name") == TEAM_LISTENER:
                domain = host[2:] if host and host.startswith("*.") else None
            elif host:
                reserved.add(host)
    return reserved, serving, domain


def _team_routes_own_paths(subjects, platform):
    teams = {s.metadata.get("name") for s in subjects if s.kind == "Namespace" and s.labels.get("plinth.dev/team")}
    reserved, serving, domain = gateway_hosts(subjects)
    for s in subjects:
        team = s.metadata.get("namespace")
        if s.type == HTTP_ROUTE and team in teams:
            for problem in team_route_problems(team, s.props.get("spec") or {}, reserved, serving, domain):
                yield s, problem


TEAM_ROUTES_OWN_PATHS_POLICY = Policy(
    "team-routes-own-paths", "A team's HTTPRoutes take only the team's own traffic: no platform host name "
    "(reserved to platform routes), only paths under /<team>/ on the serving host, and otherwise only the "
    "team's own host name <team>.<domain>.", "route the team's model under /<team>/ on the serving host, "
    "or on <team>.<domain>", MANDATORY, _team_routes_own_paths)


def _backends(route) -> Iterator[tuple[str, str]]:
    """(namespace, Service name) of every backend of an HTTPRoute (a backendRef's namespace defaults to the
    route's)."""
    spec, namespace = route.props.get("spec") or {}, route.metadata.get("namespace")
    for rule in spec.get("rules") or []:
        for ref in rule.get("backendRefs") or []:
            if ref.get("kind", "Service") == "Service" and ref.get("group", "") == "":
                yield ref.get("namespace") or namespace, ref.get("name")


def argo_server_signs_on(values: dict) -> bool:
    """The argo-workflows release's server signs people on through the provider only: SSO with its RBAC (each
    person acts as an account of their groups), and neither `server` mode (no login at all) nor `client` mode."""
    server = values.get("server") or {}
    return (server.get("authModes") == ["sso"] and not server.get("authMode")
            and dig(server, "sso", "enabled") is True and dig(server, "sso", "rbac", "enabled") is True)


def jupyterhub_signs_on(values: dict) -> bool:
    """The jupyterhub release signs people on through the provider: the GenericOAuthenticator, never the chart's
    default `dummy` authenticator (any name, any password)."""
    return dig(values, "hub", "config", "JupyterHub", "authenticator_class") == "generic-oauth"


def _ui_sign_on(subjects, platform):
    grafana_signs_on = any(
        s.type == HELM_RELEASE and s.props.get("name") == "kube-prometheus-stack" and
        dig(s.props.get("values") or {}, "grafana", "grafana.ini", "auth.generic_oauth", "enabled") is True
        for s in subjects)
    argo_signs_on = any(s.type == HELM_RELEASE and s.props.get("name") == "argo-workflows" and
                        argo_server_signs_on(s.props.get("values") or {}) for s in subjects)
    jupyterhub_ok = any(s.type == HELM_RELEASE and s.props.get("name") == "jupyterhub" and
                        jupyterhub_signs_on(s.props.get("values") or {}) for s in subjects)
    for s in subjects:
        if s.type != HTTP_ROUTE:
            continue
        for namespace, name in sorted(set(_backends(s))):
            ui = next((ui for ui in UIS_WITHOUT_LOGIN if (ui.namespace, ui.service) == (namespace, name)), None)
            if ui:
                yield s, f"sends requests to {ui.title} ({namespace}/{name}), which has no login of its own"
            elif (namespace, name) == GRAFANA_SERVICE and platform.sign_on and not grafana_signs_on:
                yield s, (f"sends requests to Grafana ({namespace}/{name}), which does not sign people on through "
                          "identity.oidc")
            elif (namespace, name) == ARGO_SERVER_SERVICE and not argo_signs_on:
                yield s, (f"sends requests to the Argo Server ({namespace}/{name}), which does not sign people on "
                          "through identity.oidc (server.authModes [sso] with SSO RBAC)")
            elif (namespace, name) == JUPYTERHUB_SERVICE and not jupyterhub_ok:
                yield s, (f"sends requests to JupyterHub ({namespace}/{name}), which does not sign people on "
                          "through identity.oidc (hub.config.JupyterHub.authenticator_class generic-oauth)")


UI_SIGN_ON_POLICY = Policy(
    "ui-sign-on", "No route on the platform Gateway reaches a web UI without sign-on: never one without a login "
    "of its own (Prometheus, Alertmanager, Hubble UI, the Longhorn UI), not the Argo Server unless it signs people "
    "on through the provider (SSO), not JupyterHub unless its authenticator is the provider's (generic-oauth), "
    "and with identity.oidc set not Grafana unless it signs people on through the "
    "provider.", "reach those UIs through the sign-on proxy (identity.uiProxy.hosts); for Grafana's route set "
    "identity.oidc.clients.grafana, for the Argo Server's identity.oidc.clients.argo", MANDATORY, _ui_sign_on)
