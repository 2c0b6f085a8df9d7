"""Certificates (cert-manager) under Pulumi's mock runtime: an ACME issuer and what the Gateway gives it."""

from __future__ import annotations


from support import platform


def test_an_acme_issuer_gets_the_gateways_http_listener_and_a_redirect_to_https(dev):
    from plinth.vocabulary import HTTP_LISTENER, TEAM_LISTENER as HTTPS_LISTENER

    acme = platform(certificates={"certManager": {"enabled": True, "issuer": {"type": "acme", "acme": {
        "server": "https://acme.corp.example/directory", "email": "platform@corp.example"}}}})
    listeners = acme["gateway-gateway"].inputs["spec"]["listeners"]
    assert [(lst["name"], lst["protocol"], lst["port"]) for lst in listeners] == [
        (HTTPS_LISTENER, "HTTPS", 443), (HTTP_LISTENER, "HTTP", 80)]
    [solver] = acme["cert-manager-issuer"].inputs["spec"]["acme"]["solvers"]
    assert solver["http01"]["gatewayHTTPRoute"]["parentRefs"] == [{
        "group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "plinth", "namespace": "plinth-gateway",
        "sectionName": HTTP_LISTENER}]
    redirect = acme["gateway-http-redirect"].inputs["spec"]
    assert redirect["parentRefs"] == solver["http01"]["gatewayHTTPRoute"]["parentRefs"]
    assert redirect["rules"] == [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "filters": [
        {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}]
    # Without ACME, nothing listens on port 80.
    assert [lst["name"] for lst in dev["gateway-gateway"].inputs["spec"]["listeners"]] == [HTTPS_LISTENER]
    assert "gateway-http-redirect" not in dev
