"""The Sensors' alert (RetrainingTriggerFailed), as planned for a retrained model with monitoring, run by Prometheus's
own rule tester (`promtool`, from the toolchain): `check rules` accepts it, and `test rules` runs series that make
it fire (a failure counted after others, and a Sensor's first failure: its counter appears at 1) and series that
leave it silent (no failure, an old failure, a Sensor restarting at zero). No reference blueprint plans Argo Events,
so tests/test_alert_rules.py cannot take this rule from a blueprint: its cases live here."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML
from test_alert_rules import promtool, run
from test_events import planned, spec_document

pytestmark = pytest.mark.toolchain

SENSOR = {"namespace": "argo-events", "sensor_name": "retrain-fraud-scorer", "trigger_name": "submit"}
SERIES = ('argo_events_action_failed_total{namespace="argo-events",sensor_name="retrain-fraud-scorer",'
          'trigger_name="submit",pod="%s"}')
FIRES = [
    ("a failure after five quiet minutes", [(SERIES % "a", "0x5 1x10")], "10m"),
    ("a Sensor's first failure: its counter appears at 1", [(SERIES % "a", "_x5 1x10")], "10m"),
    ("failures keep coming", [(SERIES % "a", "0+1x30")], "30m"),
]
SILENT = [
    ("no failure", [(SERIES % "a", "0x30")], "30m"),
    ("a failure more than 15 minutes ago, none since", [(SERIES % "a", "1x40")], "40m"),
    ("the Sensor restarts: its new pod's counter starts at 0", [(SERIES % "a", "2x10"), (SERIES % "b", "_x10 0x20")],
     "30m"),
]


@pytest.fixture(scope="module")
def rules() -> list[dict]:
    found = planned(spec_document())
    [rule] = [r for key, r in found.items() if isinstance(key, tuple) and key[0] == "PrometheusRule"
              and key[1] == "argo-events"]
    assert rule.inputs["metadata"]["name"] == "retraining-alerts"
    return rule.inputs["spec"]["groups"]


def test_no_alert_without_monitoring_or_a_retrained_model():
    from plinth.engine.offline import plan
    from support import platform_spec

    from test_events import model

    for document in (spec_document(monitoring={"enabled": False}, serving={"models": [model("ranker", "search")]}),
                     spec_document(models=(model("ranker", "search"),))):
        assert not [r for r in plan(platform_spec(document), "test").resources
                    if r.inputs.get("kind") == "PrometheusRule" and r.inputs["metadata"]["namespace"] == "argo-events"]


def test_the_sensors_alert_fires_and_stays_silent_as_promtool_runs_it(rules, tmp_path):
    tool = promtool()
    yaml = YAML()
    with (tmp_path / "rules.yaml").open("w") as out:
        yaml.dump({"groups": rules}, out)
    checked = run(tool, "check", "rules", tmp_path / "rules.yaml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    [rule] = [r for group in rules for r in group["rules"]]
    expected = {"exp_labels": {**SENSOR, "severity": "warning"}, "exp_annotations": {
        "summary": "Sensor retrain-fraud-scorer failed to create its retraining workflow",
        "description": "Trigger submit of Sensor argo-events/retrain-fraud-scorer failed: the model is not "
                       "retrained on its drift alert (`kubectl -n argo-events logs -l "
                       "sensor-name=retrain-fraud-scorer`)."}}
    # The rule groups by sensor and trigger: the namespace label is not kept.
    expected["exp_labels"].pop("namespace")
    tests = [{"name": f"{name} ({'fires' if fires else 'silent'})", "interval": "1m",
              "input_series": [{"series": series, "values": values} for series, values in cases],
              "alert_rule_test": [{"eval_time": at, "alertname": rule["alert"],
                                   "exp_alerts": [expected] if fires else []}]}
             for fires, group in ((True, FIRES), (False, SILENT)) for name, cases, at in group]
    with (tmp_path / "rules.test.yaml").open("w") as out:
        yaml.dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}, out)
    tested = run(tool, "test", "rules", tmp_path / "rules.test.yaml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
