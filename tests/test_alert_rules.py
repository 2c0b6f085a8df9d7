"""Every Prometheus alerting rule Plinth writes, run by Prometheus's own rule tester (`promtool`, built from the
Prometheus Go module by tests/e2e/toolchain/build.sh): for each blueprint, the rules of its plan (the
PrometheusRule objects, and the rules Plinth hands a chart in its values) pass `promtool check rules`, and
`promtool test rules` runs the hand-written cases of tests/alert_rules.yaml against each of them: series that
make the alert fire (with exactly the labels and annotations it fires with) and series that leave it silent.
A rule without cases, or cases for an alert no plan writes, fails here."""

from __future__ import annotations

import copy
import functools
import subprocess
from pathlib import Path
from string import Template

import pytest
from ruamel.yaml import YAML

from support import BLUEPRINTS
from plinth.engine.offline import plan
from plinth.spec.load import load_spec
from plinth.spec.models import PlatformSpec

pytestmark = pytest.mark.toolchain  # promtool: runs after the other tests (tests/conftest.py)

CASES = YAML(typ="safe").load((Path(__file__).parent / "alert_rules.yaml").read_text())
PROMTOOL_MISSING = ("no promtool: run tests/e2e/toolchain/build.sh, which builds it from the "
                    "github.com/prometheus/prometheus module, or set PLINTH_PROMTOOL to a promtool binary")
TIMEOUT_SECONDS = 120
SPECS = [p for p in BLUEPRINTS if p.suffix == ".yaml"]


def promtool() -> str:
    """$PLINTH_PROMTOOL, else the toolchain's promtool; absent, the test skips."""
    from e2e.binaries import toolchain_tool  # asks the toolchain's build script: only where needed

    found = toolchain_tool("promtool")
    if found is None:
        pytest.skip(PROMTOOL_MISSING)
    return found


def _rule_lists(values, path: str = ""):
    """(path, rules) of every list of alerting rules (mappings with `alert` and `expr`) inside chart values."""
    if isinstance(values, list) and values and all(isinstance(v, dict) and {"alert", "expr"} <= v.keys()
                                                    for v in values):
        yield path, values
    elif isinstance(values, dict):
        for key, value in values.items():
            yield from _rule_lists(value, f"{path}.{key}")
    elif isinstance(values, list):
        for index, value in enumerate(values):
            yield from _rule_lists(value, f"{path}[{index}]")


@functools.cache
def planned(blueprint: Path) -> tuple[PlatformSpec, dict[str, list[dict]]]:
    """The blueprint's spec, and its planned rule groups by source: `<namespace>/<name>` of a PrometheusRule,
    `<release> values<path>` of rules in a Helm release's values."""
    spec = load_spec(blueprint)
    sources: dict[str, list[dict]] = {}
    for resource in plan(spec, blueprint.name).resources:
        inputs = resource.inputs
        if inputs.get("kind") == "PrometheusRule":
            meta = inputs["metadata"]
            sources[f"{meta['namespace']}/{meta['name']}"] = inputs["spec"]["groups"]
        elif isinstance(inputs.get("values"), dict):
            for path, rules in _rule_lists(inputs["values"]):
                sources[f"{resource.name} values{path}"] = [{"name": resource.name, "rules": rules}]
    return spec, sources


def planned_alerts(blueprint: Path) -> list[str]:
    return [rule["alert"] for groups in planned(blueprint)[1].values() for group in groups
            for rule in group["rules"] if "alert" in rule]


def facts(spec: PlatformSpec, rule: dict) -> dict[str, str]:
    """What the cases' ${...} stand for, for this rule: from the spec's model its labels name (if any)."""
    labels = rule.get("labels", {})
    if "model" not in labels:
        return {}
    model = next(m for m in spec.serving.models if (m.team, m.name) == (labels["team"], labels["model"]))
    return {"team": model.team, "model": model.name, "runtime": model.runtime,
            "deployment": f"{model.name}-stable", "error_rate_percent": f"{model.slo.error_rate_percent:g}",
            "latency_margin_percent": f"{model.slo.canary_latency_margin_percent:g}",
            "latency_ms": str(model.slo.latency_ms), "stable_version": model.stable.version,
            "stable_tag": model.stable.tag,
            "canary_version": model.canary.version if model.canary else "",
            "drift_threshold": f"{spec.monitoring.drift.threshold:g}"}


def fill(value, found: dict[str, str]):
    """`value` (a case, or part of it) with every ${...} replaced; an unknown placeholder is an error."""
    if isinstance(value, str):
        return Template(value).substitute(found)
    if isinstance(value, dict):
        return {key: fill(item, found) for key, item in value.items()}
    if isinstance(value, list):
        return [fill(item, found) for item in value]
    return value


def promtool_tests(spec: PlatformSpec, source: str, groups: list[dict],
                   outcomes: tuple[str, ...] = ("fires", "silent")) -> list[dict]:
    """promtool's test groups for every alert of `source`: one per case (of the `outcomes` given)."""
    tests = []
    for group in groups:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            found = facts(spec, rule)
            for outcome in outcomes:
                for case in CASES.get(rule["alert"], {}).get(outcome, []):
                    case = fill(case, found)
                    series = case.get("series", []) + case.get("series_by_runtime", {}).get(found.get("runtime"), [])
                    expected = [{"exp_labels": case["exp_labels"], "exp_annotations": case["exp_annotations"]}
                                ] if outcome == "fires" else []
                    tests.append({
                        "name": f"{source}: {rule['alert']} {outcome}: {case['name']}",
                        "interval": "1m",
                        "input_series": series,
                        "alert_rule_test": [{"eval_time": case["eval_time"], "alertname": rule["alert"],
                                             "exp_alerts": expected}],
                    })
    return tests


def write_rule_tests(spec: PlatformSpec, sources: dict[str, list[dict]],
                     directory: Path) -> tuple[list[Path], list[Path]]:
    """One rule file per source and beside it its promtool test file; returns (rule files, test files)."""
    rule_files, test_files = [], []
    yaml = YAML()
    for index, (source, groups) in enumerate(sorted(sources.items())):
        rules = directory / f"rules-{index}.yaml"
        with rules.open("w") as out:
            yaml.dump({"groups": groups}, out)
        tests = directory / f"rules-{index}.test.yaml"
        with tests.open("w") as out:
            yaml.dump({"rule_files": [rules.name], "evaluation_interval": "1m",
                       "tests": promtool_tests(spec, source, groups)}, out)
        rule_files.append(rules)
        test_files.append(tests)
    return rule_files, test_files


def run(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=TIMEOUT_SECONDS)


# --- the cases and the plans agree ---


def test_every_planned_alert_has_cases_that_fire_and_cases_that_do_not():
    written = {alert for blueprint in SPECS for alert in planned_alerts(blueprint)}
    assert written, "no blueprint plans an alerting rule: this module would test nothing"
    missing = sorted(written - CASES.keys())
    assert not missing, f"alerts without test cases in tests/alert_rules.yaml: {missing}"
    for alert, cases in CASES.items():
        assert cases.get("fires") and cases.get("silent"), f"{alert}: needs `fires` and `silent` cases"


def test_every_case_names_an_alert_a_plan_writes():
    written = {alert for blueprint in SPECS for alert in planned_alerts(blueprint)}
    stale = sorted(CASES.keys() - written)
    assert not stale, f"tests/alert_rules.yaml has cases for alerts no blueprint plans: {stale}"


def test_a_case_with_an_unknown_placeholder_is_an_error():
    with pytest.raises(KeyError, match="modle"):
        fill({"a": ["${modle}"]}, {"model": "m"})


# --- promtool ---


@pytest.mark.parametrize("blueprint", SPECS, ids=lambda p: p.name)
def test_planned_rules_pass_promtool_check_and_their_cases(blueprint, tmp_path):
    tool = promtool()
    spec, sources = planned(blueprint)
    if not sources:
        pytest.skip(f"{blueprint.name} plans no alerting rules")
    rule_files, test_files = write_rule_tests(spec, sources, tmp_path)
    checked = run(tool, "check", "rules", *rule_files)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = run(tool, "test", "rules", *test_files)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    cases = sum(len(promtool_tests(spec, s, g)) for s, g in sources.items())
    assert tested.stdout.count("SUCCESS") == len(test_files) and cases >= 2 * len(planned_alerts(blueprint))


@pytest.mark.parametrize("blueprint", SPECS, ids=lambda p: p.name)
def test_every_silent_case_fails_a_rule_that_always_fires(blueprint, tmp_path):
    """Each silent case, run alone against its rule with the expression `vector(1)` (the `for` kept), fails: the
    case looks after the rule would have fired, so its silence comes from the series, not from its timing."""
    tool = promtool()
    spec, sources = planned(blueprint)
    if not sources:
        pytest.skip(f"{blueprint.name} plans no alerting rules")
    files = []
    for source, groups in sorted(sources.items()):
        for group in groups:
            for rule in (r for r in group["rules"] if "alert" in r):
                always = {**rule, "expr": "vector(1)"}
                for test in promtool_tests(spec, source, [{"name": group["name"], "rules": [rule]}], ("silent",)):
                    name = f"case-{len(files)}"
                    YAML().dump({"groups": [{"name": group["name"], "rules": [always]}]},
                                tmp_path / f"{name}.yaml")
                    YAML().dump({"rule_files": [f"{name}.yaml"], "evaluation_interval": "1m", "tests": [test]},
                                tmp_path / f"{name}.test.yaml")
                    files.append(tmp_path / f"{name}.test.yaml")
    tested = run(tool, "test", "rules", *files)
    output = tested.stdout + tested.stderr
    assert tested.returncode == 1 and "SUCCESS" not in output and output.count("FAILED") == len(files), output


def test_a_broken_rule_fails_its_cases(tmp_path):
    """The harness can fail: Vault's sealed alert on the wrong value, or with its label dropped, fails."""
    tool = promtool()
    blueprint = next(p for p in SPECS if "VaultSealed" in planned_alerts(p))
    spec, sources = planned(blueprint)
    for change in ({"expr": "vault_core_unsealed == 1"}, {"labels": {"severity": "warning"}}):
        broken = copy.deepcopy(sources)
        for groups in broken.values():
            for group in groups:
                for rule in group["rules"]:
                    if rule.get("alert") == "VaultSealed":
                        rule.update(change)
        _, test_files = write_rule_tests(spec, broken, tmp_path)
        tested = run(tool, "test", "rules", *test_files)
        assert tested.returncode == 1 and "VaultSealed" in tested.stdout + tested.stderr, change
