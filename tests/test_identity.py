"""Sign-on (`identity.oidc`): the spec's rules and errors, the AuthenticationConfiguration an existing cluster
runs with, eks's identity provider config, and group names that match the claim mapping everywhere they are
bound. The real API server with a real provider: tests/e2e/test_signon.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from plinth.engine.offline import plan
from plinth.modules.cluster.signon import AUTHENTICATION_KEY, authentication_configuration
from plinth.spec.errors import SpecInvalid
from plinth.spec.load import load_spec
from plinth.spec.models import PlatformSpec
from plinth.spec.rules import check_rules
from support import MINIMAL, by_key, platform_spec, spec_document
from test_cluster import ACCOUNT, CloudMocks, cloud_plan

PLINTH = [str(Path(sys.executable).parent / "plinth")]
CA = """-----BEGIN CERTIFICATE-----
MIIBwzCCAWmgAwIBAgIUHakePfc///1ocpE66h6ZMGJxhgwwCgYIKoZIzj0EAwIw
LzENMAsGA1UECgwEQ29ycDEeMBwGA1UEAwwVQ29ycCBJbnRlcm5hbCBSb290IENB
MB4XDTI2MTIwNjA4MTYzMloXDTM2MTIwMzA4MTYzMlowLzENMAsGA1UECgwEQ29y
cDEeMBwGA1UEAwwVQ29ycCBJbnRlcm5hbCBSb290IENBMFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAEPdoH1Qv1osPHnKLvg/pCqcWJppDYW1DE7mWrBH9ha9s0VLCJ
780lwWdDD9/6HQVl87m46sC6Ku7RsfBrc8pZgaNjMGEwHQYDVR0OBBYEFP6CaDNr
tSR0N2TCiwfR0hNT3iGAMB8GA1UdIwQYMBaAFP6CaDNrtSR0N2TCiwfR0hNT3iGA
MA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgEGMAoGCCqGSM49BAMCA0gA
MEUCIE1TuCcmBV8/Sz8TAyR6r4/044wQAGy5zhjJIm4fyEmJAiEAivYePPfd4gWW
hO2PBVjGxiVP5f7tMmiMORp2R39q03E=
-----END CERTIFICATE-----
"""
OIDC = {"issuer": "https://login.corp.internal/realms/ml", "clients": {"kubernetes": "ml-kubernetes"}}
SIGN_ON = {"identity": {"oidc": OIDC}}
TEAMS = {"rbac": {"platformAdminGroup": "ml-admins"},
         "teams": [{"name": "fraud", "groups": {"mlEngineer": ["fraud-eng"], "viewer": ["auditors"]}},
                   {"name": "risk", "groups": {"dataScientist": ["risk-ds"]}}]}


def rules(*layers: dict) -> list[tuple[tuple, str, str, str]]:
    return [(v.loc, v.rule, v.message, v.fix) for v in check_rules(platform_spec(*layers))
            if v.rule.startswith(("prod-identity", "identity-", "airgap-endpoint"))]


# --- the spec ---------------------------------------------------------------------------------------------


def test_the_defaults_are_the_documented_ones():
    oidc = platform_spec(SIGN_ON).identity.oidc
    assert (oidc.username_claim, oidc.username_prefix, oidc.groups_claim, oidc.groups_prefix) == \
        ("email", "oidc:", "groups", "oidc:")
    assert oidc.certificate_authority is None
    assert platform_spec().identity.oidc is None


def test_prod_needs_an_identity_provider_or_a_reason():
    prod = {"metadata": {"environment": "prod"}}
    assert rules(prod) == [(("metadata", "environment"), "prod-identity", "prod signs people on through an identity "
                            "provider, and identity.oidc is not set", "set identity.oidc (issuer and "
                            "clients.kubernetes), or say why not in identity.reason")]
    assert rules(prod, SIGN_ON) == []
    assert rules(prod, {"identity": {"reason": "people sign on with client certificates of the company CA"}}) == []
    assert rules() == []  # dev: no provider is fine


def test_a_reason_with_a_provider_is_refused():
    assert rules(SIGN_ON, {"identity": {"reason": "no provider here, really"}}) == [
        (("identity", "reason"), "identity-reason-unused", "a reason for having no identity provider, but "
         "identity.oidc is set", "remove identity.reason")]


GKE = {"target": {"type": "gke", "project": "acme-ml-prod", "region": "europe-west4",
                  "nodePools": [{"name": "system", "instanceType": "n2-standard-8"}]}}
EKS = {"target": {"type": "eks", "accountId": ACCOUNT, "region": "eu-west-1",
                  "availabilityZones": ["eu-west-1a", "eu-west-1b"],
                  "adminRoleArn": f"arn:aws:iam::{ACCOUNT}:role/admins",
                  "nodePools": [{"name": "system", "instanceType": "m7i.xlarge"}]}}


def test_gke_takes_no_issuer_and_eks_no_private_ca():
    assert rules(GKE, SIGN_ON) == [(("identity", "oidc"), "identity-oidc-target", "GKE signs people on through "
                                    "Google identities (Workforce Identity Federation, set up in the organization's "
                                    "IAM), not through an issuer Plinth configures", "remove identity.oidc "
                                    "(modules/cluster/README.md says how GKE signs people on); in prod say so in "
                                    "identity.reason")]
    assert rules(EKS, SIGN_ON) == []
    assert rules(EKS, {"identity": {"oidc": {**OIDC, "certificateAuthority": CA}}}) == [
        (("identity", "oidc", "certificateAuthority"), "identity-oidc-target", "EKS reaches the issuer over the "
         "internet and trusts publicly trusted certificates only", "remove certificateAuthority, and serve the "
         "issuer with a publicly trusted certificate")]


def test_an_air_gapped_cluster_reaches_only_an_issuer_inside_the_perimeter():
    airgap = {"airgap": {"enabled": True, "mirror": {"registry": "harbor.corp.internal/mirror",
                                                     "charts": "oci://harbor.corp.internal/charts"}}}
    assert rules(airgap, SIGN_ON) == [(("identity", "oidc", "issuer"), "airgap-endpoint", "the identity provider "
                                       "'https://login.corp.internal/realms/ml' is outside the air gap: its host is "
                                       "not one of the perimeter's hosts (harbor.corp.internal)", "use a host of the "
                                       "mirror, or list the internal host in airgap.mirror.hosts")]
    airgap["airgap"]["mirror"]["hosts"] = ["login.corp.internal"]
    assert rules(airgap, SIGN_ON) == []


BAD = [
    ("    issuer: http://login.corp.internal\n", "bad.yaml:4:5: identity.oidc.issuer: expected the issuer's "
     "https:// URL, exactly as its tokens' iss claim reads (no user info, query or fragment), e.g. "
     "https://login.corp.internal/realms/platform, got \"http://login.corp.internal\""),
    ("    issuer: https://login.corp.internal/?realm=ml\n", "bad.yaml:4:5: identity.oidc.issuer: expected the "
     "issuer's https:// URL, exactly as its tokens' iss claim reads (no user info, query or fragment), e.g. "
     "https://login.corp.internal/realms/platform, got \"https://login.corp.internal/?realm=ml\""),
    ("    issuer: https://login.corp.internal\n    groupsPrefix: 'system:'\n", "bad.yaml:5:5: "
     "identity.oidc.groupsPrefix: 'system:' is Kubernetes' own prefix; choose another, e.g. oidc:, got \"system:\""),
    ("    issuer: https://login.corp.internal\n    usernamePrefix: oidc\n", "bad.yaml:5:5: "
     "identity.oidc.usernamePrefix: expected a short prefix ending in ':' such as oidc:, or \"\", got \"oidc\""),
    ("    issuer: https://login.corp.internal\n    certificateAuthority: |\n      -----BEGIN PRIVATE KEY-----\n"
     "      MIIB\n      -----END PRIVATE KEY-----\n", "bad.yaml:5:5: identity.oidc.certificateAuthority: expected "
     "PEM CA certificates (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----) only (the value is not "
     "shown: it may hold a key)"),
]


@pytest.mark.parametrize("oidc, message", BAD)
def test_bad_identity_fields_are_refused_at_their_line(oidc, message, write):
    write("base.yaml", MINIMAL)
    bad = write("bad.yaml", "extends: base.yaml\nidentity:\n  oidc:\n" + oidc +
                "    clients:\n      kubernetes: ml-kubernetes\n")
    with pytest.raises(SpecInvalid) as caught:
        load_spec(bad)
    assert [str(e) for e in caught.value.errors] == [message]


def test_the_kubernetes_client_is_required(write):
    write("base.yaml", MINIMAL)
    bad = write("bad.yaml", "extends: base.yaml\nidentity:\n  oidc:\n    issuer: https://login.corp.internal\n")
    with pytest.raises(SpecInvalid) as caught:
        load_spec(bad)
    assert [str(e) for e in caught.value.errors] == ["bad.yaml:3:3: identity.oidc.clients: required field is missing"]


def test_the_cli_refuses_prod_without_sign_on_with_exit_2(tmp_path):
    (tmp_path / "prod.yaml").write_text(MINIMAL.replace("environment: dev", "environment: prod"))
    result = subprocess.run([*PLINTH, "validate", "prod.yaml"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PLINTH_DEBUG": ""})
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        "prod.yaml:5:3: metadata.environment: prod signs people on through an identity provider, and identity.oidc "
        "is not set [rule prod-identity; fix: set identity.oidc (issuer and clients.kubernetes), or say why not in "
        "identity.reason]")
    assert "Traceback" not in result.stderr


def test_the_cli_refuses_a_vault_client_without_vault_at_its_line(tmp_path):
    (tmp_path / "vault.yaml").write_text(MINIMAL + "identity:\n  oidc:\n    issuer: https://login.corp.internal\n"
                                         "    clients:\n      kubernetes: k8s\n      vault: ml-vault\n")
    result = subprocess.run([*PLINTH, "validate", "vault.yaml"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PLINTH_DEBUG": ""})
    assert result.returncode == 2
    line = len(MINIMAL.splitlines()) + 6
    assert result.stderr.splitlines()[0] == (
        f"vault.yaml:{line}:7: identity.oidc.clients.vault: Vault signs people on through the provider, and "
        "secrets.vault is not enabled [rule vault-sign-on; fix: enable secrets.vault, or remove clients.vault]")
    assert "Traceback" not in result.stderr


# --- the Kubernetes API on an existing cluster --------------------------------------------------------------


def objects(spec: PlatformSpec) -> dict:
    return {key: r.inputs for key, r in by_key(plan(spec, "test")).items()}


def test_an_existing_cluster_gets_its_authentication_configuration_as_a_config_map():
    spec = platform_spec({"identity": {"oidc": {**OIDC, "certificateAuthority": CA}}}, TEAMS)
    config_map = objects(spec)[("ConfigMap", "kube-system", "plinth-test-authentication")]
    assert config_map["metadata"]["labels"]["app.kubernetes.io/component"] == "tenancy"
    assert yaml.safe_load(config_map["data"][AUTHENTICATION_KEY]) == {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AuthenticationConfiguration",
        "jwt": [{
            "issuer": {"url": "https://login.corp.internal/realms/ml", "audiences": ["ml-kubernetes"],
                       "certificateAuthority": CA},
            "claimMappings": {"username": {"claim": "email", "prefix": "oidc:"},
                              "groups": {"claim": "groups", "prefix": "oidc:"}},
            "userValidationRules": [
                {"expression": "!user.username.startsWith('system:')",
                 "message": "user names starting with system: are Kubernetes' own"},
                {"expression": "user.groups.all(group, !group.startsWith('system:'))",
                 "message": "groups starting with system: are Kubernetes' own"}],
        }],
    }


def test_kubernetes_before_1_34_reads_the_v1beta1_configuration():
    oidc = platform_spec(SIGN_ON).identity.oidc
    assert [authentication_configuration(oidc, v)["apiVersion"] for v in ("1.32", "1.33", "1.34", "1.35")] == [
        "apiserver.config.k8s.io/v1beta1", "apiserver.config.k8s.io/v1beta1", "apiserver.config.k8s.io/v1",
        "apiserver.config.k8s.io/v1"]


def subjects(found: dict, kind: str, namespace: str | None, name: str) -> list[str]:
    return [s["name"] for s in found[(kind, namespace, name)]["subjects"]]


def test_bindings_name_the_groups_as_the_claim_mapping_does():
    found = objects(platform_spec(SIGN_ON, TEAMS))
    assert subjects(found, "RoleBinding", "fraud", "plinth:ml-engineer") == ["oidc:fraud-eng"]
    assert subjects(found, "RoleBinding", "fraud", "plinth:viewer") == ["oidc:auditors"]
    assert subjects(found, "RoleBinding", "risk", "plinth:data-scientist") == ["oidc:risk-ds"]
    # The admins: the provider's group, and unprefixed the group of the cluster's other authenticators.
    assert subjects(found, "ClusterRoleBinding", None, "plinth:test:platform-admin") == ["ml-admins", "oidc:ml-admins"]


def test_admission_lets_each_team_bind_exactly_the_groups_plinth_binds():
    found = objects(platform_spec(SIGN_ON, TEAMS))
    policy = found[("ValidatingAdmissionPolicy", None, "plinth-team-rolebindings")]
    (allowed,) = [v["expression"] for v in policy["spec"]["variables"] if v["name"] == "groups"]
    bound = {team: sorted({name for (kind, ns, _), obj in found.items() if kind == "RoleBinding" and ns == team
                           for name in (s["name"] for s in obj["subjects"])}) for team in ("fraud", "risk")}
    assert bound == {"fraud": ["oidc:auditors", "oidc:fraud-eng"], "risk": ["oidc:risk-ds"]}
    assert allowed == '{"fraud": ["oidc:auditors", "oidc:fraud-eng"], "risk": ["oidc:risk-ds"]}'


def test_without_sign_on_the_groups_are_bound_as_written_and_no_configuration_is_planned():
    found = objects(platform_spec(TEAMS))
    assert subjects(found, "RoleBinding", "fraud", "plinth:ml-engineer") == ["fraud-eng"]
    assert subjects(found, "ClusterRoleBinding", None, "plinth:test:platform-admin") == ["ml-admins"]
    assert not [key for key in found if key[0] == "ConfigMap" and key[1] == "kube-system"]


def test_an_empty_groups_prefix_binds_the_groups_as_the_provider_names_them():
    spec = platform_spec({"identity": {"oidc": {**OIDC, "groupsPrefix": ""}}}, TEAMS)
    assert spec.identity.kubernetes_group("fraud-eng") == "fraud-eng"
    found = objects(spec)
    assert subjects(found, "ClusterRoleBinding", None, "plinth:test:platform-admin") == ["ml-admins"]


# --- eks ---------------------------------------------------------------------------------------------------


def test_eks_signs_people_on_through_an_oidc_identity_provider_config():
    eks = cloud_plan("eks-gpu-prod", CloudMocks())
    (config,) = [r.inputs for r in eks.resources if r.type == "aws:eks/identityProviderConfig:IdentityProviderConfig"]
    assert config["clusterName"] == "eks-gpu-prod"
    assert config["oidc"] == {
        "identityProviderConfigName": "plinth-oidc", "issuerUrl": "https://login.example.com/oauth2/ml-platform",
        "clientId": "eks-gpu-kubernetes", "usernameClaim": "email", "usernamePrefix": "oidc:",
        "groupsClaim": "groups", "groupsPrefix": "oidc:"}
    found = {key: r.inputs for key, r in by_key(eks).items()}
    assert subjects(found, "RoleBinding", "vision", "plinth:ml-engineer") == ["oidc:vision-ml-engineers"]
    # The SSO role's access entry maps to the unprefixed group, which stays bound beside the provider's.
    assert subjects(found, "ClusterRoleBinding", None, "plinth:eks-gpu:platform-admin") == [
        "ml-platform-admins", "oidc:ml-platform-admins"]
    assert not [key for key in found if key[0] == "ConfigMap" and key[1] == "kube-system"]  # EKS holds the config


def test_an_eks_spec_without_sign_on_gets_no_identity_provider_config():
    doc = spec_document(EKS)
    eks = plan(PlatformSpec.model_validate(doc), "test", mocks=CloudMocks())
    assert not [r for r in eks.resources if r.type == "aws:eks/identityProviderConfig:IdentityProviderConfig"]
