"""Sign-on in a real kube-apiserver: people come with ID tokens of a real OIDC provider, and the teams' groups
in those tokens decide what they may do.

The provider is mockoidc (github.com/oauth2-proxy/mockoidc, served over TLS by the toolchain's `mockoidc`,
tests/e2e/toolchain/mockoidc); tokens come from its authorization-code flow. The API server runs with the
AuthenticationConfiguration Plinth plans for the spec (the ConfigMap's file, `--authentication-config`), and
Plinth's tenancy objects for two teams, fraud and risk, are applied. Deployments are sent as dry runs:
authentication, authorization and admission all run, nothing is stored.
"""

from __future__ import annotations

import ssl
import time

import pytest
import yaml

from binaries import toolchain_bin
from controlplane import LocalControlPlane
from kubeapi import ApiError, KubeApi
from oidcserver import Provider, provider_fixture
from plinth.engine.manifests import KIND_ORDER
from plinth.engine.offline import plan
from plinth.modules.cluster.signon import AUTHENTICATION_KEY
from plinth.modules.tenancy.roles import platform_admin_name
from plinth.render import kubernetes_objects
from plinth.spec.load import load_spec

pytestmark = [pytest.mark.e2e]

CLIENT = "plinth-kubernetes"
"""The Kubernetes API's client at the provider: the audience its tokens must carry."""
ADMINS = "ml-platform-admins"
FRAUD_ENGINEERS = "fraud-ml-engineers"
provider = provider_fixture(CLIENT)


@pytest.fixture(scope="module")
def planned(provider, tmp_path_factory):
    """The plan of a spec signing on through the provider, loaded from its file as a user's would be."""
    spec = {
        "apiVersion": "plinth.dev/v1alpha1", "kind": "Platform",
        "metadata": {"name": "signon", "environment": "dev", "costCenter": "ml-platform"},
        "target": {"type": "existing"},
        "identity": {"oidc": {"issuer": provider.issuer, "certificateAuthority": provider.ca_pem,
                              "clients": {"kubernetes": CLIENT}}},
        "rbac": {"platformAdminGroup": ADMINS},
        "teams": [{"name": "fraud", "groups": {"mlEngineer": [FRAUD_ENGINEERS], "viewer": ["risk-auditors"]}},
                  {"name": "risk", "groups": {"mlEngineer": ["risk-ml-engineers"]}}],
    }
    path = tmp_path_factory.mktemp("spec") / "signon.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return plan(load_spec(path), str(path))


@pytest.fixture(scope="module")
def cluster(planned, provider, tmp_path_factory):
    """The API server with the planned AuthenticationConfiguration, and Plinth's tenancy objects applied (with
    the admin's client certificate)."""
    bin_dir = toolchain_bin()
    if bin_dir is None or not all((bin_dir / b).is_file() for b in ("kube-apiserver", "etcd")):
        pytest.skip("no kube-apiserver, etcd: run tests/e2e/toolchain/build.sh (or set PLINTH_TOOLCHAIN_BIN)")
    objects = [obj for res, obj in kubernetes_objects(planned) if res.name.startswith("tenancy")]
    (config,) = [o for o in objects if o["kind"] == "ConfigMap" and AUTHENTICATION_KEY in o.get("data", {})]
    workdir = tmp_path_factory.mktemp("control-plane")
    authentication = workdir / "authentication-config.yaml"
    authentication.write_text(config["data"][AUTHENTICATION_KEY])
    with LocalControlPlane(bin_dir, workdir, controller_manager=False,
                           extra_apiserver_args=(f"--authentication-config={authentication}",)) as plane:
        admin = KubeApi(plane.server, plane.ssl_context())
        rank = {kind: i for i, kind in enumerate(KIND_ORDER)}
        for obj in sorted(objects, key=lambda o: rank.get(o["kind"], len(KIND_ORDER))):
            admin.apply(obj)
        yield plane


def as_user(plane: LocalControlPlane, token: str) -> KubeApi:
    """The API as the token's bearer: the cluster's CA, no client certificate."""
    return KubeApi(plane.server, ssl.create_default_context(cafile=plane.ca_path), token=token)


def who(kube: KubeApi) -> dict:
    """The user the API server sees (a SelfSubjectReview)."""
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    return kube.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", review)["status"]["userInfo"]


def signed_in(cluster: LocalControlPlane, provider: Provider, email: str, groups: list[str]) -> KubeApi:
    """A user's API, once the API server has the provider's keys (it fetches them when it starts)."""
    kube = as_user(cluster, provider.id_token(email, groups))
    deadline = time.monotonic() + 60
    while True:
        try:
            who(kube)
            return kube
        except ApiError as exc:
            assert exc.status == 401 and time.monotonic() < deadline, f"the provider's tokens are never accepted: {exc}"
            time.sleep(0.5)


def deployment(namespace: str, team: str) -> dict:
    """A Deployment Pod Security `restricted` admits (team namespaces enforce it)."""
    labels = {"app": "scorer", "plinth.dev/team": team, "plinth.dev/cost-center": "ml-platform"}
    container = {"name": "scorer", "image": "registry.corp.internal/scorer:1.0", "securityContext": {
        "allowPrivilegeEscalation": False, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"}}}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "scorer", "namespace": namespace, "labels": labels},
            "spec": {"selector": {"matchLabels": {"app": "scorer"}},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}}


def create(kube: KubeApi, obj: dict) -> dict:
    """Create as a dry run: authentication, authorization and admission run; nothing is stored."""
    namespace = obj["metadata"]["namespace"]
    return kube.request("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments?dryRun=All", obj)


def status(call) -> int:
    try:
        call()
    except ApiError as exc:
        return exc.status
    return 200


def test_the_provider_names_the_user_and_groups_with_the_spec_prefixes(cluster, provider):
    user = who(signed_in(cluster, provider, "alice@corp.example", [FRAUD_ENGINEERS]))
    assert user["username"] == "oidc:alice@corp.example"
    assert set(user["groups"]) == {f"oidc:{FRAUD_ENGINEERS}", "system:authenticated"}


def test_a_team_member_deploys_in_the_team_namespace_only(cluster, provider):
    alice = signed_in(cluster, provider, "alice@corp.example", [FRAUD_ENGINEERS])
    created = create(alice, deployment("fraud", "fraud"))
    assert created["metadata"]["namespace"] == "fraud"
    assert status(lambda: create(alice, deployment("risk", "risk"))) == 403
    assert status(lambda: alice.request("GET", "/apis/apps/v1/deployments")) == 403  # cluster-wide
    assert status(lambda: alice.request("GET", "/api/v1/namespaces")) == 403


def test_a_platform_admin_works_across_namespaces(cluster, provider, planned):
    admin = signed_in(cluster, provider, "erin@corp.example", [ADMINS])
    assert create(admin, deployment("risk", "risk"))["metadata"]["namespace"] == "risk"
    assert admin.request("GET", "/apis/apps/v1/deployments")["kind"] == "DeploymentList"
    role = admin.request("GET", f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{platform_admin_name('signon')}")
    assert role["metadata"]["name"] == "plinth:signon:platform-admin"


def test_a_provider_group_never_passes_for_a_kubernetes_group(cluster, provider):
    """The groups prefix: `system:masters` in a token is oidc:system:masters, which grants nothing."""
    mallory = signed_in(cluster, provider, "mallory@corp.example", ["system:masters"])
    assert set(who(mallory)["groups"]) == {"oidc:system:masters", "system:authenticated"}
    assert status(lambda: mallory.request("GET", "/api/v1/namespaces")) == 403


def test_an_expired_token_is_refused(cluster, provider):
    signed_in(cluster, provider, "alice@corp.example", [FRAUD_ENGINEERS])  # the API server has the keys
    provider.control("/clock?shift=-2h")  # the provider's tokens live 10 minutes: this one ended 110 ago
    try:
        expired = provider.id_token("alice@corp.example", [FRAUD_ENGINEERS])
    finally:
        provider.control("/clock?shift=2h")
    assert status(lambda: who(as_user(cluster, expired))) == 401


def test_a_token_for_another_client_is_refused(cluster, provider):
    signed_in(cluster, provider, "alice@corp.example", [FRAUD_ENGINEERS])
    provider.as_client("grafana")  # another surface's client: its tokens' audience is grafana
    try:
        elsewhere = provider.id_token("alice@corp.example", [FRAUD_ENGINEERS])
    finally:
        provider.as_client(CLIENT)
    assert status(lambda: who(as_user(cluster, elsewhere))) == 401
    assert status(lambda: create(as_user(cluster, elsewhere), deployment("fraud", "fraud"))) == 401
