"""Argo Workflows (pipelines.argo) under Pulumi's mock runtime: the controller in its own restricted namespace,
HA in staging and prod, metrics, the CRDs without a download, each team's account with the executor's Role only,
the teams' workflow roles, the workflow pods' way to the API server, images, and the rules around it."""

from __future__ import annotations

import json

import pytest

from support import ROOT, SERVICES, by_key, network_policies, platform_spec
from test_identity import CA
from plinth.catalog import CHARTS
from plinth.engine.offline import plan
from plinth.mirror import mirror_list
from plinth.modules.objectstore import SEED as OBJECT_STORE_SEED
from plinth.modules.objectstore import ObjectStore
from plinth.modules.objectstore.identities import derive, s3_config
from plinth.modules.pipelines import EXECUTOR_RULES
from plinth.program import needed_secrets
from plinth.spec.models import PlatformSpec
from plinth.spec.rules import check_rules

TEAMS = [{"name": "fraud", "groups": {"dataScientist": ["fraud-ds"], "mlEngineer": ["fraud-ml"],
                                      "viewer": ["fraud-view"]}},
         {"name": "search"}]
CILIUM = {"cilium": {"enabled": True, "apiServer": {"host": "api.k8s.internal"}}}


def spec(environment: str = "dev", argo: dict | None = None, **overrides) -> PlatformSpec:
    return platform_spec({"metadata": {"environment": environment}, "teams": TEAMS,
                          "pipelines": {"argo": {"enabled": True, **(argo or {})}}}, overrides)


def planned(environment: str = "dev", argo: dict | None = None, **overrides) -> dict:
    """The planned Kubernetes objects by (kind, namespace, name), and the release under RELEASE."""
    result = plan(spec(environment, argo, **overrides), "test")
    [release] = [r for r in result.resources if r.type.endswith("helm.sh/v3:Release") and r.name == "argo-workflows"]
    return {**by_key(result), RELEASE: release}


RELEASE = ("Release", "argo", "argo-workflows")


def values(objects: dict) -> dict:
    return objects[RELEASE].inputs["values"]


@pytest.fixture(scope="module")
def dev():
    return planned("dev")


@pytest.fixture(scope="module")
def staging():
    return planned("staging", monitoring={"enabled": True})


def test_off_by_default():
    plain = platform_spec({"teams": TEAMS})
    assert plain.pipelines.argo.enabled is False and plain.pipelines.argo.server is False
    assert [r for r in plan(plain, "test").resources if "argo" in r.name] == []


# --- the controller -----------------------------------------------------------------------------------


def test_the_controller_runs_in_its_own_restricted_namespace(dev):
    namespace = dev["Namespace", None, "argo"].inputs["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "restricted"
    argo = values(dev)
    assert argo["controller"]["podSecurityContext"] == {"runAsNonRoot": True,
                                                       "seccompProfile": {"type": "RuntimeDefault"}}
    assert argo["controller"]["securityContext"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True,
        "runAsNonRoot": True}
    # Default-deny ingress, like every platform namespace.
    assert {"default-deny-ingress", "allow-same-namespace"} <= set(network_policies(dev)["argo"])


def test_the_crds_render_from_the_package_not_a_download(dev):
    assert values(dev)["crds"] == {"install": True, "full": False, "keep": True}


def test_one_controller_in_dev_two_with_a_budget_in_staging_and_prod(dev, staging):
    assert values(dev)["controller"]["replicas"] == 1
    assert values(dev)["controller"]["pdb"] == {"enabled": False, "maxUnavailable": 1}
    assert values(staging)["controller"]["replicas"] == 2
    assert values(staging)["controller"]["pdb"] == {"enabled": True, "maxUnavailable": 1}
    assert values(planned("dev", {"replicas": 3}))["controller"]["replicas"] == 3


def test_metrics_are_scraped_when_monitoring_is_on(dev, staging):
    assert values(dev)["controller"]["serviceMonitor"] == {"enabled": False, "namespace": "argo"}
    assert values(staging)["controller"]["serviceMonitor"] == {"enabled": True, "namespace": "argo"}
    assert "allow-from-monitoring" in network_policies(staging)["argo"]


def test_the_controller_reads_no_secret_and_the_chart_binds_nothing_in_team_namespaces(dev):
    argo = values(dev)
    assert argo["controller"]["rbac"] == {"create": True, "secretWhitelist": [], "accessAllSecrets": False,
                                          "writeConfigMaps": False}
    assert argo["controller"]["workflowNamespaces"] == []
    assert argo["workflow"] == {"serviceAccount": {"create": False}, "rbac": {"create": False}}


def test_the_server_is_off_unless_asked_and_then_each_caller_brings_their_token(dev):
    assert values(dev)["server"]["enabled"] is False
    server = values(planned("dev", {"server": True}))["server"]
    assert server["enabled"] is True and server["authModes"] == ["client"] and server["ingress"] == {
        "enabled": False}
    assert server["secure"] is True  # the callers' tokens never travel in clear


# --- the teams ----------------------------------------------------------------------------------------


def test_every_team_gets_the_workflow_account_with_the_executors_role_only(dev):
    for team in ("fraud", "search"):
        account = dev["ServiceAccount", team, "argo-workflow"].inputs
        assert account["automountServiceAccountToken"] is True
        role = dev["Role", team, "argo-workflow-executor"].inputs
        assert role["rules"] == EXECUTOR_RULES == [
            {"apiGroups": ["argoproj.io"], "resources": ["workflowtaskresults"], "verbs": ["create", "patch"]}]
        binding = dev["RoleBinding", team, "argo-workflow-executor"].inputs
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "argo-workflow", "namespace": team}]
        assert binding["roleRef"]["name"] == "argo-workflow-executor"
    # Workflows run as that account unless they name another of the team's.
    defaults = values(dev)["controller"]["workflowDefaults"]["spec"]
    assert defaults["serviceAccountName"] == "argo-workflow"


def test_the_teams_groups_submit_or_watch_their_workflows(dev):
    users = dev["RoleBinding", "fraud", "plinth:workflows"].inputs["subjects"]
    assert [s["name"] for s in users] == ["fraud-ds", "fraud-ml"]
    writes = dev["Role", "fraud", "plinth:workflows"].inputs["rules"][0]
    assert writes["resources"] == ["cronworkflows", "workflows", "workflowtemplates"] and "*" not in writes["verbs"]
    viewers = dev["RoleBinding", "fraud", "plinth:workflows-viewer"].inputs["subjects"]
    assert [s["name"] for s in viewers] == ["fraud-view"]
    assert set(dev["Role", "fraud", "plinth:workflows-viewer"].inputs["rules"][0]["verbs"]) == {"get", "list", "watch"}
    # A team without groups gets no Role bound to no one.
    assert [k for k in dev if k[1] == "search" and k[2].startswith("plinth:workflows")] == []


def test_only_workflow_pods_reach_the_api_server(dev):
    kind, policy = network_policies(dev)["fraud"]["allow-workflows-to-apiserver"]
    assert kind == "NetworkPolicy"
    assert policy["podSelector"] == {"matchExpressions": [{"key": "workflows.argoproj.io/workflow",
                                                           "operator": "Exists"}]}
    assert policy["egress"][0]["ports"] == [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]
    # Under Cilium, the API server by identity rather than any address.
    kind, policy = network_policies(planned("dev", network=CILIUM))["fraud"]["allow-workflows-to-apiserver"]
    assert kind == "CiliumNetworkPolicy"
    assert policy["endpointSelector"] == {"matchExpressions": [{"key": "workflows.argoproj.io/workflow",
                                                                "operator": "Exists"}]}
    assert policy["egress"][0]["toEntities"] == ["kube-apiserver"]


def test_workflow_pods_run_restricted_and_within_the_teams_quota(dev):
    argo = values(dev)
    assert argo["controller"]["workflowDefaults"]["spec"]["securityContext"] == {
        "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    restricted = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
                  "seccompProfile": {"type": "RuntimeDefault"}}
    assert argo["executor"]["securityContext"] == restricted == argo["mainContainer"]["securityContext"]
    # The init and wait containers count against the team's quota: requests and limits set.
    assert set(argo["executor"]["resources"]) == {"requests", "limits"}


# --- images -------------------------------------------------------------------------------------------


def test_the_executor_image_is_mirrored_with_the_controller_and_the_server_only_when_on():
    controller, executor, server = CHARTS["argo-workflows"].images
    listed = {i.source for i in mirror_list(spec()).images if i.service == "argo-workflows"}
    assert listed == {controller, executor}
    listed = {i.source for i in mirror_list(spec(argo={"server": True})).images if i.service == "argo-workflows"}
    assert listed == {controller, executor, server}


def test_air_gap_pulls_every_image_from_the_mirror():
    mirror = {"enabled": True, "mirror": {"registry": "mirror.corp.internal/mirror",
                                          "charts": "oci://mirror.corp.internal/charts"}}
    argo = values(planned("dev", {"server": True}, airgap=mirror))
    for part in ("controller", "executor", "server"):
        assert argo[part]["image"]["registry"] == "mirror.corp.internal/mirror", part
    assert argo["executor"]["image"]["repository"] == "argoproj/argoexec"


# --- rules --------------------------------------------------------------------------------------------


def test_prod_refuses_a_single_controller():
    found = check_rules(spec("prod", {"replicas": 1}, identity={"reason": "sign-on is tested elsewhere"},
                             storage={"objectStore": {"enabled": True}}))
    assert [(v.loc, v.message, v.rule, v.fix) for v in found if v.rule.startswith("argo")] == [
        (("pipelines", "argo", "replicas"), "prod runs at least 2 workflow controllers (one leads, the other takes "
         "over within the Lease's term)", "argo-prod-ha", "remove replicas (2 in staging and prod), or set 2 or more")]
    assert [v for v in check_rules(spec("staging", {"replicas": 1})) if v.rule.startswith("argo")] == []


def test_a_user_value_cannot_download_the_crds_or_widen_the_controllers_secrets():
    found = check_rules(spec(argo={"values": {"crds": {"full": True},
                                              "controller": {"rbac": {"accessAllSecrets": True}}}}))
    assert [(v.loc, v.message) for v in found] == [
        (("pipelines", "argo", "values", "crds", "full"),
         "crds.full is set by Plinth (crds.full); a value here would be overridden"),
        (("pipelines", "argo", "values", "controller", "rbac", "accessAllSecrets"),
         "controller.rbac.accessAllSecrets is set by Plinth (controller.rbac.accessAllSecrets); a value here would "
         "be overridden")]


# --- artifacts ----------------------------------------------------------------------------------------

STORE = {"objectStore": {"enabled": True}}
VAULT = {"certificates": {"certManager": {"enabled": True}}, "secrets": {"vault": {"enabled": True}}}
"""The teams' keys to the store come from Vault through its secrets operator (rule object-store-needs-...)."""


@pytest.fixture(scope="module")
def stored():
    return planned("dev", storage=STORE, **VAULT)


def test_each_team_keeps_its_artifacts_under_its_own_prefix_of_the_artifacts_bucket(stored):
    for team in ("fraud", "search"):
        repositories = stored["ConfigMap", team, "artifact-repositories"].inputs
        assert repositories["metadata"]["annotations"]["workflows.argoproj.io/default-artifact-repository"] == \
            "default-v1-s3-artifact-repository"
        config = json.loads(repositories["data"]["default-v1-s3-artifact-repository"])
        assert config == {"archiveLogs": False, "s3": {
            "bucket": "test-artifacts", "endpoint": "seaweedfs-s3.object-store.svc:8333", "insecure": False,
            "caSecret": {"name": "object-store-ca", "key": "ca.crt"},
            "region": "us-east-1", "keyFormat": f"workflows/{team}/{{{{workflow.name}}}}/{{{{pod.name}}}}",
            "accessKeySecret": {"name": "argo-artifacts-s3", "key": "accessKey"},
            "secretKeySecret": {"name": "argo-artifacts-s3", "key": "secretKey"}}}
        # The keys are not in the platform's plan: the secrets operator copies them from the team's Vault path.
        assert ("Secret", team, "argo-artifacts-s3") not in stored
        synced = stored["VaultStaticSecret", team, "argo-artifacts-s3"].inputs["spec"]
        assert (synced["vaultAuthRef"], synced["mount"], synced["path"], synced["destination"]["name"]) == \
            ("vault", "teams", f"{team}/workflow-artifacts", "argo-artifacts-s3")


def test_the_teams_workflow_identity_reads_and_writes_its_prefix_only():
    config = s3_config("test", ("fraud",), "seed", ("fraud",))
    [identity] = [i for i in config["identities"] if i["name"] == "workflows-fraud"]
    scope = "test-artifacts/workflows/fraud/*"
    assert identity["actions"] == [f"Read:{scope}", f"Write:{scope}", f"List:{scope}"]
    # The object store holds the same identity, with the keys the team's Secret gets.
    assert identity["credentials"] == [{"accessKey": derive("seed", "test", "workflows-fraud", "access"),
                                        "secretKey": derive("seed", "test", "workflows-fraud", "secret")}]
    # Without pipelines the store's identities are unchanged.
    assert [i["name"] for i in s3_config("test", ("fraud",), "seed")["identities"]] == [
        "models", "artifacts", "features", "backups", "team-fraud"]
    assert ObjectStore.block(spec(storage=STORE)).workflow_teams == ("fraud", "search")
    assert ObjectStore.block(platform_spec({"storage": STORE, "teams": TEAMS})).workflow_teams == ()


def test_without_the_object_store_there_is_no_repository_and_no_seed_needed(dev):
    assert [k for k in dev if k[0] == "ConfigMap" and k[2] == "artifact-repositories"] == []
    assert needed_secrets(spec()) == ()
    assert OBJECT_STORE_SEED in needed_secrets(spec(storage=STORE))


# --- artifacts on eks and gke ---------------------------------------------------------------------------

def cloud_doc(stack: str) -> dict:
    """The stack's spec (its blueprint, two teams: vision and growth) with pipelines.argo on."""
    from plinth.stackconfig import load_stack_spec

    doc = load_stack_spec(ROOT, stack).model_dump(by_alias=True, exclude_unset=True)
    return {**doc, "pipelines": {"argo": {"enabled": True}}}


def cloud_planned(stack: str) -> tuple[dict, list]:
    """(Kubernetes objects by key, every resource) of the stack's plan under the clouds' mocks."""
    from test_cluster import CloudMocks

    cloud = PlatformSpec.model_validate(cloud_doc(stack))
    assert check_rules(cloud) == []
    result = plan(cloud, f"stack:{stack}", stack=stack, mocks=CloudMocks())
    return by_key(result), result.resources


@pytest.fixture(scope="module")
def on_eks():
    return cloud_planned("eks-gpu-dev")


@pytest.fixture(scope="module")
def on_gke():
    return cloud_planned("gke-gpu-dev")


def cloud(resources: list, typ: str, name: str) -> dict:
    [found] = [r.inputs for r in resources if r.type == typ and r.name == name]
    return found


def repository(objects: dict, team: str, key: str) -> str:
    repositories = objects["ConfigMap", team, "artifact-repositories"].inputs
    assert repositories["metadata"]["annotations"] == {"workflows.argoproj.io/default-artifact-repository": key}
    assert list(repositories["data"]) == [key]
    return repositories["data"][key]


def no_store_credentials(objects: dict, team: str) -> None:
    """A cloud team's workflows hold no key and trust no store CA: the pod's identity is the credential."""
    assert ("Secret", team, "argo-artifacts-s3") not in objects
    assert ("VaultStaticSecret", team, "argo-artifacts-s3") not in objects
    text = json.dumps([r.inputs for r in objects.values()])
    for reference in ("argo-artifacts-s3", "object-store-ca", "caSecret", "accessKeySecret", "secretKeySecret"):
        assert reference not in text


def test_on_eks_each_team_keeps_its_artifacts_under_its_prefix_of_the_cloud_bucket(on_eks):
    objects, _ = on_eks
    for team in ("vision", "growth"):
        assert repository(objects, team, "default-v1-s3-artifact-repository") == (
            '{"archiveLogs": false, "s3": {"bucket": "eks-gpu-dev-artifacts", "endpoint": '
            '"s3.eu-west-1.amazonaws.com", "insecure": false, "keyFormat": '
            f'"workflows/{team}/{{{{workflow.name}}}}/{{{{pod.name}}}}", "region": "eu-west-1", '
            '"useSDKCreds": true}}')
        no_store_credentials(objects, team)


def test_on_gke_each_team_keeps_its_artifacts_under_its_prefix_of_the_cloud_bucket(on_gke):
    objects, _ = on_gke
    for team in ("vision", "growth"):
        assert repository(objects, team, "default-v1-gcs-artifact-repository") == (
            '{"archiveLogs": false, "gcs": {"bucket": "gke-gpu-dev-artifacts", "keyFormat": '
            f'"workflows/{team}/{{{{workflow.name}}}}/{{{{pod.name}}}}"}}}}')
        no_store_credentials(objects, team)


def test_on_eks_each_teams_workflow_account_is_its_own_role_on_its_own_prefix(on_eks):
    objects, resources = on_eks
    for team, other in (("vision", "growth"), ("growth", "vision")):
        role = cloud(resources, "aws:iam/role:Role", f"cluster-workflows-{team}")
        assert role["name"] == f"eks-gpu-dev-workflows-{team}"
        [trust] = json.loads(role["assumeRolePolicy"])["Statement"]
        assert f"system:serviceaccount:{team}:argo-workflow" in trust["Condition"]["StringEquals"].values()
        policy = json.loads(cloud(resources, "aws:iam/rolePolicy:RolePolicy", f"cluster-workflows-{team}")["policy"])
        assert policy["Statement"] == [
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::eks-gpu-dev-artifacts",
             "Condition": {"StringLike": {"s3:prefix": [f"workflows/{team}/*"]}}},
            {"Effect": "Allow", "Action": ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject",
                                           "s3:PutObject"],
             "Resource": f"arn:aws:s3:::eks-gpu-dev-artifacts/workflows/{team}/*"}]
        assert f"workflows/{other}" not in json.dumps(policy)
        # The account carries its role (the EKS pod identity webhook gives every container of its pods the token).
        account = objects["ServiceAccount", team, "argo-workflow"].inputs
        assert account["metadata"]["annotations"] == {
            "eks.amazonaws.com/role-arn": f"arn:aws:iam::123456789012:role/eks-gpu-dev-workflows-{team}"}


def test_on_gke_each_teams_workflow_account_is_its_own_service_account_on_its_own_prefix(on_gke):
    objects, resources = on_gke
    for team, other in (("vision", "growth"), ("growth", "vision")):
        grant = cloud(resources, "gcp:serviceaccount/iAMMember:IAMMember", f"cluster-workflows-{team}")
        assert grant["member"] == f"serviceAccount:acme-ml-dev.svc.id.goog[{team}/argo-workflow]"
        binding = cloud(resources, "gcp:storage/bucketIAMMember:BucketIAMMember", f"cluster-workflows-{team}")
        assert (binding["bucket"], binding["role"]) == ("gke-gpu-dev-artifacts", "roles/storage.objectUser")
        # Its objects, and listings of its prefix (Argo's GCS driver lists before every download).
        assert binding["condition"]["expression"] == (
            f'resource.name.startsWith("projects/_/buckets/gke-gpu-dev-artifacts/objects/workflows/{team}/") || '
            f'api.getAttribute("storage.googleapis.com/objectListPrefix", "").startsWith("workflows/{team}/")')
        assert other not in json.dumps(binding)
        account = objects["ServiceAccount", team, "argo-workflow"].inputs
        assert account["metadata"]["annotations"] == {
            "iam.gke.io/gcp-service-account": f"gke-gpu-dev-workflows-{team}@acme-ml-dev.iam.gserviceaccount.com"}


def test_on_a_cloud_workflow_pods_alone_reach_the_bucket_by_name(on_eks, on_gke):
    from plinth.modules.cluster.differences import object_store_egress
    from plinth.targets import target_facts

    for stack, (objects, _) in (("eks-gpu-dev", on_eks), ("gke-gpu-dev", on_gke)):
        facts = target_facts(PlatformSpec.model_validate(cloud_doc(stack)))
        for team in ("vision", "growth"):
            kind, policy = network_policies(objects)[team]["allow-workflows-to-bucket"]
            assert kind == "CiliumNetworkPolicy"
            assert policy == {"endpointSelector": {"matchExpressions": [
                {"key": "workflows.argoproj.io/workflow", "operator": "Exists"}]},
                "egress": object_store_egress(facts)}


def test_on_a_cloud_the_identities_are_one_per_team_and_none_on_prem():
    from plinth.modules.pipelines import ArgoWorkflows

    eks = PlatformSpec.model_validate(cloud_doc("eks-gpu-dev"))
    assert [(i.name, i.namespace, i.service_account, i.access) for i in ArgoWorkflows.identities(eks)] == [
        ("workflows-vision", "vision", "argo-workflow", "bucket-rw:artifacts/workflows/vision"),
        ("workflows-growth", "growth", "argo-workflow", "bucket-rw:artifacts/workflows/growth")]
    assert ArgoWorkflows.identities(spec(storage=STORE)) == ()


def test_on_a_cloud_without_cilium_workflow_pods_could_not_reach_the_bucket():
    doc = cloud_doc("eks-gpu-dev")
    doc["network"] = {**doc.get("network", {}), "cilium": {"enabled": False}}
    doc["network"].pop("gateway", None)
    found = [(v.loc, v.rule, v.message, v.fix) for v in check_rules(PlatformSpec.model_validate(doc))
             if v.rule == "workflow-artifacts-egress"]
    assert found == [(("pipelines", "argo", "enabled"), "workflow-artifacts-egress",
                      "workflow pods keep their artifacts in the eks artifacts bucket, and team namespaces are "
                      "default-deny for egress: without Cilium nothing lets them reach the bucket by name",
                      "enable network.cilium (egress to the cloud's object store by name)")]


# --- the Argo Server behind the platform's sign-on ---------------------------------------------------------

SIGN_ON = {
    **SERVICES, "network": {**SERVICES["network"], "loadBalancer": {"ranges": ["172.31.255.240/29"]}},
    "rbac": {"platformAdminGroup": "ml-admins"},
    "identity": {"oidc": {"issuer": "https://login.corp.internal/realms/ml",
                          "clients": {"kubernetes": "ml-kubernetes", "argo": "ml-argo"}}}}
HOST = "argo.models.plinth.internal"


def signed_on(argo: dict | None = None, **overrides) -> PlatformSpec:
    return spec("dev", {"server": True, "hostname": HOST, **(argo or {})}, **{**SIGN_ON, **overrides})


@pytest.fixture(scope="module")
def sso():
    result = plan(signed_on(), "test")
    [release] = [r for r in result.resources if r.type.endswith("helm.sh/v3:Release") and r.name == "argo-workflows"]
    return {**by_key(result), RELEASE: release}


def test_on_the_gateway_the_server_signs_people_on_through_the_provider_only(sso):
    server = values(sso)["server"]
    assert server["authModes"] == ["sso"]
    assert server["sso"] == {
        "enabled": True, "issuer": "https://login.corp.internal/realms/ml",
        "clientId": {"name": "argo-server-sso", "key": "client-id"},
        "clientSecret": {"name": "argo-server-sso", "key": "client-secret"},
        "redirectUrl": f"https://{HOST}/oauth2/callback",
        "rbac": {"enabled": True, "secretWhitelist": [
            "argo-sso-admin.service-account-token", "argo-sso-login.service-account-token",
            "argo-sso-user.service-account-token", "argo-sso-viewer.service-account-token"]},
        "scopes": ["email", "profile", "groups"], "sessionExpiry": "8h", "customGroupClaimName": "groups",
        "insecureSkipVerify": False, "issuerAlias": "", "userInfoPath": "", "filterGroupsRegex": []}
    # A request in a team's namespace acts as the team's account there.
    assert server["extraEnv"] == [{"name": "SSO_DELEGATE_RBAC_TO_NAMESPACE", "value": "true"}]
    # TLS ends at the Gateway; Plinth's route, not the chart's.
    assert server["secure"] is False and server["httproute"] == {"enabled": False}
    assert server["ingress"] == {"enabled": False}


def test_the_client_secret_comes_from_the_stack_never_the_plan(sso):
    secret = sso["Secret", "argo", "argo-server-sso"].inputs
    assert secret["stringData"] == "(secret)"
    assert secret["metadata"]["annotations"]["plinth.dev/secret-source"] == "plinth:argoOidcClientSecret"
    assert "argoOidcClientSecret" in [s.key for s in needed_secrets(signed_on())]
    assert "argoOidcClientSecret" not in [s.key for s in needed_secrets(spec("dev", {"server": True}))]


def test_each_team_acts_as_its_own_account_in_its_namespace_only(sso):
    user = sso["ServiceAccount", "fraud", "argo-sso-user"].inputs
    assert user["metadata"]["annotations"] == {
        "workflows.argoproj.io/rbac-rule": '"fraud-ds" in groups || "fraud-ml" in groups',
        "workflows.argoproj.io/rbac-rule-precedence": "3"}
    assert user["automountServiceAccountToken"] is False
    viewer = sso["ServiceAccount", "fraud", "argo-sso-viewer"].inputs["metadata"]["annotations"]
    assert viewer == {"workflows.argoproj.io/rbac-rule": '"fraud-view" in groups',
                      "workflows.argoproj.io/rbac-rule-precedence": "2"}
    # Each account is bound to the team's Role of the groups it stands for, in the team's namespace.
    users = sso["RoleBinding", "fraud", "plinth:workflows"].inputs["subjects"]
    assert users[-1] == {"kind": "ServiceAccount", "name": "argo-sso-user", "namespace": "fraud"}
    viewers = sso["RoleBinding", "fraud", "plinth:workflows-viewer"].inputs["subjects"]
    assert viewers[-1] == {"kind": "ServiceAccount", "name": "argo-sso-viewer", "namespace": "fraud"}
    rules = sso["Role", "fraud", "plinth:workflows"].inputs["rules"]
    assert {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]} in rules
    # Its token, by the name the server looks it up by, filled in by Kubernetes.
    token = sso["Secret", "fraud", "argo-sso-user.service-account-token"].inputs
    assert token["type"] == "kubernetes.io/service-account-token" and "stringData" not in token
    assert token["metadata"]["annotations"]["kubernetes.io/service-account.name"] == "argo-sso-user"
    # A team without groups has no account anyone could act as.
    assert [k for k in sso if k[1] == "search" and "sso" in k[2]] == []


def test_everyone_signs_on_through_a_login_account_with_no_rights(sso):
    login = sso["ServiceAccount", "argo", "argo-sso-login"].inputs["metadata"]["annotations"]
    assert login == {"workflows.argoproj.io/rbac-rule": '"fraud-ds" in groups || "fraud-ml" in groups || '
                     '"fraud-view" in groups', "workflows.argoproj.io/rbac-rule-precedence": "0"}
    bound = [o.inputs for o in sso.values() if o.inputs.get("kind") in ("RoleBinding", "ClusterRoleBinding")]
    assert [b for b in bound if any(s.get("name") == "argo-sso-login" for s in b["subjects"])] == []


def test_the_platform_admins_read_every_teams_workflows_and_nothing_more(sso):
    admin = sso["ServiceAccount", "argo", "argo-sso-admin"].inputs["metadata"]["annotations"]
    assert admin == {"workflows.argoproj.io/rbac-rule": '"ml-admins" in groups',
                     "workflows.argoproj.io/rbac-rule-precedence": "1"}
    role = sso["ClusterRole", None, "plinth:test:workflows-admin-viewer"].inputs["rules"]
    assert role == [
        {"apiGroups": ["argoproj.io"], "resources": ["clusterworkflowtemplates", "cronworkflows", "workflows",
                                                     "workflowtaskresults", "workflowtemplates"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch"]}]
    binding = sso["ClusterRoleBinding", None, "plinth:test:workflows-admin-viewer"].inputs
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "argo-sso-admin", "namespace": "argo"}]


def test_a_group_name_cannot_change_the_rule():
    from plinth.modules.pipelines.sso import rbac_rule

    assert rbac_rule(['a" in groups || true || "b', "c\\d"]) == (
        '"a\\" in groups || true || \\"b" in groups || "c\\\\d" in groups')


def test_the_server_has_its_own_listener_route_and_door(sso):
    [gateway] = [r for r in sso.values() if r.inputs.get("kind") == "Gateway"]
    assert {"name": "argo", "hostname": HOST} == {k: v for k, v in next(
        listener for listener in gateway.inputs["spec"]["listeners"] if listener["name"] == "argo").items()
        if k in ("name", "hostname")}
    route = sso["HTTPRoute", "argo", "argo-server"].inputs["spec"]
    assert route["hostnames"] == [HOST] and route["parentRefs"][0]["sectionName"] == "argo"
    assert route["rules"][0]["backendRefs"] == [{"name": "argo-workflows-server", "port": 2746}]
    [door] = [k for k in network_policies(sso)["argo"] if k.endswith("from-gateway")]
    assert door


def test_a_private_ca_is_trusted_by_the_server():
    found = planned("dev", {"server": True, "hostname": HOST}, **{**SIGN_ON, "identity": {"oidc": {
        **SIGN_ON["identity"]["oidc"], "certificateAuthority": CA}}})
    server = values(found)["server"]
    assert server["extraEnv"][1] == {"name": "SSL_CERT_DIR", "value": "/etc/argo-server/oidc-ca"}
    assert server["volumes"] == [{"name": "oidc-ca", "configMap": {"name": "argo-server-oidc-ca"}}]
    assert server["volumeMounts"] == [{"name": "oidc-ca", "mountPath": "/etc/argo-server/oidc-ca",
                                       "readOnly": True}]
    assert found["ConfigMap", "argo", "argo-server-oidc-ca"].inputs["data"] == {"ca.crt": CA}
    assert server["sso"]["insecureSkipVerify"] is False


def test_the_server_reaches_the_gateway_only_with_sign_on():
    def found(s):
        return [(v.loc, v.rule, v.message, v.fix) for v in check_rules(s)]

    no_client = {**SIGN_ON["identity"]["oidc"], "clients": {"kubernetes": "ml-kubernetes"}}
    assert found(signed_on(identity={"oidc": no_client})) == [
        (("pipelines", "argo", "hostname"), "ui-sign-on", "the Argo Server on the platform Gateway without sign-on",
         "set identity.oidc.clients.argo (and the stack secret plinth:argoOidcClientSecret)")]
    assert found(signed_on(identity={"oidc": None})) == [
        (("pipelines", "argo", "hostname"), "ui-sign-on", "the Argo Server on the platform Gateway without sign-on",
         "set identity.oidc with clients.argo (and the stack secret plinth:argoOidcClientSecret), or remove "
         "hostname")]
    no_host = (("identity", "oidc", "clients", "argo"), "argo-sign-on-host", "the Argo Server signs on through the "
               "provider at its own host name, and pipelines.argo with server and hostname is not set",
               "enable pipelines.argo with server: true and a hostname, or remove clients.argo")
    assert found(signed_on({"server": False})) == [
        (("pipelines", "argo", "hostname"), "argo-server-hostname", "the host name is the Argo Server's, and server "
         "is false", "set server: true, or remove hostname"), no_host]
    assert found(signed_on({"hostname": None})) == [no_host]
    assert [v.rule for v in check_rules(signed_on({"hostname": "argo.elsewhere.internal"}))] == ["argo-hostname"]
    assert "argo-needs-gateway" in [v.rule for v in check_rules(signed_on(
        network={**SIGN_ON["network"], "cilium": {**SERVICES["network"]["cilium"], "gatewayApi": False}}))]


def test_the_policy_refuses_a_route_to_a_server_without_sign_on(sso):
    from test_governance import changed, violations

    from plinth.governance.check import subjects
    from plinth.governance.policies.core import HELM_RELEASE

    found = subjects(plan(signed_on(), "test"))
    assert violations(found, "ui-sign-on") == []
    message = ("sends requests to the Argo Server (argo/argo-workflows-server), which does not sign people on "
               "through identity.oidc (server.authModes [sso] with SSO RBAC)")
    for change in (lambda p: p["values"]["server"].update(authModes=["client"]),
                   lambda p: p["values"]["server"].update(authModes=["sso", "server"]),
                   lambda p: p["values"]["server"]["sso"]["rbac"].update(enabled=False)):
        unsigned = changed(found, lambda s: s.type == HELM_RELEASE and s.props.get("name") == "argo-workflows",
                           change)
        assert violations(unsigned, "ui-sign-on") == [("HTTPRoute argo/argo-server", message)]
