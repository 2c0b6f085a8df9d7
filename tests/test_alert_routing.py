"""Alertmanager's routing of the configuration Plinth plans (modules/monitoring: kube-prometheus-stack's
`alertmanager.config`), run by the real Alertmanager and amtool (built from the Alertmanager Go module by
tests/e2e/toolchain/build.sh). The receivers' URLs, which Alertmanager reads from the mounted stack secret, point
at a local capture server here: an alert is delivered to exactly the receivers the spec names for it."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from support import ROOT, free_port, stop_process
from plinth.engine.offline import plan
from plinth.modules.monitoring import RECEIVERS_SECRET
from plinth.spec.load import load_spec

pytestmark = pytest.mark.toolchain  # Alertmanager and amtool: runs after the other tests (tests/conftest.py)

MISSING = ("no {tool}: run tests/e2e/toolchain/build.sh, which builds it from the github.com/prometheus/alertmanager "
           "module, or set PLINTH_{upper} to an {tool} binary")
SECRETS_MOUNT = "/etc/alertmanager/secrets/"
"""Where the Prometheus operator mounts Alertmanager's `secrets` (the config's *_file fields point there)."""
START_SECONDS = 30
DELIVERY_SECONDS = 60
GROUP_WAIT = "1s"
"""The planned routes keep Alertmanager's default group_wait (30 s), how long the first notification of a group
waits; the local copy waits 1 s: when a notification goes out is not what these tests check, where it goes is."""
EKS_GPU = ROOT / "blueprints" / "eks-gpu.yaml"
"""Receivers oncall (critical) and retrain (the drift receiver; no severity); team vision's model detector."""
REGULATED = ROOT / "blueprints" / "onprem-airgap-regulated.yaml"
"""Receivers oncall (webhook, critical) and ml-platform-slack (slack, critical and warning)."""


def tool(name: str) -> str:
    from e2e.binaries import toolchain_tool  # asks the toolchain's build script: only where needed

    found = toolchain_tool(name)
    if found is None:
        pytest.skip(MISSING.format(tool=name, upper=name.upper()))
    return found


def planned_config(blueprint: Path) -> dict:
    """The Alertmanager configuration of the blueprint's plan."""
    result = plan(load_spec(blueprint), blueprint.name)
    release = next(r for r in result.resources if r.name == "monitoring" and isinstance(r.inputs.get("values"), dict))
    return release.inputs["values"]["alertmanager"]["config"]


def local_config(config: dict, directory: Path, url: str) -> Path:
    """`config` with its secret files under `directory`, each receiver's file holding `url`/<receiver>, and the
    root route's group_wait at GROUP_WAIT (its routes inherit it)."""
    assert "group_wait" not in json.dumps(config["route"])  # the default, shortened here
    config = {**config, "route": {**config["route"], "group_wait": GROUP_WAIT}}
    text = json.dumps(config).replace(SECRETS_MOUNT, f"{directory}/secrets/")
    for receiver in config["receivers"]:
        for entries in (v for k, v in receiver.items() if k.endswith("_configs")):
            if all("url" in e for e in entries):
                continue  # an in-cluster URL the plan names itself (the retraining webhook): no secret
            assert all(f"{SECRETS_MOUNT}{RECEIVERS_SECRET}/{receiver['name']}" in e.values() for e in entries)
            secret = directory / "secrets" / RECEIVERS_SECRET / receiver["name"]
            secret.parent.mkdir(parents=True, exist_ok=True)
            secret.write_text(f"{url}/{receiver['name']}")
    path = directory / "alertmanager.yaml"
    YAML().dump(json.loads(text), path)
    return path


def routes_to(config: Path, labels: dict[str, str]) -> list[str]:
    """The receivers amtool's routing test picks for `labels`."""
    result = subprocess.run([tool("amtool"), "config", "routes", "test", f"--config.file={config}",
                             *(f"{k}={v}" for k, v in labels.items())], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    return sorted(result.stdout.strip().split(","))


class Capture:
    """A local HTTP server recording each POST: (path without its slash, JSON body)."""

    def __init__(self):
        self.received: list[tuple[str, dict]] = []
        self.requests: list[tuple[str, dict[str, list[str]], dict]] = []
        """(path, headers as Go's http.Header holds them: canonical name -> values, JSON body) of each POST."""
        received, requests = self.received, self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                found: dict[str, list[str]] = {}
                for name, value in self.headers.items():
                    found.setdefault("-".join(part.capitalize() for part in name.split("-")), []).append(value)
                requests.append((self.path.lstrip("/"), found, json.loads(body)))
                received.append((self.path.lstrip("/"), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def alerts(self) -> dict[str, set[str]]:
        """Receiver -> the alert names it was sent: a webhook's payload lists the alerts; Slack's message names
        the group in its title (the default template: `[FIRING:<n>] <alertname> <namespace> ...`)."""
        out: dict[str, set[str]] = {}
        for receiver, body in self.received:
            names = ([alert["labels"]["alertname"] for alert in body["alerts"]] if "alerts" in body else
                     [re.match(r"\[FIRING:\d+\] (\S+)", item["title"]).group(1) for item in body["attachments"]])
            out.setdefault(receiver, set()).update(names)
        return out


@pytest.fixture
def capture():
    server = Capture()
    yield server
    server.server.shutdown()


@pytest.fixture
def alertmanager(tmp_path):
    """start(config) -> the API URL of a real Alertmanager on a free port; stopped when the test ends."""
    processes = []
    binary = tool("alertmanager")

    def start(config: Path) -> str:
        port = free_port()
        with (tmp_path / "alertmanager.log").open("w") as log:  # the child keeps its own descriptor
            process = subprocess.Popen([binary, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
                                        f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                                       stdout=log, stderr=subprocess.STDOUT)
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "alertmanager.log").read_text()[-4000:]
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return url
            except OSError:
                time.sleep(0.2)
        log_tail = (tmp_path / "alertmanager.log").read_text()[-4000:]
        pytest.fail(f"Alertmanager not ready in {START_SECONDS}s: {log_tail}")

    yield start
    for process in processes:
        stop_process(process)


def post_alerts(url: str, alerts: list[dict[str, str]]) -> None:
    body = json.dumps([{"labels": labels, "annotations": {"summary": labels["alertname"]}} for labels in alerts])
    request = urllib.request.Request(f"{url}/api/v2/alerts", body.encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def wait_for(capture: Capture, expected: dict[str, set[str]]) -> dict[str, set[str]]:
    """What the receivers got, once `expected` arrived (or the wait ran out), plus a short grace for extras."""
    deadline = time.monotonic() + DELIVERY_SECONDS
    while time.monotonic() < deadline and not all(capture.alerts().get(r, set()) >= a for r, a in expected.items()):
        time.sleep(0.5)
    time.sleep(3)
    return capture.alerts()


VISION = {"namespace": "vision", "team": "vision", "model": "detector"}


def test_amtool_routes_each_severity_to_the_receivers_the_spec_names(tmp_path):
    tool("amtool")  # skips first if absent
    config = local_config(planned_config(EKS_GPU), tmp_path, "http://127.0.0.1:9")
    assert routes_to(config, {"alertname": "ModelErrorRateHigh", "severity": "critical", **VISION}) == ["oncall"]
    assert routes_to(config, {"alertname": "ModelDrift", "severity": "warning", "alert_kind": "drift",
                              **VISION}) == ["retrain"]
    assert routes_to(config, {"alertname": "ModelLatencyHigh", "severity": "warning", **VISION}) == ["null"]
    # retrain names no severities: an alert without one is not sent there either
    assert routes_to(config, {"alertname": "TeamJobFailed", **VISION}) == ["null"]
    regulated = local_config(planned_config(REGULATED), tmp_path / "regulated", "http://127.0.0.1:9")
    team = {"namespace": "fraud", "team": "fraud", "model": "fraud-scorer"}
    assert routes_to(regulated, {"alertname": "ModelUnavailable", "severity": "critical", **team}) == [
        "ml-platform-slack", "oncall"]
    assert routes_to(regulated, {"alertname": "ModelLatencyHigh", "severity": "warning", **team}) == [
        "ml-platform-slack"]


def test_alertmanager_delivers_a_teams_alerts_to_exactly_their_receivers(tmp_path, capture, alertmanager):
    url = alertmanager(local_config(planned_config(EKS_GPU), tmp_path, capture.url))
    post_alerts(url, [{"alertname": "ModelErrorRateHigh", "severity": "critical", **VISION},
                      {"alertname": "ModelDrift", "severity": "warning", "alert_kind": "drift", **VISION},
                      {"alertname": "ModelLatencyHigh", "severity": "warning", **VISION},
                      {"alertname": "TeamJobFailed", **VISION}])
    expected = {"oncall": {"ModelErrorRateHigh"}, "retrain": {"ModelDrift"}}
    assert wait_for(capture, expected) == expected
    sent = {receiver: body for receiver, body in capture.received}
    assert sent["oncall"]["alerts"][0]["labels"] == {"alertname": "ModelErrorRateHigh", "severity": "critical",
                                                     **VISION}
    assert sent["retrain"]["groupLabels"] == {"alertname": "ModelDrift", "namespace": "vision", "model": "detector"}


def test_alertmanager_sends_critical_alerts_to_the_pager_and_slack_and_warnings_to_slack(tmp_path, capture,
                                                                                       alertmanager):
    url = alertmanager(local_config(planned_config(REGULATED), tmp_path, capture.url))
    team = {"namespace": "fraud", "team": "fraud", "model": "fraud-scorer"}
    post_alerts(url, [{"alertname": "ModelUnavailable", "severity": "critical", **team},
                      {"alertname": "ModelLatencyHigh", "severity": "warning", **team}])
    expected = {"oncall": {"ModelUnavailable"}, "ml-platform-slack": {"ModelUnavailable", "ModelLatencyHigh"}}
    assert wait_for(capture, expected) == expected
    assert {body["channel"] for receiver, body in capture.received if receiver == "ml-platform-slack"} == {
        "#ml-platform-alerts"}
