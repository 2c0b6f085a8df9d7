"""Monitoring: kube-prometheus-stack (Prometheus, Alertmanager, Grafana) with the platform's dashboards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import CHARTS, PLATFORM_NAMESPACES
from plinth.context import PULL_SECRET, PlatformContext, StackSecret, resource_name
from plinth.modules.backups import database_identities, instance_monitor, postgres_cluster
from plinth.modules.featurestore import cluster_spec
from plinth.modules.helm import HelmService
from plinth.modules.monitoring.dashboards import (
    DASHBOARD_LABEL,
    dashboard_config_map,
    platform_overview,
    tenancy_quotas,
)
from plinth.modules.pipelines import events
from plinth.objects import gateway_route, namespace, pull_secret, stack_secret, whole_host_rule
from plinth.service import GatewayHost, Need, Peer, gateway_hostname_rules, gateway_serves
from plinth.spec import models
from plinth.spec.errors import Violation
from plinth.targets import Identity
from plinth.vocabulary import GRAFANA_SERVICE, platform_listener

GRAFANA_ADMIN_PASSWORD = StackSecret("grafanaAdminPassword", "password of Grafana's admin user (monitoring)")
ALERT_RECEIVERS = StackSecret(
    "alertReceivers", "map of Alertmanager receiver name to its webhook URL or routing key",
    entries=lambda spec: tuple(receiver.name for receiver in spec.monitoring.alertmanager.receivers))

GRAFANA_OIDC_CLIENT_SECRET = StackSecret(
    "grafanaOidcClientSecret",
    "client secret of Grafana's client at the identity provider (identity.oidc.clients.grafana)")

GRAFANA_ADMIN_SECRET = "grafana-admin"
GRAFANA_OIDC_SECRET = "grafana-oidc"
"""Grafana's client secret at the identity provider: env GF_AUTH_GENERIC_OAUTH_CLIENT_SECRET, never in grafana.ini."""
GRAFANA_OIDC_CA = "grafana-oidc-ca"
"""ConfigMap with identity.oidc.certificateAuthority (public), mounted where tls_client_ca points."""
GRAFANA_OIDC_CA_DIR = "/etc/grafana/oidc-ca"
GRAFANA_PORT, GRAFANA_POD_PORT = 80, 3000
"""The port of Grafana's Service (the HTTPRoute's backend), and its pods' port."""
RECEIVERS_SECRET = "alertmanager-receivers"
"""Mounted by Alertmanager at /etc/alertmanager/secrets/<name>/<receiver>: URLs and keys stay out of its config."""
NODE_EXPORTER_NAMESPACE = PLATFORM_NAMESPACES["node-exporter"]
NODE_SCRAPE_PORTS = {"node-exporter": 9100, "kubelet": 10250, "kube-controller-manager": 10257,
                     "kube-scheduler": 10259, "etcd": 2381, "cilium-agent": 9962, "cilium-operator": 9963,
                     "cilium-envoy": 9964}
"""Scrape targets on the nodes' network (host network or the node itself): the chart's kubelet, node-exporter
and control-plane jobs, and Cilium's agent, operator and Envoy (their chart defaults)."""

PROMETHEUS_SERVICE = "prometheus-operated"
"""The Service the Prometheus Operator creates for the Prometheus servers of a namespace (port 9090, `web`)."""
GRAFANA_DB = "grafana-postgres"
"""Grafana's CloudNativePG Cluster (staging and prod): Services `<name>-rw`, Secrets `<name>-app`, `<name>-ca`."""
GRAFANA_DB_STORAGE = "5Gi"
"""Per instance: dashboards, users, sessions and annotations are small."""
GRAFANA_DB_CA_DIR = "/etc/grafana/postgres-ca"

# Per receiver type: the Alertmanager config block and its *_file field reading the secret.
RECEIVER_FIELDS = {"webhook": ("webhook_configs", "url_file"), "slack": ("slack_configs", "api_url_file"),
                   "pagerduty": ("pagerduty_configs", "routing_key_file")}


def alertmanager_config(receivers, drift=None, retrained=()) -> dict:
    """Routing by severity to the spec's receivers; secrets are read from mounted files, never inlined.
    With `drift.receiver`, drift alerts (label alert_kind: drift) go to that receiver only: a retraining
    webhook gets each drifting model once (per day while it lasts), not again through the severity routes.
    Each model in `retrained` (pipelines.events on) has its drift alerts sent to its own endpoint of the
    retraining webhook, and only there: firing only (a resolved alert retrains nothing), one model per
    notification (grouped by namespace and model)."""
    config: dict = {
        "route": {"receiver": "null", "group_by": ["alertname", "namespace"], "routes": []},
        "receivers": [{"name": "null"}],
        "inhibit_rules": [{"source_matchers": ["severity = critical"], "target_matchers": ["severity = warning"],
                           "equal": ["alertname", "namespace"]}],
    }
    for receiver in receivers:
        block, field = RECEIVER_FIELDS[receiver.type]
        entry: dict = {field: f"/etc/alertmanager/secrets/{RECEIVERS_SECRET}/{receiver.name}",
                       "send_resolved": True}
        if receiver.channel:
            entry["channel"] = receiver.channel
        config["receivers"].append({"name": receiver.name, block: [entry]})
        if receiver.severities:  # none: only the drift route (if it names this receiver) sends here
            severities = "|".join(receiver.severities)
            config["route"]["routes"].append({"receiver": receiver.name, "matchers": [f'severity=~"{severities}"'],
                                              "continue": True})
    if drift is not None and drift.enabled and drift.receiver:
        config["route"]["routes"].insert(0, {"receiver": drift.receiver, "matchers": ['alert_kind="drift"'],
                                             "group_by": ["alertname", "namespace", "model"],
                                             "repeat_interval": "24h", "continue": False})
    for index, model in enumerate(retrained):
        receiver = retraining_receiver(model)
        config["receivers"].append({"name": receiver, "webhook_configs": [
            {"url": events.webhook_url(model), "send_resolved": False}]})
        config["route"]["routes"].insert(index, {
            "receiver": receiver, "matchers": ['alert_kind="drift"', f'namespace="{model.team}"',
                                               f'model="{model.name}"'],
            "group_by": ["alertname", "namespace", "model"], "repeat_interval": "24h", "continue": False})
    return config


def retraining_receiver(model) -> str:
    """The receiver of a model's retraining webhook: ':' and '/' are in no receiver name of the spec."""
    return f"plinth:retrain/{model.team}/{model.name}"


def grafana_database_values(namespace: str) -> dict:
    """Grafana's values for its shared database: every replica reads and writes the same dashboards, users
    and sessions (each on its own SQLite file they would drift apart). The credentials come from the
    Secret CloudNativePG generates (env GF_DATABASE_USER/PASSWORD override grafana.ini); TLS is verified
    against the Cluster's CA."""
    app = f"{GRAFANA_DB}-app"
    return {
        "grafana.ini": {"database": {
            "type": "postgres", "host": f"{GRAFANA_DB}-rw.{namespace}.svc:5432", "name": "grafana",
            "ssl_mode": "verify-full", "ca_cert_path": f"{GRAFANA_DB_CA_DIR}/ca.crt"}},
        "envValueFrom": {"GF_DATABASE_USER": {"secretKeyRef": {"name": app, "key": "username"}},
                         "GF_DATABASE_PASSWORD": {"secretKeyRef": {"name": app, "key": "password"}}},
        "extraSecretMounts": [{"name": "postgres-ca", "secretName": f"{GRAFANA_DB}-ca", "mountPath": GRAFANA_DB_CA_DIR,
                               "readOnly": True, "defaultMode": 0o444, "items": [{"key": "ca.crt", "path": "ca.crt"}]}],
        # A drain takes one of the two replicas at a time.
        "podDisruptionBudget": {"maxUnavailable": 1},
    }


@dataclass(frozen=True)
class MonitoringArgs:
    """What monitoring needs from the spec: its block and facts of other blocks."""

    monitoring: models.Monitoring
    gateway: bool
    """The platform Gateway is on: `grafana.hostname` gets an HTTPRoute."""
    oidc: models.Oidc | None = None
    """identity.oidc, when Grafana signs people on through it (clients.grafana set)."""
    admin_group: str = ""
    """rbac.platformAdminGroup: Grafana's Admins."""
    teams: tuple[models.Team, ...] = ()
    retrained: tuple[models.Model, ...] = ()
    """The served models with retraining, when Argo Events (pipelines.events) receives their drift alerts."""

    @property
    def enabled(self) -> bool:
        return self.monitoring.enabled

    @property
    def grafana_host(self) -> str | None:
        return self.monitoring.grafana.hostname if self.gateway else None


def jmespath_literal(value: str) -> str:
    """A JMESPath raw string literal ('...')."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def jmespath_field(claim: str) -> str:
    """A token claim as a JMESPath field (quoted: a claim name may hold '.', ':' or '-')."""
    return json.dumps(claim)


def grafana_role_path(groups_claim: str, admin_group: str, teams) -> str:
    """Grafana's role_attribute_path: the platform admin group is Admin, the teams' ml-engineer groups Editor,
    their data-scientist and viewer groups Viewer; no match gives no role (role_attribute_strict refuses the
    sign-in). Grafana's roles are organization-wide: a team group sees every dashboard, as Grafana's Viewers do."""
    field = jmespath_field(groups_claim)

    def member(groups) -> str:
        return " || ".join(f"contains({field}[*], {jmespath_literal(g)})" for g in groups)

    editors = sorted({g for team in teams for g in team.groups.ml_engineer})
    viewers = sorted({g for team in teams for g in (*team.groups.data_scientist, *team.groups.viewer)} - set(editors))
    path = [f"({member([admin_group])}) && 'Admin'"]
    path += [f"({member(editors)}) && 'Editor'"] if editors else []
    path += [f"({member(viewers)}) && 'Viewer'"] if viewers else []
    return " || ".join(path)


def grafana_sign_on_values(args: MonitoringArgs) -> dict:
    """Grafana's generic OAuth against identity.oidc (its client secret from the Secret grafana-oidc by env, so
    grafana.ini holds none); the login form stays for the local admin (break-glass)."""
    oidc = args.oidc
    assert oidc is not None and oidc.clients.grafana and oidc.endpoints and args.grafana_host
    oauth = {
        "enabled": True, "name": "Single sign-on", "client_id": oidc.clients.grafana,
        "scopes": " ".join(oidc.scopes), "auth_url": oidc.endpoints.authorization,
        "token_url": oidc.endpoints.token, "use_pkce": True, "allow_sign_up": True,
        # Claims come from the ID token (no userinfo call): the ones the Kubernetes API reads too.
        "login_attribute_path": jmespath_field(oidc.username_claim),
        "email_attribute_path": "email",
        "groups_attribute_path": jmespath_field(oidc.groups_claim),
        "role_attribute_path": grafana_role_path(oidc.groups_claim, args.admin_group, args.teams),
        "role_attribute_strict": True,
    }
    values: dict = {
        "grafana.ini": {"server": {"domain": args.grafana_host, "root_url": f"https://{args.grafana_host}/"},
                        "auth.generic_oauth": oauth},
        "envValueFrom": {"GF_AUTH_GENERIC_OAUTH_CLIENT_SECRET": {
            "secretKeyRef": {"name": GRAFANA_OIDC_SECRET, "key": "client-secret"}}},
    }
    if oidc.certificate_authority:
        oauth["tls_client_ca"] = f"{GRAFANA_OIDC_CA_DIR}/ca.crt"
        values["extraConfigmapMounts"] = [{"name": "oidc-ca", "configMap": GRAFANA_OIDC_CA,
                                           "mountPath": GRAFANA_OIDC_CA_DIR, "readOnly": True}]
    return values


def merge_grafana(base: dict, extra: dict) -> dict:
    """Grafana's values from two parts (its database, its sign-on): maps merged one level down."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = {**out[key], **value} if isinstance(value, dict) and key in out else value
    return out


def grafana_sign_on_rules(spec) -> Iterator[Violation]:
    """Grafana on the Gateway: a name the listener serves; with identity.oidc, behind sign-on (ui-sign-on), and
    its client complete."""
    grafana, oidc, at = spec.monitoring.grafana, spec.identity.oidc, ("monitoring", "grafana")
    if spec.monitoring.enabled and grafana.hostname:
        yield from gateway_hostname_rules(spec, at, grafana.hostname, "grafana")
        if oidc and not oidc.clients.grafana:
            yield Violation((*at, "hostname"), "Grafana on the platform Gateway without sign-on, while "
                            "identity.oidc is set", "ui-sign-on",
                            "set identity.oidc.clients.grafana (and the stack secret plinth:grafanaOidcClientSecret)")
    if oidc and oidc.clients.grafana:
        if not (spec.monitoring.enabled and grafana.hostname):
            yield Violation(("identity", "oidc", "clients", "grafana"), "Grafana signs on through the provider "
                            "at its own host name, and monitoring.grafana.hostname is not set", "grafana-sign-on-host",
                            "enable monitoring and set monitoring.grafana.hostname, or remove clients.grafana")
        if not oidc.endpoints:
            yield Violation(("identity", "oidc", "clients", "grafana"), "Grafana reads no discovery document, "
                            "and identity.oidc.endpoints is not set", "grafana-sign-on-endpoints",
                            "set identity.oidc.endpoints.authorization and .token as the provider's "
                            "<issuer>/.well-known/openid-configuration lists them")


class Monitoring(HelmService):
    """kube-prometheus-stack (plinth:monitoring:Monitoring)."""

    type_token = "plinth:monitoring:Monitoring"
    chart_key = "kube-prometheus-stack"
    spec_path = ("monitoring",)
    capability = "monitoring"
    capability_fix = "enable monitoring"
    secrets = (GRAFANA_ADMIN_PASSWORD, ALERT_RECEIVERS, GRAFANA_OIDC_CLIENT_SECRET)

    @classmethod
    def block(cls, spec) -> MonitoringArgs:
        oidc = spec.identity.oidc
        gateway = gateway_serves(spec)
        # Only a complete sign-on (the rules report what is missing): its client, the endpoints and the host.
        signs_on = bool(oidc and oidc.clients.grafana and oidc.endpoints and spec.monitoring.grafana.hostname
                        and gateway)
        return MonitoringArgs(spec.monitoring, gateway, oidc if signs_on else None,
                              spec.rbac.platform_admin_group, spec.teams,
                              events.retrained(spec) if spec.pipelines.events.enabled else ())

    @classmethod
    def user_values(cls, block: MonitoringArgs) -> dict:
        return dict(block.monitoring.values)

    @classmethod
    def needs(cls, spec) -> tuple[Need, ...]:
        if spec.monitoring.enabled and spec.monitoring.grafana.hostname:
            return (Need("gateway", ("monitoring", "grafana", "hostname"), "Grafana's host name is served by the "
                         "platform Gateway", "grafana", "remove hostname (Grafana is then reachable in-cluster only)"),)
        return ()

    @classmethod
    def gateway_host(cls, spec) -> GatewayHost | None:
        host = spec.monitoring.grafana.hostname
        return GatewayHost(cls.chart().namespace, host, ("monitoring", "grafana", "hostname")) \
            if spec.monitoring.enabled and host else None

    @classmethod
    def endpoints(cls, block: MonitoringArgs, ctx: PlatformContext) -> dict[str, str]:
        # The Service the Prometheus Operator gives the Prometheus of a namespace (`plinth canary --gate` reads it).
        prometheus = {"prometheus": f"http://{PROMETHEUS_SERVICE}.{cls.chart().namespace}.svc:9090"}
        return {**prometheus, "grafanaUrl": f"https://{block.grafana_host}"} if block.grafana_host else prometheus

    @classmethod
    def identities(cls, spec) -> tuple[Identity, ...]:
        # Grafana's database: staging and prod only (its Cluster is made where Grafana runs replicated).
        if cls.enabled(spec) and spec.metadata.environment != "dev":
            return database_identities(spec, cls.chart().namespace, GRAFANA_DB)
        return ()

    @classmethod
    def needed_secrets(cls, spec) -> tuple[StackSecret, ...]:
        if not cls.enabled(spec):
            return ()
        return (GRAFANA_ADMIN_PASSWORD, *((ALERT_RECEIVERS,) if spec.monitoring.alertmanager.receivers else ()),
                *((GRAFANA_OIDC_CLIENT_SECRET,) if cls.block(spec).oidc else ()))

    @classmethod
    def rules(cls, spec) -> Iterator[Violation]:
        drift = spec.monitoring.drift
        receivers = [receiver.name for receiver in spec.monitoring.alertmanager.receivers]
        if drift.receiver and drift.receiver not in receivers:
            yield Violation(("monitoring", "drift", "receiver"), f"receiver {drift.receiver!r} is not defined",
                            "drift-receiver-exists", "add it under monitoring.alertmanager.receivers"
                            + (f" (defined: {', '.join(receivers)})" if receivers else "") + ", or fix the name")
        yield from grafana_sign_on_rules(spec)
    # Prometheus, Alertmanager, Grafana, the operator and kube-state-metrics pass `restricted`; node-exporter
    # (the host's network, PID namespace and file systems) runs in its own privileged namespace.
    pod_security = "restricted"

    @classmethod
    def ingress(cls, block: MonitoringArgs, ctx: PlatformContext) -> tuple[Peer, ...]:
        peers = [cls.webhook(10250)]  # the operator's admission webhook (PrometheusRule, AlertmanagerConfig)
        if block.grafana_host:
            peers.append(Peer("gateway", ports=(GRAFANA_POD_PORT,), entity="ingress"))  # Grafana's route
        if ctx.prod_like:
            # CloudNativePG's operator reaches Grafana's database instances (manager 8000, PostgreSQL 5432).
            peers.append(Peer("postgres-operator", CHARTS["cloudnative-pg"].namespace, (8000, 5432)))
        return tuple(peers)

    @classmethod
    def airgap_egress(cls, block: MonitoringArgs, ctx: PlatformContext) -> tuple[Peer, ...]:
        # Prometheus scrapes what listens on the nodes' own addresses (Cilium's identities host and remote-node).
        ports = tuple(sorted(NODE_SCRAPE_PORTS.values()))
        return Peer("host", ports=ports, entity="host"), Peer("remote-node", ports=ports, entity="remote-node")

    @classmethod
    def owned_values(cls, args: MonitoringArgs, ctx: PlatformContext) -> dict:
        block = args.monitoring
        grafana = grafana_database_values(cls.chart().namespace) if ctx.prod_like else {}
        if args.oidc:
            grafana = merge_grafana(grafana, grafana_sign_on_values(args))
        prometheus = ctx.replicas(block.prometheus_replicas)
        alertmanager = ctx.replicas(block.alertmanager.replicas, 3)
        selectors = {f"{kind}SelectorNilUsesHelmValues": False
                     for kind in ("serviceMonitor", "podMonitor", "rule", "probe", "scrapeConfig")}
        values: dict = {
            "global": {"imagePullSecrets": [{"name": s} for s in ctx.image_pull_secrets]},
            "crds": {"enabled": False},  # plinth:crds:PrometheusOperatorCrds installs them first
            "prometheus": {"prometheusSpec": {"replicas": prometheus, "retention": block.retention, **selectors},
                           "podDisruptionBudget": {"enabled": prometheus > 1}},
            "alertmanager": {
                "podDisruptionBudget": {"enabled": alertmanager > 1},
                "config": alertmanager_config(block.alertmanager.receivers, block.drift, args.retrained),
                "alertmanagerSpec": {"replicas": alertmanager,
                                     "secrets": [RECEIVERS_SECRET] if block.alertmanager.receivers else []},
            },
            "grafana": {
                "replicas": 2 if ctx.prod_like else 1,
                **grafana,
                # No chart-generated admin password: a random one is a new diff on every render.
                "admin": {"existingSecret": GRAFANA_ADMIN_SECRET, "userKey": "admin-user",
                          "passwordKey": "admin-password"},
                "sidecar": {"dashboards": {"enabled": True, "label": DASHBOARD_LABEL, "labelValue": "1",
                                           "searchNamespace": cls.chart().namespace}},
            },
            "prometheus-node-exporter": {"namespaceOverride": NODE_EXPORTER_NAMESPACE},
            "prometheusOperator": {"admissionWebhooks": {
                # With cert-manager the webhook certificate is issued in-cluster; the chart's patch
                # Jobs would rewrite caBundle behind the engine's back.
                "certManager": {"enabled": ctx.cert_manager},
                "patch": {"enabled": not ctx.cert_manager},
            }},
        }
        if ctx.mirror_registry:
            values["global"]["imageRegistry"] = ctx.mirror_registry
        return values

    @classmethod
    def tenant_ingress(cls, block: MonitoringArgs, ctx: PlatformContext) -> tuple[Peer, ...]:
        # Prometheus scrapes team workloads' ServiceMonitors.
        return (Peer("monitoring", cls.chart().namespace),)

    @classmethod
    def images(cls, block: MonitoringArgs, ctx: PlatformContext) -> tuple[str, ...]:
        # With cert-manager the admission webhook needs no certgen Jobs.
        return tuple(i for i in cls.chart().images if not (ctx.cert_manager and "kube-webhook-certgen" in i))

    def prerequisites(self, name: str, args: MonitoringArgs, ctx: PlatformContext,
                      opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        block = args.monitoring
        ns = self.chart().namespace
        # node-exporter's namespace, privileged, before the release that renders the DaemonSet into it.
        exporter_ns = namespace(resource_name(name, "node-exporter"), NODE_EXPORTER_NAMESPACE, name, ctx, opts,
                                pod_security="privileged")
        made: list[pulumi.Resource] = [exporter_ns]
        pulls = pull_secret(resource_name(name, "node-exporter"),
                            ctx.metadata(PULL_SECRET, name, namespace=NODE_EXPORTER_NAMESPACE), ctx,
                            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[exporter_ns])))
        made += [pulls] if pulls else []
        admin_password = ctx.secrets.grafana_admin_password
        if admin_password is None:
            raise ValueError("monitoring needs the stack secret plinth:grafanaAdminPassword")
        made.append(stack_secret(
            resource_name(name, "grafana-admin"), ctx.metadata(GRAFANA_ADMIN_SECRET, name, namespace=ns),
            "plinth:grafanaAdminPassword", {"admin-user": "admin", "admin-password": admin_password}, opts))
        if block.alertmanager.receivers:
            if ctx.secrets.alert_receivers is None:
                raise ValueError("alertmanager receivers need the stack secret plinth:alertReceivers")
            names = [receiver.name for receiver in block.alertmanager.receivers]
            made.append(stack_secret(
                resource_name(name, "alertmanager-receivers"), ctx.metadata(RECEIVERS_SECRET, name, namespace=ns),
                "plinth:alertReceivers",
                pulumi.Output.secret(ctx.secrets.alert_receivers).apply(
                    lambda urls: {n: str(urls[n]) for n in names}),
                opts))
        if args.oidc:
            if ctx.secrets.grafana_oidc_client_secret is None:
                raise ValueError("Grafana's sign-on needs the stack secret plinth:grafanaOidcClientSecret")
            made.append(stack_secret(
                resource_name(name, "grafana-oidc"), ctx.metadata(GRAFANA_OIDC_SECRET, name, namespace=ns),
                "plinth:grafanaOidcClientSecret", {"client-secret": ctx.secrets.grafana_oidc_client_secret}, opts))
            if args.oidc.certificate_authority:
                made.append(k8s.core.v1.ConfigMap(
                    resource_name(name, "grafana-oidc-ca"), metadata=ctx.metadata(GRAFANA_OIDC_CA, name, namespace=ns),
                    data={"ca.crt": args.oidc.certificate_authority}, opts=opts))
        if ctx.prod_like:
            made += postgres_cluster(resource_name(name, "grafana-postgres"), GRAFANA_DB, ns, name,
                                     cluster_spec("grafana", GRAFANA_DB_STORAGE, ctx), ctx, opts)
        for key, body in (("overview", platform_overview(ctx.platform)),
                          ("tenancy", tenancy_quotas(ctx.platform, list(ctx.teams)))):
            made.append(dashboard_config_map(resource_name(name, "dashboard", key), key, body, name, ctx, opts))
        return made

    def objects(self, name: str, block: MonitoringArgs, ctx: PlatformContext, opts: pulumi.ResourceOptions) -> None:
        if block.grafana_host:
            gateway_route(resource_name(name, "grafana-route"),
                          ctx.metadata("grafana", name, namespace=self.chart().namespace),
                          platform_listener(self.chart().namespace),
                          [whole_host_rule(GRAFANA_SERVICE[1], GRAFANA_PORT, "60s")], opts, hostname=block.grafana_host)
        if ctx.prod_like:  # Grafana's database (staging and prod): its instances' metrics, which the backup alerts read
            instance_monitor(resource_name(name, "grafana-postgres", "monitor"), GRAFANA_DB, self.chart().namespace,
                             name, ctx, opts)
