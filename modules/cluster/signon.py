"""Sign-on to the Kubernetes API through the spec's identity provider (`identity.oidc`).

On an `existing` cluster the API server takes its JWT authenticators from a structured
AuthenticationConfiguration file (`kube-apiserver --authentication-config=<file>`); Plinth renders it from the
spec and keeps it as a ConfigMap the operator copies to the control-plane nodes (README.md beside this file).
On eks the same settings become the cluster's OIDC identity provider config (eks.py).
"""

from __future__ import annotations

import yaml

AUTHENTICATION_NAMESPACE = "kube-system"
AUTHENTICATION_KEY = "authentication-config.yaml"
"""The ConfigMap's key: the file to pass with --authentication-config."""
STRUCTURED_V1 = (1, 34)
"""apiserver.config.k8s.io/v1 AuthenticationConfiguration is served from Kubernetes 1.34; v1beta1 from 1.30."""


def authentication_config_map(platform: str) -> str:
    """The ConfigMap holding the platform's AuthenticationConfiguration (named by the platform, in kube-system)."""
    return f"plinth-{platform}-authentication"


def authentication_configuration(oidc, kubernetes_version: str) -> dict:
    """The API server's AuthenticationConfiguration for `oidc` (plinth.spec.models.Oidc): one JWT authenticator
    that accepts ID tokens the issuer gave the Kubernetes client, with the spec's claims and prefixes."""
    major, minor = (int(part) for part in kubernetes_version.split("."))
    version = "v1" if (major, minor) >= STRUCTURED_V1 else "v1beta1"
    issuer = {"url": oidc.issuer, "audiences": [oidc.clients.kubernetes]}
    if oidc.certificate_authority:
        issuer["certificateAuthority"] = oidc.certificate_authority
    return {
        "apiVersion": f"apiserver.config.k8s.io/{version}",
        "kind": "AuthenticationConfiguration",
        "jwt": [{
            "issuer": issuer,
            # With claim `email` the API server also refuses a token whose email_verified is false.
            "claimMappings": {"username": {"claim": oidc.username_claim, "prefix": oidc.username_prefix},
                              "groups": {"claim": oidc.groups_claim, "prefix": oidc.groups_prefix}},
            # The prefixes already keep the provider's names apart; these hold even with an empty prefix.
            "userValidationRules": [
                {"expression": "!user.username.startsWith('system:')",
                 "message": "user names starting with system: are Kubernetes' own"},
                {"expression": "user.groups.all(group, !group.startsWith('system:'))",
                 "message": "groups starting with system: are Kubernetes' own"},
            ],
        }],
    }


def authentication_yaml(oidc, kubernetes_version: str) -> str:
    """The AuthenticationConfiguration as the file's text (keys sorted: the same spec, the same bytes)."""
    return yaml.safe_dump(authentication_configuration(oidc, kubernetes_version), sort_keys=True,
                          default_flow_style=False, width=120)
