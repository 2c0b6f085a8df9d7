"""The Argo Server behind the platform's sign-on: its native SSO against identity.oidc, with SSO RBAC.

Argo's SSO RBAC maps a signed-on person to a ServiceAccount by the expression in the account's annotation
`workflows.argoproj.io/rbac-rule` (the highest `rbac-rule-precedence` that matches wins) and acts with that account's
token. Everyone first needs an account in the server's namespace (the login); with namespace delegation
(SSO_DELEGATE_RBAC_TO_NAMESPACE) a request in a team's namespace then acts as the team's account there, where its
precedence is higher than the login's. Why each choice: README.md beside this file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import pulumi
import pulumi_kubernetes as k8s

from plinth.context import PlatformContext, StackSecret, resource_name
from plinth.objects import stack_secret
from plinth.vocabulary import SECRET_SOURCE

CLIENT_SECRET = StackSecret("argoOidcClientSecret", "client secret of the Argo Server's client at the identity "
                            "provider (identity.oidc.clients.argo)")
SSO_SECRET = "argo-server-sso"
"""client-id and client-secret, which the server reads by the names in its SSO config (never in the values)."""
CA_CONFIG_MAP = "argo-server-oidc-ca"
CA_DIR = "/etc/argo-server/oidc-ca"
"""identity.oidc.certificateAuthority, mounted here and added to the server's trusted CAs (SSL_CERT_DIR): the chart
renders no `sso.rootCA`."""
SESSION = "8h"
"""How long a sign-on lasts (sso.sessionExpiry), as the sign-on proxy's default (Argo's own is 10h)."""

RULE = "workflows.argoproj.io/rbac-rule"
PRECEDENCE = "workflows.argoproj.io/rbac-rule-precedence"
TOKEN_ACCOUNT = "kubernetes.io/service-account.name"
LOGIN_ACCOUNT = "argo-sso-login"
"""In namespace argo: every team group signs on as it; it is bound to nothing (precedence 0)."""
ADMIN_ACCOUNT = "argo-sso-admin"
"""In namespace argo: rbac.platformAdminGroup; reads every namespace's workflows and their logs (precedence 1)."""
VIEWER_ACCOUNT = "argo-sso-viewer"
"""In each team namespace: the team's viewer groups, bound to the workflows viewer Role (precedence 2)."""
USER_ACCOUNT = "argo-sso-user"
"""In each team namespace: the team's data scientists and ML engineers, bound to the workflows Role (precedence 3)."""
PRECEDENCES = {LOGIN_ACCOUNT: 0, ADMIN_ACCOUNT: 1, VIEWER_ACCOUNT: 2, USER_ACCOUNT: 3}
"""A team account outranks the login and the admin's account, so a platform admin in a team's groups acts as the
team there (a namespace account applies only above the login's precedence)."""
READ = ["get", "list", "watch"]
ADMIN_RULES = [
    {"apiGroups": ["argoproj.io"], "resources": ["clusterworkflowtemplates", "cronworkflows", "workflows",
                                                 "workflowtaskresults", "workflowtemplates"], "verbs": READ},
    {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": READ},
]
"""The platform admins in the UI: every team's workflows and their steps' logs, read only."""


def token_secret(account: str) -> str:
    """The Secret holding an account's token, by the name the server looks it up by."""
    return f"{account}.service-account-token"


TOKEN_SECRETS = sorted(token_secret(account) for account in PRECEDENCES)
"""The only Secrets the server reads (sso.rbac.secretWhitelist): the accounts' tokens."""


def rbac_rule(groups: Iterable[str]) -> str:
    """The expression (expr-lang) true for a member of any of `groups`: each a double-quoted string literal (JSON's
    escapes are expr's), so no group name can change the expression."""
    return " || ".join(f"{json.dumps(group, ensure_ascii=False)} in groups" for group in groups)


def sso_values(oidc, host: str, admin_group: str) -> dict:
    """The chart's server keys for SSO: sign-on through identity.oidc only, RBAC by the accounts above."""
    env = [{"name": "SSO_DELEGATE_RBAC_TO_NAMESPACE", "value": "true"}]
    values: dict = {
        "authModes": ["sso"],
        "sso": {
            "enabled": True,
            "issuer": oidc.issuer,
            "clientId": {"name": SSO_SECRET, "key": "client-id"},
            "clientSecret": {"name": SSO_SECRET, "key": "client-secret"},
            "redirectUrl": f"https://{host}/oauth2/callback",
            "rbac": {"enabled": True, "secretWhitelist": TOKEN_SECRETS},
            # Argo asks for openid itself.
            "scopes": [scope for scope in oidc.scopes if scope != "openid"],
            "sessionExpiry": SESSION,
            "customGroupClaimName": oidc.groups_claim,
            "insecureSkipVerify": False,
            "issuerAlias": "",
            "userInfoPath": "",
            "filterGroupsRegex": [],
        },
    }
    if oidc.certificate_authority:
        env.append({"name": "SSL_CERT_DIR", "value": CA_DIR})
        values["volumes"] = [{"name": "oidc-ca", "configMap": {"name": CA_CONFIG_MAP}}]
        values["volumeMounts"] = [{"name": "oidc-ca", "mountPath": CA_DIR, "readOnly": True}]
    values["extraEnv"] = env
    return values


def account(key: str, metadata: dict, groups: Iterable[str], opts: pulumi.ResourceOptions) -> pulumi.Resource:
    """A ServiceAccount people in `groups` act as in the Argo Server, and the Secret of its token (filled in by
    Kubernetes' token controller: no token is in the plan)."""
    name, namespace = metadata["name"], metadata["namespace"]
    annotations = {RULE: rbac_rule(groups), PRECEDENCE: str(PRECEDENCES[name])}
    sa = k8s.core.v1.ServiceAccount(key, metadata={**metadata, "annotations": annotations},
                                    automount_service_account_token=False, opts=opts)
    k8s.core.v1.Secret(
        resource_name(key, "token"), type="kubernetes.io/service-account-token",
        metadata={**metadata, "name": token_secret(name), "annotations": {
            SECRET_SOURCE: f"the ServiceAccount token controller (ServiceAccount {namespace}/{name})",
            TOKEN_ACCOUNT: name}},
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[sa])))
    return sa


def server_prerequisites(name: str, namespace: str, oidc, ctx: PlatformContext,
                         opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
    """The client's Secret (from the stack secret) and the issuer's CA, before the release that reads them."""
    secret = ctx.secrets.argo_oidc_client_secret
    if secret is None:
        raise ValueError("the Argo Server's sign-on needs the stack secret plinth:argoOidcClientSecret")
    made: list[pulumi.Resource] = [stack_secret(
        resource_name(name, "sso"), ctx.metadata(SSO_SECRET, name, namespace=namespace),
        "plinth:argoOidcClientSecret", {"client-id": oidc.clients.argo, "client-secret": secret}, opts)]
    if oidc.certificate_authority:
        made.append(k8s.core.v1.ConfigMap(
            resource_name(name, "oidc-ca"), metadata=ctx.metadata(CA_CONFIG_MAP, name, namespace=namespace),
            data={"ca.crt": oidc.certificate_authority}, opts=opts))
    return made


def server_accounts(name: str, namespace: str, admin_group: str, team_groups: tuple[str, ...],
                    ctx: PlatformContext, opts: pulumi.ResourceOptions) -> None:
    """The login account of the teams' groups and the platform admins' account, in the server's namespace."""
    if team_groups:
        account(resource_name(name, "sso-login"), ctx.metadata(LOGIN_ACCOUNT, name, namespace=namespace),
                team_groups, opts)
    admin = account(resource_name(name, "sso-admin"), ctx.metadata(ADMIN_ACCOUNT, name, namespace=namespace),
                    (admin_group,), opts)
    role = f"plinth:{ctx.platform}:workflows-admin-viewer"
    cluster_role = k8s.rbac.v1.ClusterRole(resource_name(name, "sso-admin"), metadata=ctx.metadata(role, name),
                                           rules=ADMIN_RULES, opts=opts)
    k8s.rbac.v1.ClusterRoleBinding(
        resource_name(name, "sso-admin"), metadata=ctx.metadata(role, name),
        role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        subjects=[{"kind": "ServiceAccount", "name": ADMIN_ACCOUNT, "namespace": namespace}],
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[cluster_role, admin])))
