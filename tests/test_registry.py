"""Harbor (registry.harbor) under Pulumi's mock runtime: secrets, pinned render-time values, exposure,
air-gap, replicas and storage, and the spec rules around it."""

from __future__ import annotations

import json

import bcrypt
import pulumi
import pytest

from support import PROD_BACKUPS, by_name, of_kind, platform_spec
from test_identity import CA
from plinth.catalog import CHARTS, mirror_image
from plinth.context import PlatformContext, StackSecrets
from plinth.engine.offline import plan, record
from plinth.modules.registry import (
    KEY_LENGTHS,
    REGISTRY_USER,
    SECRETS,
    Harbor,
    derive,
    htpasswd_line,
    secret_value,
)
from plinth.plan import SECRET
from plinth.program import build_platform
from plinth.spec.models import PlatformSpec
from plinth.spec.rules import check_rules

GATEWAY = {"cilium": {"enabled": True, "apiServer": {"host": "api.k8s.internal"}},
           "loadBalancer": {"ranges": ["172.31.255.240/29"]}}
BASE = {"certificates": {"certManager": {"enabled": True}}}
HOST = "harbor.models.plinth.internal"
MIRROR = {"enabled": True, "mirror": {"registry": "mirror.corp.internal/mirror",
                                      "charts": "oci://mirror.corp.internal/charts",
                                      "files": "https://files.corp.internal", "pullSecret": {"username": "robot"}}}


def spec(environment: str = "dev", **overrides) -> PlatformSpec:
    return platform_spec(PROD_BACKUPS if environment == "prod" else {},
                         {**BASE, "metadata": {"environment": environment},
                          "registry": {"harbor": {"enabled": True}}}, overrides)


def platform(environment: str = "dev", **overrides) -> dict:
    return by_name(plan(spec(environment, **overrides), "test"))


def values(resources) -> dict:
    return resources["harbor"].inputs["values"]


def dig(tree: dict, dotted: str):
    for key in dotted.split("."):
        tree = tree[key]
    return tree


@pytest.fixture(scope="module")
def routed():
    return platform("prod", network=GATEWAY, monitoring={"enabled": True},
                    registry={"harbor": {"enabled": True, "hostname": HOST}})


@pytest.fixture(scope="module")
def plain():
    return platform("dev")


# --- secrets ----------------------------------------------------------------------------------------


def test_no_secret_reaches_the_plan_in_clear():
    seed, grafana = "Adm1n-Passw0rd-of-the-stack", "grafana-pw-4242"
    harbor_spec = spec("prod", network=GATEWAY, monitoring={"enabled": True},
                       registry={"harbor": {"enabled": True, "hostname": HOST}})

    def program() -> None:
        build_platform(harbor_spec, StackSecrets(harbor_admin_password=pulumi.Output.secret(seed),
                                                 grafana_admin_password=pulumi.Output.secret(grafana),
                                                 object_store_seed=pulumi.Output.secret("store-seed")))

    resources = {r.name: r for r in sorted(record(program, "test"), key=lambda r: r.custom)}
    everything = json.dumps([r.inputs for r in resources.values()])
    derived = [secret_value(seed, "test", purpose) for keys in SECRETS.values() for purpose in keys.values()]
    assert [value for value in [seed, *derived] if value in everything] == []
    # The admin password and every derived value sit in Secrets Plinth creates, as secret Outputs.
    for name in SECRETS:
        assert resources[name].inputs["stringData"] == SECRET, name
    # The database's password is no value at all: core reads CloudNativePG's Secret.
    database = values(resources)["database"]
    assert database["type"] == "external" and "internal" not in database
    assert "password" not in database["external"] and database["external"]["existingSecret"] == "harbor-postgres-app"


def test_harbor_runs_on_a_platform_postgres_it_verifies(routed):
    harbor, cluster = values(routed), routed["harbor-postgres"]
    assert cluster.inputs["kind"] == "Cluster" and cluster.inputs["metadata"]["namespace"] == "harbor"
    spec_ = cluster.inputs["spec"]
    # prod: a primary and two replicas, a commit acknowledged by one of them; the platform StorageClass.
    assert spec_["instances"] == 3 and spec_["postgresql"]["synchronous"]["number"] == 1
    assert spec_["bootstrap"]["initdb"] == {"database": "registry", "owner": "registry"}
    external = harbor["database"]["external"]
    assert (external["host"], external["sslmode"]) == ("harbor-postgres-rw.harbor.svc", "verify-full")
    assert harbor["caBundleSecretName"] == "harbor-postgres-ca"
    # The Cluster exists before the release, and the operator before both.
    assert cluster.urn in routed["harbor"].dependencies
    assert routed["postgres-operator"].urn in routed["harbor"].dependencies


def test_an_issuer_with_a_private_ca_is_trusted_by_core_only_and_only_with_harbors_client(routed):
    oidc = {"issuer": "https://login.models.plinth.internal", "certificateAuthority": CA,
            "clients": {"kubernetes": "ml-kubernetes", "harbor": "ml-registry"}}
    signing_on = platform("prod", network=GATEWAY, rbac={"platformAdminGroup": "ml-admins"}, identity={"oidc": oidc},
                          registry={"harbor": {"enabled": True, "hostname": HOST, "groupType": "oidc"}})
    harbor = values(signing_on)
    assert harbor["uaaSecretName"] == "harbor-oidc-ca" and harbor["caBundleSecretName"] == "harbor-postgres-ca"
    assert harbor["core"]["extraEnvVars"] == [
        {"name": "SSL_CERT_DIR", "value": "/etc/ssl/certs:/etc/pki/tls/certs:/etc/core/auth-ca"}]
    assert all("extraEnvVars" not in harbor[part] for part in ("jobservice", "portal", "nginx", "exporter"))
    secret = signing_on["harbor-oidc-ca"]
    assert (secret.inputs["type"], secret.inputs["metadata"]["namespace"]) == ("Opaque", "harbor")
    assert secret.urn in signing_on["harbor"].dependencies
    # Without Harbor's client (Harbor keeps its own users), Harbor is not told of the provider.
    oidc["clients"] = {"kubernetes": "ml-kubernetes"}
    alone = platform("prod", network=GATEWAY, identity={"oidc": oidc},
                     registry={"harbor": {"enabled": True, "hostname": HOST}})
    assert "harbor-oidc-ca" not in alone and "uaaSecretName" not in values(alone)
    assert "extraEnvVars" not in values(alone)["core"] and "uaaSecretName" not in values(routed)


def test_the_admin_password_is_the_stack_secret_never_the_chart_default(plain):
    harbor = values(plain)
    assert harbor["existingSecretAdminPassword"] == "harbor-admin"
    assert harbor["existingSecretAdminPasswordKey"] in SECRETS["harbor-admin"]
    assert "harborAdminPassword" not in harbor  # the chart's Harbor12345 is never set, and unused
    # The Secret exists before the release reads it.
    assert plain["harbor-admin"].urn in plain["harbor"].dependencies


def test_a_user_value_cannot_replace_the_admin_secret():
    found = check_rules(spec(registry={"harbor": {"enabled": True,
                                                  "values": {"existingSecretAdminPassword": "mine"}}}))
    assert [(v.loc, v.rule) for v in found] == [
        (("registry", "harbor", "values", "existingSecretAdminPassword"), "values-owned-key")]


def test_derived_secrets_are_stable_independent_and_the_charts_lengths():
    for purpose, length in KEY_LENGTHS.items():
        value = derive("seed", "p1", purpose)
        assert value == derive("seed", "p1", purpose) and len(value) == length and value.isalnum()
        assert value != derive("seed2", "p1", purpose) and value != derive("seed", "p2", purpose)
    assert len({derive("seed", "p1", purpose)[:16] for purpose in KEY_LENGTHS}) == len(KEY_LENGTHS)


def test_the_registry_htpasswd_is_stable_and_matches_the_registry_password():
    line = htpasswd_line("seed", "p1")
    assert line == htpasswd_line("seed", "p1") != htpasswd_line("seed", "p2")
    user, _, hashed = line.partition(":")
    assert user == REGISTRY_USER and hashed.startswith("$2b$10$")
    assert bcrypt.checkpw(derive("seed", "p1", "registry-password").encode(), hashed.encode())
    assert not bcrypt.checkpw(b"harbor_registry_password", hashed.encode())


# --- values the chart would generate at render time --------------------------------------------------


def test_every_render_time_random_value_is_pinned(plain):
    harbor = values(plain)
    pins = {
        "core.existingSecret": "harbor-core-keys",  # randAlphaNum 16
        "core.existingXsrfSecret": "harbor-core-keys",  # randAlphaNum 32
        "core.secretName": "harbor-token",  # genCA
        "existingSecretSecretKey": "harbor-core-keys",  # the chart's static "not-a-secure-key"
        "jobservice.existingSecret": "harbor-jobservice-keys",  # randAlphaNum 16
        "registry.existingSecret": "harbor-registry-keys",  # randAlphaNum 16
        "registry.credentials.existingSecret": "harbor-registry-keys",  # htpasswd, random salt
        "expose.tls.enabled": False,  # nginx's genCA
        "internalTLS.enabled": False,  # genCA per component
    }
    assert {key: dig(harbor, key) for key in pins} == pins
    # Each named key is one the Secret holds.
    assert {dig(harbor, "core.existingXsrfSecretKey"), "secret"} <= set(SECRETS["harbor-core-keys"])
    assert dig(harbor, "jobservice.existingSecretKey") in SECRETS["harbor-jobservice-keys"]
    assert dig(harbor, "registry.existingSecretKey") in SECRETS["harbor-registry-keys"]


def test_the_token_key_is_a_cert_manager_certificate_kept_across_renewals(plain):
    cert = plain["harbor-token"].inputs
    assert cert["kind"] == "Certificate" and cert["spec"]["secretName"] == "harbor-token"
    assert cert["spec"]["issuerRef"]["name"] == "plinth-ca"
    assert cert["spec"]["privateKey"] == {"algorithm": "RSA", "size": 4096, "rotationPolicy": "Never"}
    assert plain["harbor-token"].urn in plain["harbor"].dependencies


# --- exposure -----------------------------------------------------------------------------------------


def test_an_httproute_on_the_platform_gateway_with_a_hostname(routed):
    harbor = values(routed)
    assert harbor["expose"]["type"] == "clusterIP" and harbor["externalURL"] == f"https://{HOST}"
    [route] = of_kind(routed, "HTTPRoute")
    assert route.inputs["metadata"]["namespace"] == "harbor"
    assert route.inputs["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                                    "name": "plinth", "namespace": "plinth-gateway",
                                                    "sectionName": "harbor"}]
    assert route.inputs["spec"]["hostnames"] == [HOST]
    assert route.inputs["spec"]["rules"][0]["backendRefs"] == [{"name": "harbor", "port": 80}]
    # The Gateway's proxies may reach Harbor's namespace on nginx's port.
    [allow] = [r for r in routed.values() if r.name == "harbor-allow-from-gateway"]
    assert allow.inputs["spec"]["ingress"][0]["fromEntities"] == ["ingress"]


def test_without_the_gateway_harbor_is_a_cluster_ip_service_only(plain):
    assert of_kind(plain, "HTTPRoute") == []
    assert values(plain)["externalURL"] == "http://harbor.harbor.svc"
    # A hostname without the Gateway routes nothing, and the rules say so.
    unrouted = spec(registry={"harbor": {"enabled": True, "hostname": HOST}})
    assert of_kind({r.name: r for r in plan(unrouted, "test").resources}, "HTTPRoute") == []
    assert [v.rule for v in check_rules(unrouted)] == ["harbor-needs-gateway"]


def test_teams_reach_harbor_on_its_front_door_port_only(plain):
    egress = plain["tenancy-fraud-allow-to-harbor"].inputs["spec"]["egress"][0]
    assert egress["ports"] == [{"protocol": "TCP", "port": 8080}]
    assert Harbor.tenant_egress(Harbor.block(spec()), PlatformContext.from_spec(spec()))[0].namespace == "harbor"


# --- trivy, images ------------------------------------------------------------------------------------


def test_trivy_scans_offline_in_air_gap_mode_only(plain):
    assert {k: values(plain)["trivy"][k] for k in ("enabled", "skipUpdate", "offlineScan")} == {
        "enabled": True, "skipUpdate": False, "offlineScan": False}
    trivy = values(platform("dev", airgap=MIRROR))["trivy"]
    assert (trivy["skipUpdate"], trivy["skipJavaDBUpdate"], trivy["offlineScan"]) == (True, True, True)


def _value_images(tree) -> set[str]:
    found: set[str] = set()
    if isinstance(tree, dict):
        if set(tree) == {"repository", "tag"}:
            found.add(f"{tree['repository']}:{tree['tag']}")
        for value in tree.values():
            found |= _value_images(value)
    return found


def test_every_image_comes_through_the_mirror_with_its_pull_secret():
    resources = platform("dev", airgap=MIRROR, monitoring={"enabled": True})
    harbor = values(resources)
    mirror = MIRROR["mirror"]["registry"]
    # Every chart image but the internal database's (the platform's CloudNativePG serves Harbor).
    assert _value_images(harbor) == {mirror_image(ref, mirror) for ref in CHARTS["harbor"].images
                                     if "/harbor-db:" not in ref}
    assert harbor["imagePullSecrets"] == [{"name": "mirror-pull"}]
    assert resources["harbor-mirror-pull"].inputs["metadata"]["namespace"] == "harbor"


def test_the_exporter_image_is_listed_only_with_metrics(plain, routed):
    assert values(plain)["metrics"] == {"enabled": False, "serviceMonitor": {"enabled": False}}
    assert values(routed)["metrics"] == {"enabled": True, "serviceMonitor": {"enabled": True}}
    off = Harbor.images(Harbor.block(spec()), PlatformContext.from_spec(spec()))
    assert set(CHARTS["harbor"].images) - set(off) == {"docker.io/goharbor/harbor-exporter:v2.15.1",
                                                       "docker.io/goharbor/harbor-db:v2.15.1"}


# --- replicas and storage -----------------------------------------------------------------------------


def test_two_replicas_in_prod_with_shared_volumes_one_in_dev_with_recreate(plain, routed):
    for resources, replicas, access, strategy in ((plain, 1, "ReadWriteOnce", "Recreate"),
                                                  (routed, 2, "ReadWriteMany", "RollingUpdate")):
        harbor = values(resources)
        assert {part: harbor[part]["replicas"] for part in ("nginx", "portal", "core", "jobservice", "registry")} \
            == dict.fromkeys(("nginx", "portal", "core", "jobservice", "registry"), replicas)
        claims = harbor["persistence"]["persistentVolumeClaim"]
        assert (claims["registry"]["accessMode"], claims["jobservice"]["jobLog"]["accessMode"]) == (access, access)
        assert {claims[part]["accessMode"] for part in ("redis", "trivy")} == {"ReadWriteOnce"}
        assert harbor["updateStrategy"] == {"type": strategy}
    single = values(platform("prod", registry={"harbor": {"enabled": True, "replicas": 1}}))
    assert single["core"]["replicas"] == 1
    assert single["persistence"]["persistentVolumeClaim"]["registry"]["accessMode"] == "ReadWriteOnce"


def test_volumes_use_the_spec_sizes_on_the_platform_storage_class(plain):
    claims = values(plain)["persistence"]["persistentVolumeClaim"]
    assert claims["registry"]["size"] == "50Gi" and claims["trivy"]["size"] == "5Gi"
    assert {claims[p]["storageClass"] for p in ("registry", "redis", "trivy")} == {""}
    assert "storageClass" not in platform("dev")["harbor-postgres"].inputs["spec"]["storage"]
    longhorn = values(platform("dev", storage={"longhorn": {"enabled": True}},
                               registry={"harbor": {"enabled": True, "registrySize": "200Gi"}}))
    claims = longhorn["persistence"]["persistentVolumeClaim"]
    assert claims["registry"] == {"storageClass": "longhorn", "accessMode": "ReadWriteOnce", "size": "200Gi"}
    assert claims["jobservice"]["jobLog"]["storageClass"] == "longhorn"
    explicit = platform("dev", storage={"longhorn": {"enabled": True}},
                        registry={"harbor": {"enabled": True, "storageClass": "fast-ssd", "databaseSize": "9Gi"}})
    assert values(explicit)["persistence"]["persistentVolumeClaim"]["redis"]["storageClass"] == "fast-ssd"
    assert explicit["harbor-postgres"].inputs["spec"]["storage"] == {"size": "9Gi", "storageClass": "fast-ssd"}


def test_the_namespace_is_restricted():
    ns = platform("dev")["harbor-namespace"].inputs["metadata"]["labels"]
    assert ns["pod-security.kubernetes.io/enforce"] == "restricted"


# --- rules ----------------------------------------------------------------------------------------------


def test_rules_cert_manager_and_a_hostname_the_gateway_serves():
    def rules(**overrides):
        return [(v.loc, v.rule) for v in check_rules(spec(**overrides))]

    assert rules(network=GATEWAY, registry={"harbor": {"enabled": True, "hostname": HOST}}) == []
    assert rules(certificates={"certManager": {"enabled": False}}) == [
        (("registry", "harbor", "enabled"), "harbor-needs-cert-manager")]
    # The listener's wildcard certificate covers one label only.
    assert rules(network=GATEWAY, registry={"harbor": {"enabled": True, "hostname": f"a.{HOST}"}}) == [
        (("registry", "harbor", "hostname"), "harbor-hostname")]
    assert rules(network={**GATEWAY, "gateway": {"hostname": "registry.corp.internal"}},
                 registry={"harbor": {"enabled": True, "hostname": "registry.corp.internal"}}) == []
