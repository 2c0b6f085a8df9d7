"""Bad input: every malformed spec gets exact messages naming file, line, column and field."""

from __future__ import annotations

import pytest

from support import MINIMAL
from plinth.spec.errors import SpecInvalid
from plinth.spec.load import load_spec

# name: (bad.yaml text, the exact error lines). base.yaml is conftest.MINIMAL.
CASES = {
    "gpu_not_a_number": (
        'extends: base.yaml\nteams:\n  - name: fraud\n    quota:\n      gpu: four\n',
        ['bad.yaml:5:7: teams[fraud].quota.gpu: expected a non-negative integer, got "four"'],
    ),
    "typo_suggests_field": (
        'extends: base.yaml\nteams:\n  - name: fraud\n    quotas: {gpu: 1}\n',
        ["bad.yaml:4:5: teams[fraud].quotas: unknown field; did you mean 'quota'?"],
    ),
    "environment_literal": (
        'extends: base.yaml\nmetadata:\n  environment: production\n',
        ['bad.yaml:3:3: metadata.environment: expected \'dev\', \'staging\' or \'prod\', got "production"'],
    ),
    "unknown_target_type": (
        'extends: base.yaml\ntarget:\n  type: aks\n',
        ['bad.yaml:3:3: target.type: expected one of \'existing\', \'eks\', \'gke\', got "aks"'],
    ),
    "eks_missing_region": (
        'extends: base.yaml\ntarget:\n  type: eks\n  accountId: "123456789012"\n  availabilityZones: [eu-west-1a, eu-west-1b]\n'
        '  adminRoleArn: arn:aws:iam::123456789012:role/admins\n  nodePools:\n    - name: cpu\n      instanceType: m7i.2xlarge\n',
        ['bad.yaml:2:1: target.region: required field is missing'],
    ),
    "invalid_yaml": (
        'extends: base.yaml\nteams:\n  - name: fraud\n   quota: {}\n',
        ["bad.yaml:4:4: invalid YAML: while parsing a block collection expected <block end>, but found '<block mapping start>'"],
    ),
    "unsupported_kubernetes": (
        'extends: base.yaml\nkubernetes:\n  version: "1.20"\n',
        ['bad.yaml:3:3: kubernetes.version: expected a supported Kubernetes minor version (1.32, 1.33, 1.34, 1.35), got "1.20"'],
    ),
    "extends_cycle": (
        'extends: bad.yaml\n',
        ['bad.yaml:1:1: extends: blueprints extend each other in a cycle: bad.yaml -> bad.yaml'],
    ),
    "extends_missing": (
        'extends: nowhere.yaml\n',
        ["bad.yaml:1:1: extends: blueprint 'nowhere.yaml' not found"],
    ),
    "model_unknown_team": (
        'extends: base.yaml\nmonitoring: {enabled: true}\nserving:\n  models:\n    - name: scorer\n      team: risk\n      runtime: triton\n      modelRepository: pvc://models/scorer\n      stable: {version: "1"}\n',
        ["bad.yaml:6:7: serving.models[scorer].team: team 'risk' is not defined [rule model-team-exists; fix: add a team named 'risk' under teams, or fix the name]"],
    ),
    "duplicate_team": (
        'extends: base.yaml\nteams:\n  - name: search\n  - name: search\n',
        ["bad.yaml:4:5: duplicate name 'search' in this list (first at line 3)"],
    ),
    "wildcard_group": (
        'extends: base.yaml\nrbac:\n  platformAdminGroup: "*"\n',
        ['bad.yaml:3:3: rbac.platformAdminGroup: expected a named identity-provider group; \'*\' and \'system:\' groups are not allowed, got "*"'],
    ),
    "pods_zero": (
        'extends: base.yaml\nteams:\n  - name: fraud\n    quota:\n      pods: 0\n',
        ['bad.yaml:5:7: teams[fraud].quota.pods: expected a positive integer, got 0'],
    ),
    "load_balancer_range": (
        'extends: base.yaml\nnetwork:\n  loadBalancer:\n    ranges: [10.30.0.240/29, 10.30.0.250-10.30.0.240]\n',
        ['bad.yaml:4:30: network.loadBalancer.ranges[1]: expected a CIDR such as 10.20.0.240/28 or a range first-last '
         'such as 10.20.0.240-10.20.0.250 (first not above last, one IP family), got "10.30.0.250-10.30.0.240"'],
    ),
    "not_a_mapping": (
        '- just\n- a list\n',
        ['bad.yaml:1:1: expected a mapping (the platform spec) at the top level'],
    ),
    "duplicate_key": (
        'extends: base.yaml\nrbac:\n  platformAdminGroup: a\n  platformAdminGroup: b\n',
        ['bad.yaml:4:3: invalid YAML: while constructing a mapping found duplicate key "platformAdminGroup" with value "b" (original value: "a")'],
    ),
    "missing_required": (
        'apiVersion: plinth.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: x\n  costCenter: c\ntarget:\n  type: existing\n',
        ['bad.yaml:1:1: rbac: required field is missing', 'bad.yaml:3:1: metadata.environment: required field is missing'],
    ),
    "pod_cidr_overlaps_the_mirror": (
        'extends: base.yaml\nnetwork:\n  cilium:\n    enabled: true\n    kubeProxyReplacement: false\n'
        '    gatewayApi: false\n    hubble: false\n    podCidr: 10.0.0.0/8\nairgap:\n  enabled: true\n  mirror:\n'
        '    registry: mirror.corp/m\n    charts: oci://mirror.corp/charts\n    cidrs:\n      - 10.20.0.0/24\n',
        ["bad.yaml:15:9: airgap.mirror.cidrs[0]: the mirror network 10.20.0.0/24 overlaps Cilium's pod address pool "
         "network.cilium.podCidr 10.0.0.0/8: its traffic would stay inside the cluster [rule cilium-pod-cidr-overlap; "
         "fix: set network.cilium.podCidr to a range no declared network uses (default 100.64.0.0/14)]"],
    ),
    "prod_rules": (
        'extends: base.yaml\nmetadata:\n  environment: prod\nsecrets:\n  vault: {enabled: true}\ntesting:\n  skipAwait: true\n',
        ['bad.yaml:3:3: metadata.environment: prod signs people on through an identity provider, and identity.oidc '
         'is not set [rule prod-identity; fix: set identity.oidc (issuer and clients.kubernetes), or say why not in '
         'identity.reason]',
         'bad.yaml:5:3: secrets.vault.ha: prod requires Vault in HA mode [rule prod-vault-ha; fix: set secrets.vault.ha: true]', "bad.yaml:5:11: secrets.vault.enabled: Vault's listener takes its TLS certificate from cert-manager, which is off [rule vault-needs-cert-manager; fix: enable certificates.certManager]", 'bad.yaml:7:3: testing.skipAwait: skipAwait is for throw-away test clusters, not prod [rule prod-no-test-options; fix: remove testing.skipAwait]'],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_spec_reports_exact_errors(name, write):
    text, expected = CASES[name]
    write("base.yaml", MINIMAL)
    bad = write("bad.yaml", text)
    with pytest.raises(SpecInvalid) as caught:
        load_spec(bad)
    assert [str(e) for e in caught.value.errors] == expected


def test_all_errors_are_reported_at_once(write):
    write("base.yaml", MINIMAL)
    bad = write("bad.yaml", """\
        extends: base.yaml
        metadata:
          environment: qa
        teams:
          - name: fraud
            quota: {gpu: -1, cpu: lots}
        """)
    with pytest.raises(SpecInvalid) as caught:
        load_spec(bad)
    assert [e.path for e in caught.value.errors] == [
        "metadata.environment", "teams[fraud].quota.gpu", "teams[fraud].quota.cpu"]  # in file order


def test_stack_rejects_unknown_plinth_keys(write):
    write("blueprints/base.yaml", MINIMAL)
    write("stacks/Pulumi.dev.yaml", """\
        config:
          plinth:blueprint: blueprints/base.yaml
          plinth:overides: {}
          aws:region: eu-west-1
        """)
    from pathlib import Path

    from plinth.spec.load import read_stack

    with pytest.raises(SpecInvalid) as caught:
        read_stack(Path.cwd(), "dev")
    assert [str(e) for e in caught.value.errors] == [
        "stacks/Pulumi.dev.yaml:3:3: config.plinth:overides: unknown key (allowed: plinth:blueprint, "
        "plinth:overrides, plinth:mirrorPassword, plinth:objectStoreSeed, plinth:pythonIndexHtpasswd, plinth:harborAdminPassword, "
        "plinth:mlflowFlaskSecretKey, plinth:mlflowOidcClientSecret, plinth:feastRedisPassword, plinth:grafanaAdminPassword, plinth:alertReceivers, "
        "plinth:grafanaOidcClientSecret, plinth:uiProxyClientSecret, plinth:uiProxyCookieSecret, "
        "plinth:argoOidcClientSecret, plinth:jupyterhubOidcClientSecret, plinth:dexLdapBindPassword, "
        "plinth:vaultOidcClientSecret, plinth:harborOidcClientSecret, plinth:configures)"]


def test_a_configure_stack_takes_its_spec_from_a_platform_stack_only(write):
    write("blueprints/base.yaml", MINIMAL)
    write("stacks/Pulumi.dev.yaml", "config:\n  plinth:blueprint: blueprints/base.yaml\n")
    write("stacks/Pulumi.dev.configure.yaml", "config:\n  plinth:configures: dev\n")
    write("stacks/Pulumi.loop.yaml", "config:\n  plinth:configures: dev.configure\n")
    write("stacks/Pulumi.both.yaml", "config:\n  plinth:configures: dev\n  plinth:blueprint: blueprints/base.yaml\n")
    from pathlib import Path

    from plinth.spec.load import read_stack, stack_stage

    assert read_stack(Path.cwd(), "dev.configure") == read_stack(Path.cwd(), "dev")
    assert stack_stage(Path.cwd(), "dev.configure") == "configure"
    for stack, message in (("loop", "'dev.configure' is itself a configure stack"),
                           ("both", "a configure stack takes its spec from the stack it configures")):
        with pytest.raises(SpecInvalid) as caught:
            read_stack(Path.cwd(), stack)
        [error] = caught.value.errors
        assert str(error).startswith(f"stacks/Pulumi.{stack}.yaml:2:3: config.plinth:configures: {message}")


def test_stack_overrides_point_at_the_stack_file(write):
    write("blueprints/base.yaml", MINIMAL)
    write("stacks/Pulumi.dev.yaml", """\
        config:
          plinth:blueprint: blueprints/base.yaml
          plinth:overrides:
            teams:
              - name: fraud
                quota:
                  memory: lots
        """)
    from pathlib import Path

    from plinth.spec.load import load_stack_spec

    with pytest.raises(SpecInvalid) as caught:
        load_stack_spec(Path.cwd(), "dev")
    assert [str(e) for e in caught.value.errors] == [
        'stacks/Pulumi.dev.yaml:7:11: teams[fraud].quota.memory: expected a Kubernetes quantity such as '
        '500m, 4, 16Gi, got "lots"']


@pytest.mark.parametrize("overlay, message", [
    ("teams:\n  - name: serach\n    $delete: true\n",
     "bad.yaml:3:5: $delete: there is no item named 'serach' to delete (items here: fraud)"),
    ("teams:\n  - name: fraud\n    $delete: \"yes\"\n",
     "bad.yaml:3:5: $delete: $delete takes only true (it removes the item named 'fraud'), got 'yes'"),
    ("kubernetes:\n  version: 1.30\n",
     'bad.yaml:3:3: kubernetes.version: expected a quoted Kubernetes minor version such as "1.34" (unquoted, YAML '
     'reads a number and 1.30 becomes 1.3); supported: 1.32, 1.33, 1.34, 1.35, got 1.3'),
])
def test_careless_overlays_name_the_mistake(overlay, message, write):
    assert overlay_errors(write, overlay) == [message]


@pytest.mark.parametrize("text, message", [
    ('a: &a ["lol", "lol"]\nb: &b [*a, *a]\n',
     "bad.yaml:2:8: YAML aliases (*name) are not accepted: an alias can expand without bound; repeat the value "
     "or share it with `extends:`"),
    ("base: &base {cpu: '1'}\nteams:\n  - name: fraud\n    quota:\n      <<: *base\n",
     "bad.yaml:5:11: YAML aliases (*name) are not accepted: an alias can expand without bound; repeat the value "
     "or share it with `extends:`"),
    ("x-deep: " + "[" * 300 + "]" * 300 + "\n", "bad.yaml:1:72: nested deeper than the limit of 64 levels"),
    ("x-big: '" + "a" * (1 << 20) + "'\n", "bad.yaml: larger than the 1024 KiB limit for a spec file"),
])
def test_hostile_yaml_is_refused_before_it_is_built(text, message, write):
    assert errors_of(write("bad.yaml", text)) == [message]


def test_a_spec_that_is_not_a_regular_file_is_refused(tmp_path, monkeypatch):
    import os

    monkeypatch.chdir(tmp_path)
    os.mkfifo("pipe.yaml")  # reading it would block forever
    with pytest.raises(SpecInvalid) as caught:
        load_spec(tmp_path / "pipe.yaml")
    assert [str(e) for e in caught.value.errors] == ["pipe.yaml: not a regular file"]


@pytest.mark.parametrize("team, message", [
    ("    quota: {memory: .inf}\n",
     "bad.yaml:4:13: teams[fraud].quota.memory: expected a Kubernetes quantity such as 500m, 4, 16Gi, got Infinity"),
    ("    quota: {memory: 9999999999999999Ei}\n",
     "bad.yaml:4:13: teams[fraud].quota.memory: expected a Kubernetes quantity such as 500m, 4, 16Gi (this one is "
     'beyond what Kubernetes can store), got "9999999999999999Ei"'),
    ("    costCenter: risk analytics!\n",
     "bad.yaml:4:5: teams[fraud].costCenter: expected a string matching "
     '^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$, got "risk analytics!"'),
    ("    containerDefaults: {memoryRequest: 2Gi}\n",
     "bad.yaml:4:5: teams[fraud].containerDefaults: the default memory request 2Gi is above its limit 1Gi (the API "
     "server rejects such a LimitRange), got a mapping"),
])
def test_team_values_the_api_server_would_reject_are_refused(team, message, write):
    assert overlay_errors(write, "teams:\n  - name: fraud\n" + team) == [message]


def errors_of(path) -> list[str]:
    with pytest.raises(SpecInvalid) as caught:
        load_spec(path)
    return [str(e) for e in caught.value.errors]


def overlay_errors(write, overlay: str) -> list[str]:
    """The errors of `bad.yaml`, which extends the MINIMAL spec with `overlay`."""
    write("base.yaml", MINIMAL)
    return errors_of(write("bad.yaml", "extends: base.yaml\n" + overlay))


SECRET_STACK = """\
config:
  plinth:blueprint: blueprints/base.yaml
  plinth:mirrorPassword: hunter2
  plinth:grafanaAdminPassword:
    secure: v1:c2FsdA==:Y2lwaGVy
  plinth:alertReceivers:
    oncall: https://hooks.example/oncall
    pager:
      secure: v1:c2FsdA==:cGFnZXI=
  plinth:harborAdminPassword: {secure: ""}
  plinth:feastRedisPassword:
    secure: v1:abc
    plain: oops
  aws:region: eu-west-1
"""


def test_secrets_in_a_stack_file_are_only_accepted_encrypted(write):
    from pathlib import Path

    from plinth.spec.load import read_stack

    write("blueprints/base.yaml", MINIMAL)
    write("stacks/Pulumi.dev.yaml", SECRET_STACK)
    with pytest.raises(SpecInvalid) as caught:
        read_stack(Path.cwd(), "dev")
    advice = "a secret in plain text (anyone who can read this file can read it): set it with `{}`, which stores " \
             "it encrypted (`secure: ...`)"
    assert [str(e) for e in caught.value.errors] == [
        "stacks/Pulumi.dev.yaml:3:3: config.plinth:mirrorPassword: "
        + advice.format("pulumi config set --secret plinth:mirrorPassword VALUE"),
        "stacks/Pulumi.dev.yaml:7:5: config.plinth:alertReceivers.oncall: "
        + advice.format("pulumi config set --secret --path 'plinth:alertReceivers.oncall' VALUE"),
        "stacks/Pulumi.dev.yaml:10:3: config.plinth:harborAdminPassword: "  # an empty ciphertext is no secret
        + advice.format("pulumi config set --secret plinth:harborAdminPassword VALUE"),
        "stacks/Pulumi.dev.yaml:11:3: config.plinth:feastRedisPassword: "
        + advice.format("pulumi config set --secret plinth:feastRedisPassword VALUE"),
    ]
    assert "hunter2" not in str(caught.value) and "oops" not in str(caught.value)


def test_a_configure_stack_refuses_its_own_plain_text_secret(write):
    from pathlib import Path

    from plinth.spec.load import read_stack

    write("blueprints/base.yaml", MINIMAL)
    write("stacks/Pulumi.dev.yaml", "config:\n  plinth:blueprint: blueprints/base.yaml\n")
    write("stacks/Pulumi.dev.configure.yaml", "config:\n  plinth:configures: dev\n  plinth:harborAdminPassword: x\n")
    with pytest.raises(SpecInvalid) as caught:
        read_stack(Path.cwd(), "dev.configure")
    assert [e.path for e in caught.value.errors] == ["config.plinth:harborAdminPassword"]
    assert str(caught.value.errors[0]).startswith("stacks/Pulumi.dev.configure.yaml:3:3: ")


def test_the_real_engine_refuses_a_plain_text_secret_too(write):
    import pulumi
    from pathlib import Path

    from plinth.engine.offline import record
    from plinth.stackconfig import spec_from_pulumi_config

    write("blueprints/base.yaml", MINIMAL)
    write("stacks/Pulumi.dev.yaml", "config:\n  plinth:blueprint: blueprints/base.yaml\n  plinth:mirrorPassword: pw\n")
    with pytest.raises(pulumi.RunError) as caught:
        record(lambda: spec_from_pulumi_config(pulumi.Config("plinth"), Path.cwd()), stack="dev",
               config={"plinth:blueprint": "blueprints/base.yaml", "plinth:mirrorPassword": "pw"})
    assert "stacks/Pulumi.dev.yaml:3:3: config.plinth:mirrorPassword: a secret in plain text" in str(caught.value)


def test_one_list_of_secret_keys():
    from plinth.program import CONFIGURATION, SERVICES, stack_secrets
    from plinth.spec.load import stack_keys

    # Every secret a service declares, and the mirror's: nothing else; one field per key.
    declared = {s.key for _, service in (*SERVICES, *CONFIGURATION) for s in service.secrets}
    assert set(stack_secrets()) == declared | {"mirrorPassword"}
    assert len({s.field for s in stack_secrets().values()}) == len(stack_secrets())
    assert {k for k, what in stack_keys().items() if what.startswith("secret:")} == set(stack_secrets())


@pytest.mark.parametrize("text, message", [
    ("extends: sub\n", "bad.yaml:1:1: extends: 'sub' is a directory, not a blueprint file"),
    ("extends: .\n", "bad.yaml:1:1: extends: '.' is a directory, not a blueprint file"),
    ("extends: base.yaml\nteams:\n  - name: fraud\n    quota: {gpu: " + "9" * 5000 + "}\n",
     "bad.yaml:4:18: a number of more than 100 digits (quote it if it is text)"),
    ("extends: base.yaml\nx-a: 0x" + "f" * 200 + "\n", "bad.yaml:2:6: a number of more than 100 digits (quote it if it "
     "is text)"),
    ("extends: base.yaml\nmetadata:\n  costCenter: 2001-13-14\n",
     "bad.yaml:3:15: invalid YAML: cannot read this value: month must be in 1..12"),
    ("extends: base.yaml\nkubernetes:\n  version: !!int abc\n",
     "bad.yaml:3:12: invalid YAML: cannot read this value: invalid literal for int() with base 10: 'abc'"),
    ("extends: base.yaml\nmetadata:\n  costCenter: !!str [a]\n",
     "bad.yaml:3:3: metadata.costCenter: expected a string, got a list"),
    ("extends: base.yaml\nmetadata:\n  name: a\x00b\n",
     "bad.yaml:3:10: invalid YAML: character #x0000 is not allowed (special characters are not allowed)"),
    ("extends: base.yaml\n\"a\\rb\\u2028c\": 1\n",
     'bad.yaml:2:1: "a\\rb\\u2028c": unknown field (allowed: admission, airgap, apiVersion, backups, certificates, charts, featureStore, '
     "gpu, identity, kind, kubernetes, metadata, monitoring, network, notebooks, pipelines, rbac, registry, secrets, serving, "
     "storage, target, teams, "
     "testing)"),
])
def test_hostile_values_fail_at_their_line(text, message, write):
    # Each of these once ended in an internal error (or, for the last, an error line split in two).
    write("base.yaml", MINIMAL)
    write("sub/keep.yaml", "")
    assert errors_of(write("bad.yaml", text)) == [message]


def test_the_readme_lists_every_reserved_namespace():
    from support import ROOT
    from plinth.spec.rules import RESERVED_NAMESPACES

    readme = (ROOT / "README.md").read_text()
    assert all(f"`{namespace}`" in readme for namespace in RESERVED_NAMESPACES)


@pytest.mark.parametrize("value, shown", [('"off"', '"off"'), ("'no'", '"no"'), ('"false"', '"false"'),
                                          ("0", "0"), ("1", "1")])
def test_a_boolean_takes_true_or_false_only(value, shown, write):
    # Once `airgap: {enabled: "off"}` turned air-gap off without a word.
    assert overlay_errors(write, f"airgap:\n  enabled: {value}\n") == [
        f'bad.yaml:3:3: airgap.enabled: expected true or false, unquoted ("off", "no", "false", 0 and 1 are not '
        f'booleans here), got {shown}']


def test_every_boolean_field_is_strict():
    import typing

    from pydantic import BaseModel

    from plinth.spec import models

    plain = []
    for model in vars(models).values():
        if isinstance(model, type) and issubclass(model, BaseModel):
            for name, field in model.model_fields.items():
                if field.annotation is bool or bool in typing.get_args(field.annotation):
                    if not any(getattr(m, "func", None) is models._strict_bool for m in field.metadata) and \
                            not any(getattr(m, "func", None) is models._strict_bool
                                    for a in typing.get_args(field.annotation) for m in getattr(a, "__metadata__", ())):
                        plain.append(f"{model.__name__}.{name}")
    assert plain == [], "declare boolean fields as Flag (true/false only)"


@pytest.mark.parametrize("team", ["cilium-secrets", "cilium-spire", "kube-flannel", "kube-anything", "cnpg-system",
                                  "default"])
def test_a_namespace_of_kubernetes_or_a_chart_is_no_team(team, write):
    assert overlay_errors(write, f"teams:\n  - name: {team}\n") == [
        f"bad.yaml:3:5: teams[{team}].name: {team!r} is a reserved namespace "
        "[rule reserved-namespace; fix: choose another team name]"]


_SECRET_FIX = ("[rule values-plaintext-secret; fix: remove it; set it as a stack secret (`pulumi config set --secret "
               "plinth:<key> VALUE`; the keys: plinth:mirrorPassword, plinth:objectStoreSeed, plinth:pythonIndexHtpasswd, "
               "plinth:harborAdminPassword, plinth:mlflowFlaskSecretKey, plinth:mlflowOidcClientSecret, plinth:feastRedisPassword, "
               "plinth:grafanaAdminPassword, "
               "plinth:alertReceivers, plinth:grafanaOidcClientSecret, plinth:uiProxyClientSecret, "
               "plinth:uiProxyCookieSecret, plinth:argoOidcClientSecret, plinth:jupyterhubOidcClientSecret, "
               "plinth:dexLdapBindPassword, "
               "plinth:vaultOidcClientSecret, plinth:harborOidcClientSecret), "
               "Plinth passes those to the charts, or point the chart's existing-Secret "
               "key at a Secret kept in Vault]")
_SECRET = ("a credential in plain text: it would be written into the plan, the rendered manifests and the "
           "deployment's state")


@pytest.mark.parametrize("values, line, col, path", [
    ("{externalDatabase: {password: hunter2}}", 4, 33, "registry.harbor.values.externalDatabase.password"),
    ("{core: {secret: abcdefghijklmnop}}", 4, 21, "registry.harbor.values.core.secret"),
    ("{s3: {secret_key: AKIAxyz}}", 4, 19, "registry.harbor.values.s3.secret_key"),
    ("{oidc: {clientSecret: s3cr3t, client-token: t}}", 4, 21, "registry.harbor.values.oidc.clientSecret"),
    ('{tls: {x: "-----BEGIN RSA PRIVATE KEY-----\\nMIIB"}}', 4, 20, "registry.harbor.values.tls.x"),
])
def test_a_credential_in_values_is_refused_with_the_stack_secret_way(values, line, col, path, write):
    errors = overlay_errors(write, f"registry:\n  harbor:\n    values: {values}\n")
    assert errors[0] == f"bad.yaml:{line}:{col}: {path}: {_SECRET} {_SECRET_FIX}"


def test_values_that_only_name_where_a_credential_is_kept_are_accepted(write):
    from plinth.spec.load import load_spec

    write("base.yaml", MINIMAL)
    load_spec(write("ok.yaml", "extends: base.yaml\nregistry:\n  harbor:\n    values: {existingSecretAdminPassword: "
                    "harbor-admin, existingSecretAdminPasswordKey: password, core: {secretName: core-tls, "
                    "tokenTTL: 1h}, database: {passwordKey: pw, password: ''}, credentialSecret: backup}\n"))


def test_an_air_gap_escape_is_refused_at_its_line(write):
    overlay = ("airgap:\n"
               "  enabled: true\n"
               "  mirror:\n"
               "    registry: myco.azurecr.io/mirror\n"
               "    charts: oci://attacker.azurecr.io/charts\n"
               "    cidrs: [0.0.0.0/0]\n")
    assert overlay_errors(write, overlay) == [
        "bad.yaml:6:5: airgap.mirror.charts: the mirror's chart source 'oci://attacker.azurecr.io/charts' is outside "
        "the air gap: its host is not one of the perimeter's hosts (myco.azurecr.io) [rule airgap-chart-source; fix: "
        "use a host of the mirror, or list the internal host in airgap.mirror.hosts]",
        "bad.yaml:7:13: airgap.mirror.cidrs[0]: 0.0.0.0/0 is wider than a /8: egress there would reach the internet "
        "[rule cidr-too-wide; fix: list the exact networks (at most a /8 each)]"]
