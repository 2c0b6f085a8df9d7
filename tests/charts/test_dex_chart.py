"""Dex's real chart (0.24.0) rendered with Plinth's values: the configuration Plinth writes (issuer, Kubernetes
storage, the LDAP connector, the static clients) with no secret in it, the secrets by reference from
dex-credentials, none of the chart's RBAC (its Role is a wildcard), restricted pods from the mirror, replicated with
a budget in staging, identical renders and objects valid against the Kubernetes schemas."""

from __future__ import annotations

import base64

import yaml
from support import CHARTS_DIR, platform_spec
from test_identity import CA
from validation import (
    PlannedRender,
    crd_schemas,
    dump,
    images_in,
    release_objects,
    restricted_problems,
    validation_failures,
)

from plinth.catalog import CHARTS, mirror_image
from plinth.engine.charts import render_charts
from plinth.governance.check import check
from plinth.plan import SECRET
from plinth.render import kubernetes_objects

KUBE = "1.34"
MIRROR = "mirror.corp.internal/mirror"
HOST = "login.models.plinth.internal"


def _spec(environment: str = "staging"):
    return platform_spec({
        "metadata": {"environment": environment},
        "charts": {"source": str(CHARTS_DIR)},
        "network": {"cilium": {"enabled": True, "apiServer": {"host": "api.k8s.internal"}},
                    "loadBalancer": {"ranges": ["172.31.255.240/29"]}},
        "certificates": {"certManager": {"enabled": True}},
        "rbac": {"platformAdminGroup": "ml-admins"},
        "identity": {
            "oidc": {"issuer": f"https://{HOST}", "certificateAuthority": CA,
                     "clients": {"kubernetes": "ml-kubernetes", "argo": "ml-argo"}},
            "dex": {"enabled": True, "hostname": HOST, "ldap": [{
                "name": "corp-ad", "host": "ad.corp.internal:636", "certificateAuthority": CA,
                "bindDn": "cn=dex,ou=services,dc=corp,dc=internal",
                "userSearch": {"baseDn": "ou=people,dc=corp,dc=internal", "username": "sAMAccountName"},
                "groupSearch": {"baseDn": "ou=groups,dc=corp,dc=internal", "filter": "(objectClass=group)"}}]}},
        "pipelines": {"argo": {"enabled": True, "server": True, "hostname": "argo.models.plinth.internal"}},
        "airgap": {"enabled": True, "mirror": {"registry": MIRROR, "charts": "oci://mirror.corp.internal/charts",
                                               "pullSecret": {"username": "robot"},
                                               "hosts": ["ad.corp.internal:636"]}},
    })


PLANNED = PlannedRender(_spec, "dex-chart", KUBE)


def _objects(charts_dir, attempt: int = 1) -> tuple[dict, ...]:
    return release_objects(PLANNED.rendered(charts_dir, attempt), "dex")


def _one(objects, kind: str) -> dict:
    [found] = [o for o in objects if o["kind"] == kind]
    return found


def test_two_renders_of_the_same_plan_are_byte_identical(charts_dir, helm):
    assert dump(_objects(charts_dir, 1)) == dump(_objects(charts_dir, 2))


def test_the_configuration_holds_no_secret_only_references(charts_dir, helm):
    objects = _objects(charts_dir)
    config = yaml.safe_load(base64.b64decode(_one(objects, "Secret")["data"]["config.yaml"]))
    assert config["issuer"] == f"https://{HOST}"
    assert config["storage"] == {"type": "kubernetes", "config": {"inCluster": True}}
    [ldap] = config["connectors"]
    assert ldap["config"]["bindPW"] == "$DEX_LDAP_CORP_AD_BIND_PW"
    assert ldap["config"]["rootCA"] == "/etc/ldap-ca/corp-ad.crt" and ldap["config"]["insecureSkipVerify"] is False
    assert [c.get("secretEnv") for c in config["staticClients"]] == [None, "DEX_CLIENT_ARGO_SECRET"]
    assert SECRET not in dump(objects)
    [container] = _one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert env == {name: {"name": "dex-credentials", "key": name}
                   for name in ("DEX_LDAP_CORP_AD_BIND_PW", "DEX_CLIENT_ARGO_SECRET")}
    assert {"name": "ldap-ca", "mountPath": "/etc/ldap-ca", "readOnly": True} in container["volumeMounts"]


def test_no_rbac_of_the_chart_and_a_restricted_replicated_pod_from_the_mirror(charts_dir, helm):
    objects = _objects(charts_dir)
    assert sorted(o["kind"] for o in objects) == [
        "Deployment", "PodDisruptionBudget", "Secret", "Service", "ServiceAccount"]
    deployment = _one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2 and _one(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    pod = deployment["spec"]["template"]["spec"]
    assert restricted_problems(pod) == []
    assert set().union(*(images_in(o) for o in objects)) == {mirror_image(CHARTS["dex"].images[0], MIRROR)}
    assert _one(objects, "ServiceAccount")["metadata"]["name"] == "dex"
    assert {p["port"] for p in _one(objects, "Service")["spec"]["ports"]} >= {5556}


def test_every_object_validates_against_kubernetes_and_crd_schemas(charts_dir, helm):
    _, result = PLANNED.planned()
    crds = crd_schemas(PLANNED.rendered(charts_dir, 1))
    ours = [obj for _, obj in kubernetes_objects(result)
            if obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "dex"
            and not obj["apiVersion"].startswith("cilium.io/")]
    assert {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding", "HTTPRoute", "Secret", "ConfigMap"} <= {
        o["kind"] for o in ours}
    assert validation_failures([*_objects(charts_dir), *ours], f"{KUBE}.0", crds) == []


def test_every_policy_passes_with_the_charts_objects(charts_dir, helm):
    _, result = PLANNED.planned()
    rendered = render_charts(result, KUBE, charts_dir)
    findings = [(r.policy.name, v.subject, v.message) for r in check(result, None, rendered) for v in r.violations]
    assert [f for f in findings if "dex" in f[1]] == []
