"""JupyterHub's real chart (4.4.0) rendered with Plinth's values: values valid against the chart's own schema, only
the hub, the proxy and the notebook servers' NetworkPolicy (no user scheduler, placeholders, pre-puller DaemonSets,
cluster-wide RBAC or exposed Service), the provider's sign-on in the hub's configuration with no secret in it,
restricted pods from the mirror, the notebooks kept from the metadata server, objects valid against the Kubernetes
schemas, and every policy passing."""

from __future__ import annotations

import base64
import json

import jsonschema
import yaml
from support import CHARTS_DIR, platform_spec
from test_identity import CA
from validation import (
    PlannedRender,
    chart_member,
    coalesce,
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
HOST = "notebooks.models.plinth.internal"
ISSUER = "https://login.corp.internal/realms/ml"
GENERATED = ("hub.config.ConfigurableHTTPProxy.auth_token", "hub.config.CryptKeeper.keys",
             "hub.config.JupyterHub.cookie_secret")
"""What the chart draws itself at its first install (and keeps, through Helm's lookup, on every upgrade)."""
CHECKSUMS = {"hub": "checksum/secret", "proxy": "checksum/auth-token"}
"""The pod annotation of each Deployment that follows them."""


def _spec():
    """Air-gapped staging on-prem with the Gateway and Longhorn, sign-on through a provider with a private CA."""
    return platform_spec({
        "metadata": {"environment": "staging"},
        "charts": {"source": str(CHARTS_DIR)},
        "network": {"cilium": {"enabled": True, "apiServer": {"host": "api.k8s.internal"}},
                    "loadBalancer": {"ranges": ["172.31.255.240/29"]}},
        "certificates": {"certManager": {"enabled": True}},
        "storage": {"longhorn": {"enabled": True}},
        "rbac": {"platformAdminGroup": "ml-admins"},
        "teams": [{"name": "fraud", "groups": {"dataScientist": ["fraud-scientists"]}}],
        "identity": {"oidc": {"issuer": ISSUER, "certificateAuthority": CA,
                              "clients": {"kubernetes": "ml-kubernetes", "jupyterhub": "ml-notebooks"},
                              "endpoints": {"authorization": f"{ISSUER}/auth", "token": f"{ISSUER}/token"}}},
        "notebooks": {"jupyterhub": {"enabled": True, "hostname": HOST}},
        "airgap": {"enabled": True, "mirror": {"registry": MIRROR, "charts": "oci://mirror.corp.internal/charts",
                                               "pullSecret": {"username": "robot"},
                                               "hosts": ["login.corp.internal"]}},
    })


PLANNED = PlannedRender(_spec, "jupyterhub-chart", KUBE)


def _objects(charts_dir, attempt: int = 1) -> tuple[dict, ...]:
    return release_objects(PLANNED.rendered(charts_dir, attempt), "jupyterhub")


def _values() -> dict:
    _, result = PLANNED.planned()
    [release] = [r for r in result.resources if r.type.endswith("helm.sh/v3:Release") and r.name == "jupyterhub"]
    return release.inputs["values"]


def _one(objects, kind: str, name: str | None = None) -> dict:
    [found] = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    return found


def _without_generated(objects) -> list[dict]:
    """The objects without the generated three, and without the checksums of them the hub and the proxy carry
    (their pods restart when those change; in the cluster the lookup keeps them as they are)."""
    out = json.loads(json.dumps(objects))
    for obj in out:
        if obj["kind"] == "Secret":
            for key in GENERATED:
                obj["data"].pop(key)
        if obj["kind"] == "Deployment":
            obj["spec"]["template"]["metadata"]["annotations"].pop(CHECKSUMS[obj["metadata"]["name"]])
    return out


def test_the_values_validate_against_the_charts_own_schema(charts_dir):
    archive = charts_dir / "charts" / CHARTS["jupyterhub"].archive
    defaults = yaml.safe_load(chart_member(archive, "values.yaml"))
    schema = json.loads(chart_member(archive, "values.schema.json"))
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft7Validator(schema).iter_errors(coalesce(defaults, _values()))]
    assert errors == []


def test_only_the_hub_the_proxy_and_the_notebooks_policy_nothing_node_or_cluster_wide(charts_dir, helm):
    objects = _objects(charts_dir)
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == [
        ("ConfigMap", "hub"), ("Deployment", "hub"), ("Deployment", "proxy"), ("NetworkPolicy", "singleuser"),
        ("PersistentVolumeClaim", "hub-db-dir"), ("Role", "hub"), ("RoleBinding", "hub"), ("Secret", "hub"),
        ("Service", "hub"), ("Service", "proxy-api"), ("Service", "proxy-public"), ("ServiceAccount", "hub")]
    assert {o["spec"].get("type", "ClusterIP") for o in objects if o["kind"] == "Service"} == {"ClusterIP"}
    assert _one(objects, "PersistentVolumeClaim")["spec"]["storageClassName"] == "longhorn"


def test_renders_differ_only_in_what_the_chart_generates_at_its_first_install(charts_dir, helm):
    first, second = _objects(charts_dir, 1), _objects(charts_dir, 2)
    assert dump(_without_generated(first)) == dump(_without_generated(second))
    # Nothing of Plinth's is random: the generated three are the chart's own, never in the values or the plan.
    rendered = json.dumps(_values())
    assert not any(key.rsplit(".", 1)[-1] in rendered for key in GENERATED)


def test_the_hub_signs_on_through_the_provider_with_no_secret_in_its_configuration(charts_dir, helm):
    objects = _objects(charts_dir)
    secret = _one(objects, "Secret", "hub")
    assert sorted(secret["data"]) == sorted(("values.yaml", *GENERATED))
    values = yaml.safe_load(base64.b64decode(secret["data"]["values.yaml"]))
    config = values["hub"]["config"]
    assert config["JupyterHub"]["authenticator_class"] == "generic-oauth"
    assert config["JupyterHub"]["admin_access"] is False  # over the chart's default true
    auth = config["GenericOAuthenticator"]
    assert (auth["client_id"], auth["oauth_callback_url"]) == ("ml-notebooks", f"https://{HOST}/hub/oauth_callback")
    assert auth["allowed_groups"] == ["fraud-eng", "fraud-scientists", "ml-admins"]
    assert auth["admin_groups"] == ["ml-admins"]
    assert "client_secret" not in auth and SECRET not in dump(objects)
    pod = _one(objects, "Deployment", "hub")["spec"]["template"]["spec"]
    [hub] = pod["containers"]
    env = {e["name"]: e for e in hub["env"]}
    assert env["OAUTH_CLIENT_SECRET"]["valueFrom"] == {"secretKeyRef": {"name": "jupyterhub-oidc",
                                                                        "key": "client-secret"}}
    assert {"name": "oidc-ca", "mountPath": "/etc/jupyterhub/oidc-ca", "readOnly": True} in hub["volumeMounts"]
    assert {"name": "oidc-ca", "configMap": {"name": "jupyterhub-oidc-ca"}} in pod["volumes"]


def test_restricted_pods_from_the_mirror(charts_dir, helm):
    objects = _objects(charts_dir)
    for name in ("hub", "proxy"):
        assert restricted_problems(_one(objects, "Deployment", name)["spec"]["template"]["spec"]) == [], name
    hub, proxy, notebook = CHARTS["jupyterhub"].images
    assert set().union(*(images_in(o) for o in objects)) == {mirror_image(hub, MIRROR), mirror_image(proxy, MIRROR)}
    # The notebook image is the hub's to start: in its configuration, from the mirror.
    values = yaml.safe_load(base64.b64decode(_one(objects, "Secret", "hub")["data"]["values.yaml"]))
    single = values["singleuser"]["image"]
    assert f"{single['name']}:{single['tag']}" == mirror_image(notebook, MIRROR)
    for obj in objects:
        if obj["kind"] == "Deployment":
            assert obj["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "mirror-pull"}]


def test_the_notebooks_reach_neither_the_metadata_server_nor_outside_the_air_gap(charts_dir, helm):
    policy = _one(_objects(charts_dir), "NetworkPolicy", "singleuser")["spec"]
    cidrs = {peer["ipBlock"]["cidr"] for rule in policy["egress"] for peer in rule.get("to", []) if "ipBlock" in peer}
    assert "0.0.0.0/0" not in cidrs and not any(c.startswith("169.254.169.254") for c in cidrs)
    assert policy["policyTypes"] == ["Ingress", "Egress"]


def test_every_object_validates_against_kubernetes_and_crd_schemas(charts_dir, helm):
    _, result = PLANNED.planned()
    crds = crd_schemas(PLANNED.rendered(charts_dir, 1))
    ours = [obj for _, obj in kubernetes_objects(result)
            if obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "jupyterhub"
            and not obj["apiVersion"].startswith("cilium.io/")]
    assert {"HTTPRoute", "Secret", "ConfigMap", "Namespace"} <= {o["kind"] for o in ours}
    assert validation_failures([*_objects(charts_dir), *ours], f"{KUBE}.0", crds) == []


def test_every_policy_passes_with_the_charts_objects(charts_dir, helm):
    _, result = PLANNED.planned()
    rendered = render_charts(result, KUBE, charts_dir)
    findings = [(r.policy.name, v.subject, v.message) for r in check(result, None, rendered) for v in r.violations]
    assert [f for f in findings if "jupyterhub" in f[1]] == []


def test_with_mlflow_the_charts_policy_lets_the_notebooks_reach_it_and_the_hub_keeps_their_tokens(charts_dir, helm):
    """The same chart with MLflow's sign-on on (dev, not air-gapped): the values still valid, the chart's
    singleuser policy carrying the way to MLflow and selecting the pods MLflow admits, the hooks and the kept
    tokens in the hub's configuration, their encryption keys the chart's own."""
    from test_jupyterhub import SIGN_ON, WITH_MLFLOW
    from test_jupyterhub import spec as hub_spec

    from plinth.engine.charts import chart_archive, template
    from plinth.engine.offline import plan
    from plinth.modules.notebooks import NOTEBOOK_LABELS, mlflow_egress

    result = plan(hub_spec(oidc=SIGN_ON, charts={"source": str(charts_dir)}, **WITH_MLFLOW), "jupyterhub-mlflow")
    [release] = [r for r in result.resources if r.type.endswith("helm.sh/v3:Release") and r.name == "jupyterhub"]
    archive = chart_archive(release, charts_dir)
    defaults = yaml.safe_load(chart_member(archive, "values.yaml"))
    schema = json.loads(chart_member(archive, "values.schema.json"))
    assert [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(
        coalesce(defaults, release.inputs["values"]))] == []
    objects = template(release, archive, KUBE, helm)
    policy = _one(objects, "NetworkPolicy", "singleuser")["spec"]
    assert policy["podSelector"]["matchLabels"] == NOTEBOOK_LABELS  # what MLflow's namespace admits
    assert mlflow_egress()[0] in policy["egress"]
    secret = _one(objects, "Secret", "hub")
    assert "hub.config.CryptKeeper.keys" in secret["data"]  # auth state's keys: drawn by the chart, kept by lookup
    values = yaml.safe_load(base64.b64decode(secret["data"]["values.yaml"]))
    assert values["singleuser"]["extraEnv"] == {"MLFLOW_TRACKING_URI": "http://mlflow.mlflow.svc",
                                                "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
                                                "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false"}
    assert values["hub"]["config"]["GenericOAuthenticator"]["enable_auth_state"] is True
    [config] = values["hub"]["extraConfig"].values()
    assert "c.KubeSpawner.auth_state_hook = mlflow_token_hook('ml-mlflow')" in config
    compile(config, "plinth-mlflow-token", "exec")
    assert SECRET not in dump(objects)
