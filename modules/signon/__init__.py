"""The sign-on proxy: one oauth2-proxy per web UI without a login of its own, each on its own host name."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import ImageRef
from plinth.context import PlatformContext, StackSecret, resource_name
from plinth.modules.helm import HelmService, merge_values
from plinth.objects import gateway_route, stack_secret, whole_host_rule
from plinth.service import GatewayHost, Need, Peer, gateway_hostname_rules
from plinth.spec import models
from plinth.spec.errors import Violation
from plinth.vocabulary import UIS_WITHOUT_LOGIN, WebUi

CLIENT_SECRET = StackSecret("uiProxyClientSecret", "client secret of the sign-on proxy's client at the identity "
                            "provider (identity.oidc.clients.uiProxy)")
COOKIE_SECRET = StackSecret("uiProxyCookieSecret", "the sign-on proxy's session cookie key: 32 random characters "
                            "(e.g. `openssl rand -hex 16`)")

SECRET = "ui-proxy"
"""client-id, client-secret and cookie-secret: the chart reads them as OAUTH2_PROXY_* env (config.existingSecret)."""
CA_CONFIG_MAP = "ui-proxy-oidc-ca"
CA_DIR = "/etc/oauth2-proxy/oidc-ca"
PROXY_PORT, SERVICE_PORT = 4180, 80
"""The proxy's pods listen on 4180 (the chart's http port); its Service on 80."""


@dataclass(frozen=True)
class UiProxyArgs:
    """What the sign-on proxy needs from the spec."""

    proxy: models.UiProxy
    """identity.uiProxy."""
    oidc: Any
    """identity.oidc (plinth.spec.models.Oidc): set wherever the proxy is enabled (UiProxy.enabled)."""
    admin_group: str
    """rbac.platformAdminGroup: the only group that passes."""

    @property
    def enabled(self) -> bool:
        return self.proxy.enabled

    @property
    def values(self) -> dict:
        return self.proxy.values

    def uis(self) -> list[tuple[WebUi, str]]:
        """(UI, host name) of each UI the spec puts behind the proxy."""
        return [(ui, host) for ui in UIS_WITHOUT_LOGIN if (host := getattr(self.proxy.hosts, ui.key))]


def toml(value: Any) -> str:
    """A TOML value: strings quoted (JSON's escapes are TOML's), booleans, lists."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return json.dumps(value)


def proxy_config(args: UiProxyArgs, ui: WebUi, host: str) -> str:
    """oauth2-proxy's configuration file for one UI (its legacy TOML, config.configFile): the provider, only the
    platform admin group, the UI as its one upstream, and a session cookie of this host alone. The client ID and
    both secrets are not in it: the chart reads them from the Secret ui-proxy as env."""
    oidc = args.oidc
    settings: dict[str, Any] = {
        "provider": "oidc",
        "oidc_issuer_url": oidc.issuer,
        **({"provider_ca_files": [f"{CA_DIR}/ca.crt"]} if oidc.certificate_authority else {}),
        "scope": " ".join(oidc.scopes),
        "code_challenge_method": "S256",
        "oidc_email_claim": oidc.username_claim,
        "oidc_groups_claim": oidc.groups_claim,
        # Who passes is the group's to say, not the e-mail domain's.
        "email_domains": ["*"],
        "allowed_groups": [args.admin_group],
        "upstreams": [f"http://{ui.service}.{ui.namespace}.svc:{ui.port}/"],
        "redirect_url": f"https://{host}/oauth2/callback",
        "reverse_proxy": True,
        "skip_provider_button": True,
        # The UI sees who it is serving: X-Forwarded-User, -Email, -Groups.
        "pass_user_headers": True,
        # A cookie of this host alone (no cookie_domains): team hosts under the same domain never receive it.
        "cookie_name": f"_plinth_{ui.key}",
        "cookie_secure": True,
        "cookie_expire": args.proxy.session,
        "silence_ping_logging": True,
    }
    return "".join(f"{key} = {toml(value)}\n" for key, value in settings.items())


def ui_proxy_rules(spec) -> Iterator[Violation]:
    proxy, oidc, at = spec.identity.ui_proxy, spec.identity.oidc, ("identity", "uiProxy")
    if not proxy.enabled:
        return
    if oidc is None:
        yield Violation((*at, "enabled"), "the sign-on proxy signs people on through identity.oidc, which is not "
                        "set", "ui-proxy-oidc", "set identity.oidc, or turn the proxy off")
    elif not oidc.clients.ui_proxy:
        yield Violation((*at, "enabled"), "the sign-on proxy needs its client at the provider, and "
                        "identity.oidc.clients.uiProxy is not set", "ui-proxy-oidc",
                        "set identity.oidc.clients.uiProxy (its secret: the stack secret plinth:uiProxyClientSecret)")
    services = {"prometheus": spec.monitoring.enabled, "alertmanager": spec.monitoring.enabled,
                "hubble": spec.network.cilium.enabled and spec.network.cilium.hubble,
                "longhorn": spec.storage.longhorn.enabled}
    for ui in UIS_WITHOUT_LOGIN:
        host = getattr(proxy.hosts, ui.key)
        if not host:
            continue
        yield from gateway_hostname_rules(spec, (*at, "hosts"), host, "ui-proxy")
        if not services[ui.key]:
            yield Violation((*at, "hosts", ui.key), f"{ui.title} is not on", "ui-proxy-ui",
                            f"turn it on, or remove hosts.{ui.key}")


class UiProxy(HelmService):
    """oauth2-proxy in front of each web UI without a login of its own (plinth:signon:UiProxy)."""

    type_token = "plinth:signon:UiProxy"
    chart_key = "oauth2-proxy"
    spec_path = ("identity", "uiProxy")
    # The chart's pod runs as uid 2000, non-root, read-only root, every capability dropped, RuntimeDefault.
    pod_security = "restricted"
    secrets = (CLIENT_SECRET, COOKIE_SECRET)

    @classmethod
    def block(cls, spec) -> UiProxyArgs:
        return UiProxyArgs(spec.identity.ui_proxy, spec.identity.oidc, spec.rbac.platform_admin_group)

    @classmethod
    def enabled(cls, spec) -> bool:
        # Only a sign-on that can work: the rules report a proxy without its provider or client.
        oidc = spec.identity.oidc
        return bool(spec.identity.ui_proxy.enabled and oidc and oidc.clients.ui_proxy)

    @classmethod
    def needs(cls, spec) -> tuple[Need, ...]:
        if not spec.identity.ui_proxy.enabled:
            return ()
        return (Need("gateway", ("identity", "uiProxy", "enabled"), "the sign-on proxy's host names are served by "
                     "the platform Gateway", "ui-proxy", "turn the proxy off"),)

    @classmethod
    def rules(cls, spec) -> Iterator[Violation]:
        yield from ui_proxy_rules(spec)

    @classmethod
    def gateway_hosts(cls, spec) -> tuple[GatewayHost, ...]:
        if not cls.enabled(spec):
            return ()
        ns = cls.chart().namespace
        return tuple(GatewayHost(ns, host, ("identity", "uiProxy", "hosts", ui.key), f"{ns}-{ui.key}")
                     for ui, host in cls.block(spec).uis())

    @classmethod
    def endpoints(cls, block: UiProxyArgs, ctx: PlatformContext) -> dict[str, str]:
        return {f"{ui.key}Url": f"https://{host}" for ui, host in block.uis()}

    @classmethod
    def ingress(cls, block: UiProxyArgs, ctx: PlatformContext) -> tuple[Peer, ...]:
        return (Peer("gateway", ports=(PROXY_PORT,), entity="ingress"),)

    @classmethod
    def owned_values(cls, block: UiProxyArgs, ctx: PlatformContext) -> dict:
        """The values every proxy shares; `releases` adds each one's own (fullnameOverride, config.configFile)."""
        image = ImageRef.parse(cls.chart().images[0]).mirrored(ctx.mirror_registry)
        values: dict = {
            "image": {"registry": image.registry, "repository": image.repository, "tag": image.tag},
            "imagePullSecrets": [{"name": s} for s in ctx.image_pull_secrets],
            "config": {"existingSecret": SECRET, "configFile": ""},
            "replicaCount": 2 if ctx.prod_like else 1,
            "podDisruptionBudget": {"enabled": ctx.prod_like},
            # The platform's own network policies (modules/helm), not the chart's.
            "networkPolicy": {"create": False},
        }
        if block.oidc and block.oidc.certificate_authority:
            values["extraVolumes"] = [{"name": "oidc-ca", "configMap": {"name": CA_CONFIG_MAP}}]
            values["extraVolumeMounts"] = [{"name": "oidc-ca", "mountPath": CA_DIR, "readOnly": True}]
        return values

    @classmethod
    def releases(cls, block: UiProxyArgs, ctx: PlatformContext) -> tuple[tuple[str, str, dict], ...]:
        shared = cls.release_values(block, ctx)
        return tuple((ui.key, f"{ui.key}-sign-on", merge_values(shared, {
            "fullnameOverride": f"{ui.key}-sign-on", "config": {"configFile": proxy_config(block, ui, host)}}))
            for ui, host in block.uis())

    def prerequisites(self, name: str, block: UiProxyArgs, ctx: PlatformContext,
                      opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        ns = self.chart().namespace
        client, cookie = ctx.secrets.ui_proxy_client_secret, ctx.secrets.ui_proxy_cookie_secret
        if client is None or cookie is None:
            raise ValueError("the sign-on proxy needs the stack secrets plinth:uiProxyClientSecret and "
                             "plinth:uiProxyCookieSecret")
        made: list[pulumi.Resource] = [stack_secret(
            resource_name(name, "secret"), ctx.metadata(SECRET, name, namespace=ns),
            "plinth:uiProxyClientSecret, plinth:uiProxyCookieSecret",
            {"client-id": block.oidc.clients.ui_proxy, "client-secret": client, "cookie-secret": cookie}, opts)]
        if block.oidc.certificate_authority:
            made.append(k8s.core.v1.ConfigMap(
                resource_name(name, "oidc-ca"), metadata=ctx.metadata(CA_CONFIG_MAP, name, namespace=ns),
                data={"ca.crt": block.oidc.certificate_authority}, opts=opts))
        return made

    def objects(self, name: str, block: UiProxyArgs, ctx: PlatformContext, opts: pulumi.ResourceOptions) -> None:
        ns = self.chart().namespace
        for ui, host in block.uis():
            gateway_route(resource_name(name, ui.key, "route"), ctx.metadata(f"{ui.key}-sign-on", name, namespace=ns),
                          f"{ns}-{ui.key}", [whole_host_rule(f"{ui.key}-sign-on", SERVICE_PORT, "60s")], opts,
                          hostname=host)

