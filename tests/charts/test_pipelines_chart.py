"""Argo Workflows' real chart (1.0.18) rendered with Plinth's values: its CRDs from the package (no hook Job, no
download), the controller replicated and restricted, no wildcard and no Secret in its RBAC, no RBAC of the chart in
team namespaces, metrics scraped, the executor image mirrored, and objects valid against the Kubernetes schemas."""

from __future__ import annotations

import json

import pytest
import yaml
from support import CHARTS_DIR, platform_spec
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
from plinth.engine.offline import plan
from plinth.governance.check import check
from plinth.mirror import mirror_list
from plinth.render import kubernetes_objects

KUBE = "1.34"
MIRROR = "mirror.corp.internal/mirror"
TEAMS = [{"name": "fraud", "groups": {"dataScientist": ["fraud-ds"], "viewer": ["fraud-view"]}}]


def _spec():
    """Air-gapped staging with monitoring, the object store and a team: the controller replicated, metrics
    scraped, the team's artifact repository in the store."""
    return platform_spec({
        "metadata": {"environment": "staging"},
        "charts": {"source": str(CHARTS_DIR)},
        "monitoring": {"enabled": True},
        "storage": {"objectStore": {"enabled": True}},
        # The team's keys to the store come from Vault, through its secrets operator.
        "certificates": {"certManager": {"enabled": True}},
        "secrets": {"vault": {"enabled": True}},
        "pipelines": {"argo": {"enabled": True}},
        "teams": TEAMS,
        "airgap": {"enabled": True, "mirror": {"registry": MIRROR, "charts": "oci://mirror.corp.internal/charts",
                                               "pullSecret": {"username": "robot"}}},
    })


PLANNED = PlannedRender(_spec, "argo-chart", KUBE)
WITH_SERVER = PlannedRender(lambda: platform_spec(_spec().model_dump(by_alias=True, exclude_unset=True),
                                                  {"pipelines": {"argo": {"enabled": True, "server": True}}}),
                            "argo-server-chart", KUBE)
_planned, _rendered = PLANNED.planned, PLANNED.rendered


@pytest.fixture(scope="module")
def objects(charts_dir, helm) -> tuple[dict, ...]:
    return release_objects(_rendered(charts_dir, 1), "argo-workflows")


def _one(objects, kind: str, name: str = "argo-workflows-workflow-controller") -> dict:
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def test_two_renders_of_the_same_plan_are_byte_identical(charts_dir, helm):
    assert dump(release_objects(_rendered(charts_dir, 1), "argo-workflows")) == dump(
        release_objects(_rendered(charts_dir, 2), "argo-workflows"))


def test_the_crds_come_from_the_package_with_no_job_downloading_them(objects):
    kinds = sorted(o["kind"] for o in objects)
    assert "Job" not in kinds
    assert sorted(o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition") == [
        f"{name}.argoproj.io" for name in ("clusterworkflowtemplates", "cronworkflows", "workflowartifactgctasks",
                                           "workfloweventbindings", "workflows", "workflowtaskresults",
                                           "workflowtasksets", "workflowtemplates")]
    assert [ref for o in objects for ref in images_in(o) if "kubectl" in ref] == []


def test_only_the_controller_runs_and_the_chart_puts_nothing_in_other_namespaces(objects):
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"] == [
        "argo-workflows-workflow-controller"]
    # The teams' accounts and Roles are Plinth's (team_objects), none of the chart's in `default` or elsewhere.
    assert sorted({o["metadata"].get("namespace") for o in objects} - {None}) == ["argo"]
    assert [o["kind"] for o in objects if o["kind"] in ("Role", "RoleBinding")] == []


def test_the_cluster_rbac_names_every_verb_and_reads_only_its_own_secret(objects):
    rules = [rule for o in objects if o["kind"] in ("ClusterRole", "Role") for rule in o.get("rules") or []]
    assert rules
    assert [rule for rule in rules if "*" in rule.get("verbs", []) + rule.get("resources", [])
            + rule.get("apiGroups", [])] == []
    # The one Secret it reads is its HTTP agent's CA, by name (controller.rbac.secretWhitelist stays empty).
    assert [(rule["verbs"], rule.get("resourceNames")) for rule in rules if "secrets" in rule["resources"]] == [
        (["get"], ["argo-workflows-agent-ca-certificates"])]


def test_the_controller_is_replicated_with_leader_election_and_a_budget(objects):
    deployment = _one(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    [controller] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in controller["env"]}
    # One replica would run with LEADER_ELECTION_DISABLE; two elect a leader, each under its pod's name.
    assert "LEADER_ELECTION_DISABLE" not in env and "LEADER_ELECTION_IDENTITY" in env
    assert _one(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_workflows_run_the_mirrored_executor_as_the_teams_account(objects):
    [controller] = _one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    args = controller["args"]
    assert args[args.index("--executor-image") + 1] == mirror_image("quay.io/argoproj/argoexec:v4.0.6", MIRROR)
    config = _one(objects, "ConfigMap", "argo-workflows-workflow-controller-configmap")["data"]["config"]
    assert "serviceAccountName: argo-workflow" in config
    assert "seccompProfile" in config


def test_metrics_are_scraped(objects):
    monitor = _one(objects, "ServiceMonitor")
    service_ports = {p["name"] for p in _one(objects, "Service")["spec"]["ports"]}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"] and "metrics" in service_ports


def test_every_rendered_image_is_in_the_catalog_and_mirrored(objects):
    spec, _ = _planned()
    [controller] = _one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    executor = controller["args"][controller["args"].index("--executor-image") + 1]
    rendered = set().union(*(images_in(obj) for obj in objects)) | {executor}
    controller_image, executor_image, _ = CHARTS["argo-workflows"].images
    assert rendered == {mirror_image(controller_image, MIRROR), mirror_image(executor_image, MIRROR)}
    assert rendered == {str(i.target) for i in mirror_list(spec).images if i.service == "argo-workflows"}


def test_pods_run_under_the_restricted_pod_security_level(objects):
    assert restricted_problems(_one(objects, "Deployment")["spec"]["template"]["spec"]) == []


def test_every_object_validates_against_kubernetes_and_crd_schemas(objects, charts_dir, helm):
    _, result = _planned()
    crds = crd_schemas(_rendered(charts_dir, 1))
    plinth_objects = [obj for _, obj in kubernetes_objects(result)
                      if obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "argo-workflows"
                      and not obj["apiVersion"].startswith("cilium.io/")]
    kinds = {o["kind"] for o in plinth_objects}
    assert {"Namespace", "ServiceAccount", "Role", "RoleBinding", "NetworkPolicy", "ConfigMap", "Secret"} <= kinds
    assert validation_failures([*objects, *plinth_objects], f"{KUBE}.0", crds) == []
    assert ("monitoring.coreos.com/v1", "ServiceMonitor") in set(crds)


def test_the_server_when_on_is_restricted_serves_tls_and_binds_no_wildcard(charts_dir, helm):
    objects = release_objects(WITH_SERVER.rendered(charts_dir, 1), "argo-workflows")
    [server] = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "argo-workflows-server"]
    pod = server["spec"]["template"]["spec"]
    assert restricted_problems(pod) == []
    [container] = pod["containers"]
    assert [a for a in container["args"] if a.startswith(("--secure", "--auth-mode"))] == [
        "--auth-mode=client", "--secure=true"]
    assert container["image"] == mirror_image(CHARTS["argo-workflows"].images[2], MIRROR)
    # Replicated like the controller (staging), so a drain takes one at a time (policy prod-high-availability).
    assert server["spec"]["replicas"] == 2
    [budget] = [o for o in objects if o["kind"] == "PodDisruptionBudget" and o["metadata"]["name"] == server[
        "metadata"]["name"]]
    assert budget["spec"]["maxUnavailable"] == 1
    rules = [rule for o in objects if o["kind"] in ("ClusterRole", "Role") for rule in o.get("rules") or []]
    assert [rule for rule in rules if "*" in rule.get("verbs", []) + rule.get("resources", [])] == []


def test_prod_with_the_server_passes_every_policy_with_every_chart_object(charts_dir, helm):
    """The policies over the real chart's objects (what `plinth check --charts` runs): replicated workloads with
    their budgets, no wildcard RBAC, restricted pods, images from the mirror."""
    spec = platform_spec(_spec().model_dump(by_alias=True, exclude_unset=True), {
        "metadata": {"environment": "prod"}, "identity": {"reason": "the chart tier checks Argo's objects only"},
        "pipelines": {"argo": {"enabled": True, "server": True}}})
    result = plan(spec, "argo-prod")
    rendered = render_charts(result, KUBE, charts_dir)
    findings = [(r.policy.name, v.subject, v.message) for r in check(result, None, rendered) for v in r.violations]
    # Argo's objects (its namespace, its chart's cluster objects, the teams' workflow objects); the other
    # services of this spec have their own tests.
    assert [f for f in findings if "argo" in f[1]] == []
    assert {o["kind"] for item in rendered for o in item.objects} >= {"ClusterRole", "Deployment",
                                                                      "PodDisruptionBudget"}


# --- the workflow archive -----------------------------------------------------------------------------------

ARCHIVED = PlannedRender(lambda: platform_spec(_spec().model_dump(by_alias=True, exclude_unset=True), {
    "pipelines": {"argo": {"enabled": True, "server": True, "archive": {"enabled": True, "ttl": "14d"}}}}),
    "argo-archive-chart", KUBE)


@pytest.fixture(scope="module")
def archived(charts_dir, helm) -> tuple[dict, ...]:
    return release_objects(ARCHIVED.rendered(charts_dir, 1), "argo-workflows")


def secrets_of(objects, role: str) -> list[tuple[list, list]]:
    """(verbs, resource names) of each rule of a ClusterRole on Secrets."""
    return [(r["verbs"], sorted(set(r.get("resourceNames") or []))) for r in _one(objects, "ClusterRole", role)[
        "rules"] if "secrets" in r["resources"]]


def test_the_archive_reaches_the_controllers_configuration_as_planned(archived):
    config = yaml.safe_load(_one(archived, "ConfigMap", "argo-workflows-workflow-controller-configmap")["data"][
        "config"])
    assert config["persistence"] == {
        "archive": True, "archiveTTL": "14d",
        "postgresql": {"host": "argo-postgres-rw.argo.svc", "port": 5432, "database": "argo",
                       "tableName": "argo_workflows",
                       "userNameSecret": {"name": "argo-postgres-app", "key": "username"},
                       "passwordSecret": {"name": "argo-postgres-app", "key": "password"},
                       "ssl": True, "sslMode": "verify-full"}}


def test_the_controller_and_the_server_read_the_operators_secret_by_name_and_trust_its_ca(archived):
    # The chart's ClusterRoles gain `get` on the `-app` Secret by name (user name and password keys); the
    # controller's reads nothing else but its agent's CA.
    for role in ("argo-workflows-workflow-controller", "argo-workflows-server"):
        assert (["get"], ["argo-postgres-app"]) in secrets_of(archived, role)
    assert sorted(secrets_of(archived, "argo-workflows-workflow-controller")) == [
        (["get"], ["argo-postgres-app"]), (["get"], ["argo-workflows-agent-ca-certificates"])]
    for name in ("argo-workflows-workflow-controller", "argo-workflows-server"):
        pod = _one(archived, "Deployment", name)["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert {"name": "PGSSLROOTCERT", "value": "/etc/argo/postgres-ca/ca.crt"} in container["env"]
        assert {"name": "postgres-ca", "mountPath": "/etc/argo/postgres-ca", "readOnly": True} in container[
            "volumeMounts"]
        assert {"name": "postgres-ca", "secret": {"secretName": "argo-postgres-ca", "items": [
            {"key": "ca.crt", "path": "ca.crt"}]}} in pod["volumes"]
        assert restricted_problems(pod) == []


def test_the_database_admits_exactly_the_rendered_controller_and_server_pods(archived):
    _, result = ARCHIVED.planned()
    [policy] = [obj for _, obj in kubernetes_objects(result) if obj["kind"] == "NetworkPolicy"
                and obj["metadata"]["name"] == "allow-archive-clients"]
    selectors = [peer["podSelector"]["matchLabels"] for peer in policy["spec"]["ingress"][0]["from"]]
    pods = {o["metadata"]["name"]: o["spec"]["template"]["metadata"]["labels"] for o in archived
            if o["kind"] == "Deployment"}
    assert sorted(pods) == ["argo-workflows-server", "argo-workflows-workflow-controller"]
    for labels in pods.values():
        assert [s for s in selectors if s.items() <= labels.items()] != []
    assert all(any(s.items() <= labels.items() for labels in pods.values()) for s in selectors)


def test_the_archives_objects_validate_against_kubernetes_and_crd_schemas(archived, charts_dir, helm):
    _, result = ARCHIVED.planned()
    crds = crd_schemas(ARCHIVED.rendered(charts_dir, 1))
    plinth_objects = [obj for _, obj in kubernetes_objects(result)
                      if obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "argo-workflows"
                      and not obj["apiVersion"].startswith("cilium.io/")]
    assert {"Cluster", "PodMonitor"} <= {o["kind"] for o in plinth_objects}
    assert ("postgresql.cnpg.io/v1", "Cluster") in set(crds)
    assert validation_failures([*archived, *plinth_objects], f"{KUBE}.0", crds) == []


# --- the server behind the platform's sign-on --------------------------------------------------------------

HOST = "argo.models.plinth.internal"
OIDC = {"issuer": "https://login.corp.internal/realms/ml", "groupsClaim": "roles",
        "clients": {"kubernetes": "ml-kubernetes", "argo": "ml-argo"}}


def _signed_on(environment: str = "staging", **overrides):
    """The spec above with the Gateway, and the server on it behind the provider's sign-on (a private CA)."""
    from test_identity import CA

    return platform_spec(_spec().model_dump(by_alias=True, exclude_unset=True), {
        "metadata": {"environment": environment},
        "network": {"cilium": {"enabled": True, "apiServer": {"host": "api.k8s.internal"}},
                    "loadBalancer": {"ranges": ["172.31.255.240/29"]}},
        "certificates": {"certManager": {"enabled": True}},
        "rbac": {"platformAdminGroup": "ml-admins"},
        "identity": {"oidc": {**OIDC, "certificateAuthority": CA}},
        "pipelines": {"argo": {"enabled": True, "server": True, "hostname": HOST}},
        # The provider is inside the air gap.
        "airgap": {"mirror": {"hosts": ["login.corp.internal"]}}}, overrides)


SIGNED_ON = PlannedRender(_signed_on, "argo-sso-chart", KUBE)


@pytest.fixture(scope="module")
def sso_objects(charts_dir, helm) -> tuple[dict, ...]:
    return release_objects(SIGNED_ON.rendered(charts_dir, 1), "argo-workflows")


def test_the_signed_on_server_renders_identically_twice(sso_objects, charts_dir):
    assert dump(sso_objects) == dump(release_objects(SIGNED_ON.rendered(charts_dir, 2), "argo-workflows"))


def test_the_server_runs_in_sso_mode_with_its_rbac_and_the_providers_ca(sso_objects):
    server = _one(sso_objects, "Deployment", "argo-workflows-server")
    pod = server["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert [a for a in container["args"] if a.startswith(("--secure", "--auth-mode"))] == [
        "--auth-mode=sso", "--secure=false"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SSO_DELEGATE_RBAC_TO_NAMESPACE"] == "true" and env["SSL_CERT_DIR"] == "/etc/argo-server/oidc-ca"
    assert {"name": "oidc-ca", "mountPath": "/etc/argo-server/oidc-ca", "readOnly": True} in container["volumeMounts"]
    assert {"name": "oidc-ca", "configMap": {"name": "argo-server-oidc-ca"}} in pod["volumes"]
    assert restricted_problems(pod) == []
    config = yaml.safe_load(_one(sso_objects, "ConfigMap", "argo-workflows-workflow-controller-configmap")["data"][
        "config"])
    assert config["sso"] == {
        "issuer": OIDC["issuer"], "clientId": {"name": "argo-server-sso", "key": "client-id"},
        "clientSecret": {"name": "argo-server-sso", "key": "client-secret"},
        "redirectUrl": f"https://{HOST}/oauth2/callback", "rbac": {"enabled": True},
        "scopes": ["email", "profile", "groups"], "sessionExpiry": "8h", "customGroupClaimName": "roles"}
    # The chart renders no route of its own (Plinth's is on the platform Gateway), and no Secret.
    assert [o["kind"] for o in sso_objects if o["kind"] in ("HTTPRoute", "Ingress", "Secret")] == []


def test_the_server_reads_only_the_accounts_tokens_and_its_own_key(sso_objects):
    [role] = [o for o in sso_objects if o["kind"] == "ClusterRole" and o["metadata"]["name"] ==
              "argo-workflows-server"]
    secrets = [(rule["verbs"], rule.get("resourceNames")) for rule in role["rules"] if "secrets" in rule["resources"]]
    assert secrets == [
        (["get"], ["sso"]), (["create"], None),
        (["get"], ["argo-sso-admin.service-account-token", "argo-sso-login.service-account-token",
                   "argo-sso-user.service-account-token", "argo-sso-viewer.service-account-token"])]
    assert [r for r in role["rules"] if "serviceaccounts" in r["resources"]] == [
        {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get", "list", "watch"]}]


def test_no_client_secret_is_in_the_plan_or_the_render(sso_objects, charts_dir):
    from plinth.plan import SECRET

    _, result = SIGNED_ON.planned()
    [sso] = [r.inputs for r in result.resources if r.inputs.get("kind") == "Secret"
             and r.inputs["metadata"]["name"] == "argo-server-sso"]
    assert sso["stringData"] == SECRET
    # The offline engine's stand-in for every stack secret reaches neither the values nor the chart's objects.
    [release] = [r for r in result.resources if r.name == "argo-workflows" and r.type.endswith("Release")]
    assert SECRET not in json.dumps(release.inputs) and SECRET not in dump(sso_objects)


def test_prod_with_the_signed_on_server_passes_every_policy_with_every_chart_object(charts_dir, helm):
    """ui-sign-on over the real objects: the route reaches a server in SSO mode; no wildcard in the accounts'
    roles; the token Secrets name their source."""
    result = plan(_signed_on("prod"), "argo-sso-prod")
    rendered = render_charts(result, KUBE, charts_dir)
    findings = [(r.policy.name, v.subject, v.message) for r in check(result, None, rendered) for v in r.violations]
    assert [f for f in findings if "argo" in f[1] or f[0] == "ui-sign-on"] == []
    assert [o for _, o in kubernetes_objects(result) if o["kind"] == "HTTPRoute"
            and o["metadata"]["namespace"] == "argo"]


def test_the_signed_on_objects_validate_against_kubernetes_and_crd_schemas(sso_objects, charts_dir):
    _, result = SIGNED_ON.planned()
    crds = crd_schemas(SIGNED_ON.rendered(charts_dir, 1))
    ours = [obj for _, obj in kubernetes_objects(result)
            if obj["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "argo-workflows"
            and not obj["apiVersion"].startswith("cilium.io/")]
    assert {"HTTPRoute", "ClusterRole", "ClusterRoleBinding", "ServiceAccount", "Secret"} <= {o["kind"] for o in ours}
    assert validation_failures([*sso_objects, *ours], f"{KUBE}.0", crds) == []
