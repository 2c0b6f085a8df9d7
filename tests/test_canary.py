"""`plinth canary`: one model's canary and shadow moved by editing a spec file in place.

Each command is run on copies of a small project (a blueprint with two served models, a child
blueprint that extends it, a stack over it) and the edited file is compared with the expected text
byte for byte: only the edited values change; comments, blank lines, quoting, flow style and `null`
spellings stay. Bad requests exit 2 and leave every file of the project exactly as it was.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from support import ROOT
from plinth.spec.yamledit import DELETE, NULL, Named, apply
from plinth.cli import app
from plinth.spec.errors import SpecInvalid
from plinth.spec.load import load_spec, load_stack_spec

BASE = """\
# yaml-language-server: $schema=./schema.json
# A small platform with two served models.
apiVersion: plinth.dev/v1alpha1
kind: Platform
metadata:
  name: canaries
  environment: dev
  costCenter: "cc-1"
target:
  type: existing
  context: null          # null: the current context
rbac:
  platformAdminGroup: admins
network:
  cilium: {enabled: true, apiServer: {host: api.k8s.internal}}
  loadBalancer:
    ranges: [172.31.255.240/29]
  gateway:
    hostname: "*.models.internal"
certificates:
  certManager:
    enabled: true
monitoring:
  enabled: true

teams:
  - name: fraud
    groups:
      mlEngineer: [fraud-eng, 'fraud-ops']   # a flow list
    quota: {cpu: "16", memory: 64Gi}
  - name: credit
serving:
  hostname: serving.models.internal
  models:
    # The scorer: a canary at 10%.
    - name: scorer
      team: fraud
      runtime: triton
      modelRepository: pvc://models/triton
      stable: {version: "3", replicas: 2}   # the version in production
      canary:
        version: '4'
        replicas: 1
        weight: 10   # percent

      # latency objective
      slo: {latencyMs: 250}
    - name: ranker
      team: credit
      runtime: bentoml
      image: registry.corp.internal/ml/ranker
      stable:
        version: "1.2.0"
      shadow: {version: "1.3.0"}
# end
"""

CHILD = """\
# The same platform under another name.
extends: base.yaml
metadata:
  name: canaries-child   # renamed
"""

STACK = """\
# Development stack: one more ranker replica.
config:
  plinth:blueprint: blueprints/base.yaml
  plinth:overrides:
    metadata:
      name: "canaries-dev"   # quoted on purpose
    serving:
      models:
        - name: ranker   # two replicas in dev
          stable: {replicas: 2}

    teams:
      - name: fraud
        groups: {viewer: [fraud-viewers]}
"""

CONFIGURE = "config:\n  plinth:configures: dev\n"


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A Plinth project in a temporary directory (also the working directory)."""
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    for name, text in {"blueprints/base.yaml": BASE, "blueprints/child.yaml": CHILD,
                       "stacks/Pulumi.dev.yaml": STACK, "stacks/Pulumi.dev.configure.yaml": CONFIGURE}.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def canary(*args: str):
    """`plinth canary ...` in process (typer's runner; exit 0 paths)."""
    result = CliRunner().invoke(app, ["canary", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def canary_process(*args: str, cwd: Path):
    """`plinth canary ...` as users run it: bad input ends in main()'s exit 2."""
    return subprocess.run([str(Path(sys.executable).parent / "plinth"), "canary", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PLINTH_DEBUG": ""})


def edited(text: str, *replacements: tuple[str, str]) -> str:
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def snapshot(root: Path) -> dict:
    """Every file of the project with its bytes and modification time (a leftover temp file shows too)."""
    return {p.relative_to(root): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file()}


CANARY_BLOCK = """\
      canary:
        version: '4'
        replicas: 1
        weight: 10   # percent
"""


# --- a blueprint ----------------------------------------------------------------


def test_set_changes_the_weight_only_and_shows_the_route(project):
    result = canary("set", "scorer", "blueprints/base.yaml", "--weight", "30")
    assert (project / "blueprints/base.yaml").read_text() == edited(BASE, ("weight: 10   #", "weight: 30   #"))
    assert "~ HTTPRoute fraud/scorer  (serving-fraud-scorer-route)" in result.stdout
    route = result.stdout.split("~ HTTPRoute fraud/scorer  (serving-fraud-scorer-route)\n", 1)[1].splitlines()
    assert route[:2] == ["    spec.rules[0].backendRefs[scorer].weight: 90 -> 70",
                         "    spec.rules[0].backendRefs[scorer-canary].weight: 10 -> 30"]
    assert result.stdout.endswith("0 to add, 2 to change, 0 to replace, 0 to delete\n")  # the route and the ledger
    assert result.stderr == "wrote blueprints/base.yaml\n"
    assert load_spec(project / "blueprints/base.yaml").serving.models[0].canary.weight == 30


def test_promote_makes_the_canary_stable_and_removes_it(project):
    result = canary("promote", "scorer", "blueprints/base.yaml")
    assert (project / "blueprints/base.yaml").read_text() == edited(
        BASE, ('stable: {version: "3", replicas: 2}', 'stable: {version: "4", replicas: 2}'), (CANARY_BLOCK, ""))
    lines = result.stdout.splitlines()
    assert "- Deployment fraud/scorer-canary  (serving-fraud-scorer-canary)" in lines
    assert "~ HTTPRoute fraud/scorer  (serving-fraud-scorer-route)" in lines
    deployment = lines.index("~ Deployment fraud/scorer-stable  (serving-fraud-scorer-stable)")
    assert lines[deployment + 1] == '    metadata.labels.app.kubernetes.io/version: "3" -> "4"'
    assert "spec.replicas" not in result.stdout  # stable keeps its replicas: it takes all the traffic now
    scorer = load_spec(project / "blueprints/base.yaml").serving.models[0]
    assert (scorer.stable.version, scorer.stable.replicas, scorer.canary) == ("4", 2, None)


def test_abort_removes_the_canary(project):
    result = canary("abort", "fraud/scorer", "blueprints/base.yaml")
    assert (project / "blueprints/base.yaml").read_text() == edited(BASE, (CANARY_BLOCK, ""))
    assert "- Deployment fraud/scorer-canary  (serving-fraud-scorer-canary)" in result.stdout
    assert "    spec.rules[0].backendRefs[scorer].weight: 90 -> 100" in result.stdout.splitlines()
    assert ('    spec.rules[0].backendRefs[scorer-canary]: {"name": "scorer-canary", "port": 8000, "weight": 10} -> (none)'
            in result.stdout.splitlines())
    assert load_spec(project / "blueprints/base.yaml").serving.models[0].canary is None


def test_shadow_is_added_moved_and_turned_off(project):
    path = project / "blueprints/base.yaml"
    added = canary("shadow", "scorer", "blueprints/base.yaml", "--version", "5")
    text = edited(BASE, ("      slo: {latencyMs: 250}\n",
                         '      slo: {latencyMs: 250}\n      shadow: {version: "5"}\n'))
    assert path.read_text() == text
    assert "+ Deployment fraud/scorer-shadow  (serving-fraud-scorer-shadow)" in added.stdout
    assert "~ HTTPRoute fraud/scorer  (serving-fraud-scorer-route)" in added.stdout and "RequestMirror" in added.stdout

    moved = canary("shadow", "ranker", "blueprints/base.yaml", "--version", "1.4.0")
    text = edited(text, ('shadow: {version: "1.3.0"}', 'shadow: {version: "1.4.0"}'))
    assert path.read_text() == text
    assert "~ Deployment credit/ranker-shadow  (serving-credit-ranker-shadow)" in moved.stdout

    off = canary("shadow", "ranker", "blueprints/base.yaml", "--off")
    assert path.read_text() == edited(text, ('      shadow: {version: "1.4.0"}\n', ""))
    assert "- Deployment credit/ranker-shadow  (serving-credit-ranker-shadow)" in off.stdout
    assert "~ HTTPRoute credit/ranker  (serving-credit-ranker-route)" in off.stdout
    assert [m.shadow and m.shadow.version for m in load_spec(path).serving.models] == ["5", None]


def test_an_edit_that_changes_nothing_writes_nothing(project):
    before = snapshot(project)
    result = canary("set", "scorer", "blueprints/base.yaml", "--weight", "10")
    assert (result.stdout, result.stderr) == ("no changes\n", "blueprints/base.yaml: already so, not changed\n")
    assert snapshot(project) == before


def test_crlf_line_endings_are_kept(project):
    path = project / "blueprints/base.yaml"
    path.write_bytes(BASE.replace("\n", "\r\n").encode())
    canary("set", "scorer", "blueprints/base.yaml", "--weight", "30")
    assert path.read_bytes() == edited(BASE, ("weight: 10   #", "weight: 30   #")).replace("\n", "\r\n").encode()


def test_the_file_keeps_its_mode(project):
    path = project / "blueprints/base.yaml"
    path.chmod(0o640)
    canary("abort", "scorer", "blueprints/base.yaml")
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    assert sorted(p.name for p in path.parent.iterdir()) == ["base.yaml", "child.yaml"]  # no temp file left


def test_a_child_blueprint_gets_an_entry_and_its_parent_is_untouched(project):
    result = canary("promote", "scorer", "blueprints/child.yaml")
    assert (project / "blueprints/child.yaml").read_text() == CHILD + (
        "serving:\n"
        "  models:\n"
        "    - name: scorer\n"
        "      stable: {version: \"4\"}\n"
        "      canary: ~\n")  # `~`: the parent's canary must not merge back in
    assert (project / "blueprints/base.yaml").read_text() == BASE
    assert "- Deployment fraud/scorer-canary  (serving-fraud-scorer-canary)" in result.stdout
    scorer = load_spec(project / "blueprints/child.yaml").serving.models[0]
    assert (scorer.stable.version, scorer.canary) == ("4", None)


# --- a stack -----------------------------------------------------------------------


def test_stack_set_adds_a_minimal_entry_to_the_overrides(project):
    result = canary("set", "scorer", "--stack", "dev", "--weight", "25")
    assert (project / "stacks/Pulumi.dev.yaml").read_text() == edited(STACK, (
        "          stable: {replicas: 2}\n",
        "          stable: {replicas: 2}\n        - name: scorer\n          canary: {weight: 25}\n"))
    assert (project / "blueprints/base.yaml").read_text() == BASE  # the shared blueprint never changes
    assert "~ HTTPRoute fraud/scorer  (serving-fraud-scorer-route)" in result.stdout
    assert result.stderr == "wrote stacks/Pulumi.dev.yaml\n"
    scorer = load_stack_spec(project, "dev").serving.models[0]
    assert (scorer.canary.version, scorer.canary.weight) == ("4", 25)


def test_stack_promote_then_shadow_edit_the_stack_entries(project):
    promoted = canary("promote", "scorer", "--stack", "dev")
    text = edited(STACK, ("          stable: {replicas: 2}\n",
                          "          stable: {replicas: 2}\n"
                          "        - name: scorer\n"
                          '          stable: {version: "4"}\n'
                          "          canary: ~\n"))
    assert (project / "stacks/Pulumi.dev.yaml").read_text() == text
    assert "~ Deployment fraud/scorer-stable  (serving-fraud-scorer-stable)" in promoted.stdout
    assert "- Deployment fraud/scorer-canary  (serving-fraud-scorer-canary)" in promoted.stdout

    canary("shadow", "ranker", "--stack", "dev", "--version", "1.4.0")
    text = edited(text, ("          stable: {replicas: 2}\n",
                         '          stable: {replicas: 2}\n          shadow: {version: "1.4.0"}\n'))
    assert (project / "stacks/Pulumi.dev.yaml").read_text() == text

    off = canary("shadow", "ranker", "--stack", "dev", "--off")
    assert (project / "stacks/Pulumi.dev.yaml").read_text() == edited(
        text, ('shadow: {version: "1.4.0"}', "shadow: ~"))
    assert "- Deployment credit/ranker-shadow  (serving-credit-ranker-shadow)" in off.stdout
    assert (project / "blueprints/base.yaml").read_text() == BASE
    ranker = load_stack_spec(project, "dev").serving.models[1]
    assert (ranker.stable.replicas, ranker.shadow) == (2, None)


def test_stack_abort_of_a_canary_the_stack_itself_set(project):
    canary("set", "scorer", "--stack", "dev", "--weight", "25")
    canary("abort", "scorer", "--stack", "dev")
    assert (project / "stacks/Pulumi.dev.yaml").read_text() == edited(STACK, (
        "          stable: {replicas: 2}\n",
        "          stable: {replicas: 2}\n        - name: scorer\n          canary: ~\n"))
    assert load_stack_spec(project, "dev").serving.models[0].canary is None


# --- bad requests --------------------------------------------------------------------

B = "blueprints/base.yaml"
S = "stacks/Pulumi.dev.yaml"


@pytest.mark.parametrize("args, message", [
    (("promote", "nope", B), f"{B}: not changed: no model named 'nope' in serving.models (models: ranker, scorer)"),
    (("set", "nope", "--stack", "dev", "--weight", "5"), f"{S}: not changed: no model named 'nope'"),
    (("abort", "credit/scorer", B), f"{B}: not changed: model 'scorer' belongs to team 'fraud', not 'credit'"),
    (("set", "scorer", B, "--weight", "101"), f"{B}: not changed: --weight 101: expected a percentage from 0 to 100"),
    (("set", "scorer", B, "--weight", "-1"), f"{B}: not changed: --weight -1: expected a percentage from 0 to 100"),
    (("set", "ranker", B, "--weight", "5"), f"{B}: not changed: model 'ranker' has no canary to set the weight of"),
    (("promote", "ranker", "--stack", "dev"), f"{S}: not changed: nothing to promote: model 'ranker' has no canary"),
    (("abort", "ranker", B), f"{B}: not changed: nothing to abort: model 'ranker' has no canary"),
    (("shadow", "scorer", B, "--off"), f"{B}: not changed: model 'scorer' has no shadow to turn off"),
    (("shadow", "scorer", B), f"{B}: not changed: give either --version V"),
    (("shadow", "scorer", B, "--version", "5", "--off"), f"{B}: not changed: give either --version V"),
    # the result would break a rule: the shadow would run stable's version
    (("shadow", "ranker", B, "--version", "1.2.0"), f"{B}: not changed: the edit would make the spec invalid\n"
     f"{B}:54:16: serving.models[ranker].shadow.version: the shadow runs the same version as stable"),
    # ... located in the stack file (never in the temporary file it was checked in)
    (("shadow", "scorer", "--stack", "dev", "--version", "3"), f"{S}: not changed: the edit would make the spec "
     f"invalid\n{S}:12:20: serving.models[scorer].shadow.version: the shadow runs the same version as stable"),
    (("shadow", "ranker", B, "--version", "bad version"), f"{B}:54:16: serving.models[ranker].shadow.version: "
     "expected a string matching"),
    (("abort", "scorer", B, "--stack", "dev"), "give a blueprint or --stack, not both"),
    (("abort", "scorer"), "give the blueprint to edit, or --stack NAME"),
    (("abort", "scorer", "--stack", "dev.configure"), "stacks/Pulumi.dev.configure.yaml: not changed: a configure "
     "stack takes its spec from the stack it configures"),
])
def test_a_bad_request_exits_2_and_changes_no_file(project, args, message):
    before = snapshot(project)
    result = canary_process(*args, cwd=project)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert snapshot(project) == before


def test_a_model_named_twice_in_the_file_is_ambiguous_and_refused(project):
    path = project / "blueprints/base.yaml"
    path.write_text(BASE.replace("    - name: ranker\n", "    - name: scorer\n"))
    before = snapshot(project)
    result = canary_process("set", "scorer", "blueprints/base.yaml", "--weight", "5", cwd=project)
    assert result.returncode == 2
    assert result.stderr.startswith(f"{B}: not changed: the spec is invalid as it stands\n"
                                    f"{B}:48:7: duplicate name 'scorer' in this list (first at line 36)\n")
    assert snapshot(project) == before


# --- the text edits themselves -----------------------------------------------------------


def test_edits_keep_line_endings_final_newline_and_nulls():
    text = "a:\r\n  b: ~\r\n  c: null   # kept\r\n"
    assert apply(text, ("a", "d", "e"), 5) == "a:\r\n  b: ~\r\n  c: null   # kept\r\n  d: {e: 5}\r\n"
    assert apply("a:\n  b: 1", ("a", "c"), 2) == "a:\n  b: 1\n  c: 2\n"
    assert apply("a:\n  b:   # empty\n", ("a", "b"), {"c": 1}) == "a:\n  b: {c: 1}   # empty\n"


def test_edits_follow_the_list_indentation_of_the_file():
    text = "models:\n-   name: a\n    x: 1\n"
    assert apply(text, ("models", Named("b"), "canary", "weight"), 5) == \
        text + "-   name: b\n    canary: {weight: 5}\n"


def test_deleting_in_flow_style_and_the_first_key_of_a_list_item():
    text = "m: [{name: a, canary: {weight: 1}, x: 2}]\n"
    assert apply(text, ("m", Named("a"), "canary"), DELETE) == "m: [{name: a, x: 2}]\n"
    assert apply(text, ("m", Named("a"), "canary"), NULL) == "m: [{name: a, canary: ~, x: 2}]\n"
    text = "m:\n  - canary: {weight: 1}   # c\n    name: a\n"
    assert apply(text, ("m", Named("a"), "canary"), DELETE) == "m:\n  - name: a\n"


def test_new_strings_are_quoted_when_yaml_would_read_them_as_something_else():
    text = "s: {version: v1}\nt: {version: 'v1'}\n"
    assert apply(text, ("s", "version"), "v2") == "s: {version: v2}\nt: {version: 'v1'}\n"
    assert apply(text, ("s", "version"), "2.0") == 's: {version: "2.0"}\nt: {version: \'v1\'}\n'
    assert apply(text, ("s", "version"), "true") == 's: {version: "true"}\nt: {version: \'v1\'}\n'
    assert apply(text, ("t", "version"), "2.0") == "s: {version: v1}\nt: {version: '2.0'}\n"


# --- hostile input: concurrent edits, files that are no files, odd line ends, links ---------------------


def test_a_second_edit_waits_for_the_first_and_reads_what_it_wrote(project):
    # Once an `abort` reported as done was undone by a `set` that had read the file before the abort wrote.
    import fcntl
    import time

    path = project / B
    with open(path) as held:  # an edit in progress holds the file's lock
        fcntl.flock(held, fcntl.LOCK_EX)
        second = subprocess.Popen([str(Path(sys.executable).parent / "plinth"), "canary", "set", "scorer", B,
                                   "--weight", "30"], cwd=project, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        time.sleep(3)
        assert second.poll() is None, "the second edit must wait for the lock"
        # ... meanwhile the first edit (an abort) writes its result, replacing the file
        tmp = path.with_name(".aborted.tmp")
        tmp.write_text(edited(BASE, (CANARY_BLOCK, "")))
        os.replace(tmp, path)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 2, err
    assert f"{B}: not changed: model 'scorer' has no canary to set the weight of" in err
    assert path.read_text() == edited(BASE, (CANARY_BLOCK, "")), "the abort stays done"


def test_two_concurrent_edits_lose_nothing(project):
    runs = [subprocess.Popen([str(Path(sys.executable).parent / "plinth"), "canary", *args], cwd=project,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for args in (("abort", "scorer", B), ("set", "scorer", B, "--weight", "30"))]
    for run in runs:
        run.communicate(timeout=300)
    abort, set_ = runs[0].returncode, runs[1].returncode
    assert abort == 0
    text = (project / B).read_text()
    # Either the set ran first (both done, then the abort removed the canary) or after (refused: no canary).
    assert set_ in (0, 2) and "weight: 30" not in text and text == edited(BASE, (CANARY_BLOCK, ""))


def test_a_file_changed_between_read_and_write_is_not_overwritten(project, monkeypatch):
    import plinth.cli as cli

    path = project / B
    plan = cli._plan

    def plan_then_edit(*args, **kwargs):  # someone's editor saves while the edit plans
        result = plan(*args, **kwargs)
        path.write_text(BASE.replace("name: canaries\n", "name: canaries-edited\n"))
        return result

    monkeypatch.setattr(cli, "_plan", plan_then_edit)
    result = CliRunner().invoke(app, ["canary", "set", "scorer", B, "--weight", "30"])
    assert isinstance(result.exception, SpecInvalid)
    assert [str(e) for e in result.exception.errors] == [
        f"{B}: not changed: it changed since it was read (another edit?); run the command again"]
    assert path.read_text() == BASE.replace("name: canaries\n", "name: canaries-edited\n")
    assert sorted(p.name for p in path.parent.iterdir()) == ["base.yaml", "child.yaml"]


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_target_that_is_no_regular_file_is_refused_not_waited_on(project, kind):
    path = project / "blueprints/odd.yaml"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    result = canary_process("abort", "scorer", "blueprints/odd.yaml", cwd=project)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[:2] == ["blueprints/odd.yaml: not changed: the spec is invalid as it stands",
                                              "blueprints/odd.yaml: not a regular file"]


def test_lone_cr_line_ends_are_refused(project):
    # Once the edit landed under another model: the text edits split lines at LF only.
    path = project / B
    path.write_bytes(BASE.replace("\n", "\r").encode())
    before = path.read_bytes()
    result = canary_process("shadow", "scorer", B, "--version", "9", cwd=project)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[0] == (f"{B}: not changed: its lines end with a lone CR: convert them to LF "
                                             "(or CRLF) line ends first")
    assert path.read_bytes() == before


def test_a_read_only_directory_exits_2(project):
    before = snapshot(project)
    with read_only(project / "blueprints"):
        result = canary_process("abort", "scorer", B, cwd=project)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[0].startswith(f"{B}: not changed: cannot write beside it: ")
    assert snapshot(project) == before


@contextlib.contextmanager
def read_only(directory: Path):
    """A directory nobody can create files in: chmod for a user, the immutable flag for root (who ignores
    the mode)."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
    elif subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode != 0:
        pytest.skip("no way to make a directory read-only for root here (chattr +i)")
    try:
        yield
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        directory.chmod(0o755)


def test_a_symlinked_blueprint_extends_from_the_links_directory_as_validate_does(project):
    # validate resolves `extends:` from the directory of the path given (the link's); the edit checks the
    # same spec, not the one beside the link's target.
    (project / "elsewhere").mkdir()
    (project / "elsewhere/child.yaml").write_text(CHILD)
    (project / "elsewhere/base.yaml").write_text("not: a spec\n")
    link = project / "blueprints/link.yaml"
    link.symlink_to(project / "elsewhere/child.yaml")
    assert load_spec(link).metadata.name == "canaries-child"
    canary("set", "scorer", "blueprints/link.yaml", "--weight", "30")
    assert load_spec(link).serving.models[0].canary.weight == 30
    assert "weight: 30" in (project / "elsewhere/child.yaml").read_text()
    assert (project / "elsewhere/base.yaml").read_text() == "not: a spec\n"
