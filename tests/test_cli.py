"""The `plinth` command as users run it: exit codes, output, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import MINIMAL, ROOT

PLINTH = [str(Path(sys.executable).parent / "plinth")]


def plinth(*args, cwd=ROOT):
    return subprocess.run([*PLINTH, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PLINTH_DEBUG": ""})


def test_plan_with_no_arguments_plans_the_minimal_blueprint():
    result = plinth("plan")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("platform minimal (dev) from blueprints/minimal.yaml: 39 resources in 6 components")
    assert "Namespace fraud" in result.stdout and "planned in" in result.stdout
    assert result.stderr == ""


def test_plan_json_and_out_dir(tmp_path):
    result = plinth("plan", "--stack", "prod", "--json", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["source"] == "stack:prod" and doc["environment"] == "prod"
    assert (tmp_path / "plan.json").read_text() == result.stdout


def test_invalid_spec_exits_2_with_located_errors(write):
    write("base.yaml", MINIMAL)
    write("bad.yaml", "extends: base.yaml\nteams:\n  - name: fraud\n    quota: {gpu: four}\n")
    result = plinth("plan", "bad.yaml", cwd=Path.cwd())
    assert result.returncode == 2
    assert result.stderr == 'bad.yaml:4:13: teams[fraud].quota.gpu: expected a non-negative integer, got "four"\n1 error\n'
    assert result.stdout == ""


@pytest.mark.parametrize("args", [["validate", "--stack", "nope"], ["plan", "--bogus"], ["validate", "missing.yaml"],
                                  ["diff", "a.json"]])
def test_bad_invocations_exit_2_without_traceback(args):
    result = plinth(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.strip()


def test_diff_reports_field_changes_and_exit_code(write):
    old = write("old.yaml", MINIMAL)
    new = write("new.yaml", MINIMAL.replace("gpu: 2", "gpu: 3"))
    result = plinth("diff", str(old), str(new), "--exit-code", cwd=Path.cwd())
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    # The quota, and the ledger recording the new spec (its hash and files), nothing else.
    assert lines[lines.index("~ ResourceQuota fraud/team-quota  (tenancy-fraud-quota)") + 1] == \
        '    spec.hard.requests.nvidia.com/gpu: "2" -> "3"'
    assert "~ ConfigMap plinth-system/plinth-ledger  (ledger)" in lines
    assert lines[-1] == "0 to add, 2 to change, 0 to replace, 0 to delete"
    same = plinth("diff", str(old), str(old), "--exit-code", cwd=Path.cwd())
    assert (same.returncode, same.stdout) == (0, "no changes\n")


@pytest.mark.parametrize("side", ["old", "new"])
def test_diff_reports_an_invalid_side_like_plan_does(write, side):
    """The two specs are planned side by side (the old one in a forked process): an error on either side is
    reported as `plinth plan` reports it, exit 2, no traceback."""
    write("base.yaml", MINIMAL)
    bad = write("bad.yaml", "extends: base.yaml\nteams:\n  - name: fraud\n    quota: {gpu: four}\n")
    good = write("good.yaml", MINIMAL)
    pair = (bad, good) if side == "old" else (good, bad)
    result = plinth("diff", str(pair[0]), str(pair[1]), cwd=Path.cwd())
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == 'bad.yaml:4:13: teams[fraud].quota.gpu: expected a non-negative integer, got "four"\n1 error\n'


def test_diff_between_stacks_and_plan_files(tmp_path):
    plinth("plan", "--stack", "dev", "--out", str(tmp_path))
    result = plinth("diff", str(tmp_path / "plan.json"), "stack:prod")
    assert result.returncode == 0
    assert "+ Namespace recsys  (tenancy-recsys-namespace)" in result.stdout
    assert "- RoleBinding fraud/plinth:viewer  (tenancy-fraud-viewer)" in result.stdout


def test_render_writes_one_file_per_component_and_replaces_stale_files(tmp_path):
    (tmp_path / "keep.txt").write_text("not ours")
    assert plinth("render", "--out", str(tmp_path)).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".plinth-rendered", "admission.yaml", "keep.txt",
                                                          "ledger.yaml", "tenancy.yaml"]


def test_schema_prints_json_schema():
    result = plinth("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout)["properties"]["teams"]["type"] == "array"
    overlay = plinth("schema", "--overlay")
    assert overlay.returncode == 0 and overlay.stdout == (ROOT / "blueprints" / "overlay.schema.json").read_text()


def test_images_lists_every_image_chart_and_bundle_with_its_mirror_target():
    result = plinth("images", "--stack", "regulated-prod")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert ("image quay.io/cilium/cilium:v1.20.0@sha256:383968cd5e8873f7976fa76aa6196045643558f4cc9518a207b9335cb24a0e93"
            " harbor.corp.internal/mirror/cilium/cilium:v1.20.0@sha256:383968cd5e8873f7976fa76aa6196045643558f4cc9518a"
            "207b9335cb24a0e93") in lines  # the digest the rendered chart pulls
    # A model image already in the mirror is its own target: nothing to copy, but nothing left out either.
    assert "image harbor.corp.internal/mirror/credit/credit-risk:1.5.0 harbor.corp.internal/mirror/credit/credit-risk:1.5.0" \
        in lines
    assert "chart https://charts.longhorn.io longhorn 1.12.1 oci://harbor.corp.internal/charts" in lines
    assert any(line.startswith("bundle https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.6.1/")
               for line in lines)
    doc = json.loads(plinth("images", "--stack", "regulated-prod", "--format", "json").stdout)
    assert len(doc["images"]) == sum(line.startswith("image ") for line in lines)


def test_images_of_a_platform_without_services_is_empty_and_says_why():
    result = plinth("images")
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr == "nothing to mirror: minimal enables no service that pulls an image or a chart\n"
    public = plinth("images", "blueprints/eks-gpu.yaml")
    assert public.returncode == 0 and all(line.endswith(" -") for line in public.stdout.splitlines())
    assert public.stderr.startswith("air-gap is off: every TARGET is `-` (pulled from its source)")


@pytest.mark.parametrize("args, message", [
    (("images", "--format", "yaml"), "--format: expected text or json, got 'yaml'"),
    (("render", "--out", "x", "--charts", "no/such/dir"), "--charts: no/such/dir: not a directory"),
])
def test_bad_options_exit_2(args, message):
    result = plinth(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_render_without_charts_notes_each_release_and_still_writes_everything(tmp_path):
    result = plinth("render", "--stack", "regulated-dev", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "note: cilium: chart oci://harbor.corp.internal/charts/cilium 1.20.0 is not in a local chart directory" \
        in result.stderr
    values = (tmp_path / "helm" / "cilium-cilium.yaml").read_text()
    assert "note: 'not rendered: chart oci://harbor.corp.internal/charts/cilium" in values
    assert (tmp_path / "tenancy.yaml").is_file() and not (tmp_path / "charts").exists()


def test_version():
    result = plinth("--version")
    assert result.returncode == 0 and result.stdout.startswith("plinth ")


@pytest.mark.parametrize("stack", ["", "../../etc/passwd", ".hidden"])
def test_a_stack_name_is_never_a_path(stack):
    result = plinth("plan", "--stack", stack)
    assert result.returncode == 2
    assert f"--stack: {stack!r} is not a stack name" in result.stderr


@pytest.mark.parametrize("verb", ["plan", "render"])
@pytest.mark.parametrize("case", ["a file", "under a file"])
def test_an_out_that_is_no_directory_is_refused_before_any_work(verb, case, tmp_path):
    (tmp_path / "afile").write_text("mine")
    target = tmp_path / "afile" if case == "a file" else tmp_path / "afile" / "sub"
    message = {"a file": f"{target}: exists and is not a directory",
               "under a file": f"{target}: {tmp_path / 'afile'} is not a directory, so nothing can be created under it"}
    result = plinth(verb, "--out", str(target))
    assert (result.returncode, result.stdout) == (2, "")  # refused before planning: no tree, no file list
    assert result.stderr == f"--out: {message[case]}\n1 error\n"
    assert (tmp_path / "afile").read_text() == "mine"


@pytest.mark.skipif(not Path("/proc/sys").is_dir(), reason="needs Linux /proc/sys (unwritable, even for root)")
@pytest.mark.parametrize("verb", ["plan", "render"])
def test_an_unwritable_out_is_refused_before_any_work(verb):
    # /proc/sys refuses new entries to everyone, root included (where a chmod would not stop a write).
    result = plinth(verb, "--out", "/proc/sys/plinth-out")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("--out: /proc/sys/plinth-out: cannot create files in /proc/sys (")
    assert result.stderr.endswith(")\n1 error\n")


def test_a_plain_text_secret_in_a_stack_file_exits_2_at_its_line(write):
    write("Pulumi.yaml", "name: plinth\n")
    write("blueprints/base.yaml", MINIMAL)
    write("stacks/Pulumi.dev.yaml", "config:\n  plinth:blueprint: blueprints/base.yaml\n"
                                    "  plinth:grafanaAdminPassword: hunter2\n")
    for verb in ("validate", "plan"):
        result = plinth(verb, "--stack", "dev", cwd=Path.cwd())
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr == (
            "stacks/Pulumi.dev.yaml:3:3: config.plinth:grafanaAdminPassword: a secret in plain text (anyone who can "
            "read this file can read it): set it with `pulumi config set --secret plinth:grafanaAdminPassword "
            "VALUE`, which stores it encrypted (`secure: ...`)\n1 error\n")
        assert "hunter2" not in result.stderr


@pytest.mark.parametrize("blueprint, sdk, extra", [("eks-gpu", "pulumi_aws", "eks"), ("gke-gpu", "pulumi_gcp", "gke")])
def test_a_cloud_target_without_its_sdk_names_the_extra_to_install(blueprint, sdk, extra):
    # A default install leaves the cloud SDKs out: the interpreter below behaves as if this one were absent.
    blocked = f"import sys; sys.modules[{sdk!r}] = None; from plinth.cli import main; sys.argv[0] = 'plinth'; main()"
    result = subprocess.run([sys.executable, "-c", blocked, "plan", f"blueprints/{blueprint}.yaml"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env={**os.environ, "PLINTH_DEBUG": ""})
    assert result.returncode == 2, result.stderr
    line = next(line for line in result.stderr.splitlines() if "target-sdk-installed" in line)
    assert line.startswith(f"blueprints/{blueprint}.yaml:") and ": target.type: the " in line, line
    assert f"pip install 'plinth[{extra}]'" in line and "Traceback" not in result.stderr


def test_validate_a_stack_reports_file_and_spec_errors_at_once(write):
    write("Pulumi.yaml", "name: plinth\nruntime: python\n")
    write("blueprints/base.yaml", MINIMAL.replace("gpu: 2", "gpu: two"))
    write("stacks/Pulumi.dev.yaml", "config:\n  plinth:blueprint: blueprints/base.yaml\n  plinth:overides: {}\n")
    result = plinth("validate", "--stack", "dev", cwd=Path.cwd())
    assert result.returncode == 2, result.stdout
    assert result.stderr.splitlines()[:2] == [
        'blueprints/base.yaml:16:7: teams[fraud].quota.gpu: expected a non-negative integer, got "two"',
        "stacks/Pulumi.dev.yaml:3:3: config.plinth:overides: unknown key (allowed: plinth:blueprint, "
        "plinth:overrides, plinth:mirrorPassword, plinth:objectStoreSeed, plinth:pythonIndexHtpasswd, plinth:harborAdminPassword, "
        "plinth:mlflowFlaskSecretKey, plinth:mlflowOidcClientSecret, plinth:feastRedisPassword, plinth:grafanaAdminPassword, plinth:alertReceivers, "
        "plinth:grafanaOidcClientSecret, plinth:uiProxyClientSecret, plinth:uiProxyCookieSecret, "
        "plinth:argoOidcClientSecret, plinth:jupyterhubOidcClientSecret, plinth:dexLdapBindPassword, "
        "plinth:vaultOidcClientSecret, "
        "plinth:harborOidcClientSecret, plinth:configures)"]


def test_validate_a_stack_names_the_secrets_it_lacks_with_the_commands_that_set_them(write):
    write("Pulumi.yaml", "name: plinth\nruntime: python\n")
    write("blueprints/base.yaml", MINIMAL + "monitoring:\n  enabled: true\n  alertmanager:\n    receivers:\n"
          "      - {name: oncall, type: webhook}\n")
    write("stacks/Pulumi.dev.yaml", "config:\n  plinth:blueprint: blueprints/base.yaml\n"
          "  plinth:grafanaAdminPassword:\n    secure: v1:AAAA\n")
    result = plinth("validate", "--stack", "dev", cwd=Path.cwd())
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == [
        "stack dev lacks 1 secret its spec needs (`pulumi up` stops without them); set them with:",
        "  pulumi config set --secret -s dev --path 'plinth:alertReceivers.oncall' VALUE   "
        "# map of Alertmanager receiver name to its webhook URL or routing key"]


def test_help_shows_flags_as_flags():
    for command in (["plan"], ["diff"], ["check"], ["canary", "set"], []):
        result = plinth(*command, "--help")
        assert result.returncode == 0 and "--help" in result.stdout, result.stderr
        assert "<bool>" not in result.stdout, command


def test_a_configure_plan_with_nothing_to_configure_says_so():
    result = plinth("plan", "blueprints/minimal.yaml", "--stage", "configure")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("nothing to configure in blueprints/minimal.yaml: every part of the configure "
                                    "stage (vault-teams, harbor-projects, longhorn-backup-target) is off"), \
        result.stdout


def test_rendering_the_charts_reports_progress_per_chart():
    from plinth.engine.charts import CONFIG_GROUP, HELM_RELEASE, render_charts
    from plinth.engine.offline import plan
    from plinth.spec.load import load_spec

    result = plan(load_spec(ROOT / "blueprints" / "onprem-airgap-regulated.yaml"), "regulated")
    names = [r.name for r in result.resources if r.type in (CONFIG_GROUP, HELM_RELEASE)]
    calls = []
    render_charts(result, "1.34", None, lambda done, total, name: calls.append((done, total, name)))
    assert calls == [(i, len(names), name) for i, name in enumerate(names)] + [(len(names), len(names), "")]


def _plan_sources(result) -> dict[str, str]:
    """chart name -> where the plan's Release pulls it from (repository, oci:// prefix or directory)."""
    import os

    from plinth.engine.charts import CONFIG_GROUP, HELM_RELEASE

    sources = {}
    for r in result.resources:
        if r.type == HELM_RELEASE:
            chart, repo = str(r.inputs["chart"]), (r.inputs.get("repositoryOpts") or {}).get("repo")
            # By chart: a chart installed more than once (the sign-on proxy's) is one source.
            name = chart.rsplit("/", 1)[-1].removesuffix(".tgz").rsplit("-", 1)[0] if chart.endswith(".tgz") \
                else chart.rsplit("/", 1)[-1]
            if repo:
                sources[name] = repo
            elif chart.endswith(".tgz"):
                sources[name] = os.path.dirname(os.path.dirname(chart))
            else:
                sources[name] = chart.rsplit("/", 1)[0]
        elif r.type == CONFIG_GROUP:
            sources["bundle"] = str(r.inputs["files"][0])
    return sources


@pytest.mark.parametrize("overrides", [
    {},
    {"charts": {"source": "https://charts.corp.internal/plinth"}},
    {"charts": {"source": "/srv/plinth-charts"}},
    {"airgap": {"enabled": False}},
], ids=["mirror", "https-source", "directory-source", "public"])
def test_images_and_the_plan_agree_on_every_charts_source(overrides, tmp_path):
    from plinth.engine.offline import plan
    from plinth.mirror import mirror_list
    from plinth.spec.load import load_spec
    from plinth.spec.yamltree import merge
    from ruamel.yaml import YAML

    base = YAML(typ="safe").load((ROOT / "blueprints" / "onprem-airgap-regulated.yaml").read_text())
    # The blueprint's hosts (its identity provider's) and the chart repository's.
    doc = merge(base, {"airgap": {"mirror": {"hosts": [*base["airgap"]["mirror"]["hosts"], "charts.corp.internal"]}},
                       **overrides})
    path = tmp_path / "b.yaml"
    path.write_text(json.dumps(doc))
    spec = load_spec(path)
    listing, sources = mirror_list(spec), _plan_sources(plan(spec, "test"))
    assert {c.name: c.target or c.repository for c in listing.charts} == \
        {name: source for name, source in sources.items() if name != "bundle"}
    [bundle] = listing.bundles
    assert sources["bundle"].startswith(bundle.target or bundle.url)
