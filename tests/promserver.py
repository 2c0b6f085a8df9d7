"""A real Prometheus server for the tests and benchmarks (the toolchain's, built from the
github.com/prometheus/prometheus module by tests/e2e/toolchain/build.sh) whose TSDB holds synthetic series of the
platform's serving metrics, written as OpenMetrics text and turned into blocks by `promtool tsdb
create-blocks-from openmetrics`: no scrape target, no rule, the series answer PromQL like scraped ones."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from support import free_port, stop_process

GATED_BLUEPRINT = """\
apiVersion: plinth.dev/v1alpha1
kind: Platform
metadata:
  name: gated
  environment: dev
  costCenter: cc-1
target:
  type: existing
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
serving:
  hostname: serving.models.internal
  models:
    # Its canary fails one request in ten.
    - name: scorer
      team: fraud
      runtime: triton
      modelRepository: pvc://models/triton
      stable: {version: "3"}
      canary: {version: "4", weight: 10}
    # Its canary answers in 955 ms where stable takes 95.
    - name: ranker
      team: fraud
      runtime: bentoml
      image: registry.corp.internal/ml/ranker
      stable: {version: "1.2.0"}
      canary: {version: "1.3.0", weight: 10}
    # Its canary is as good as stable.
    - name: tagger
      team: fraud
      runtime: triton
      modelRepository: pvc://models/triton
      stable: {version: "7"}
      canary: {version: "8", weight: 10}
    # No traffic at all.
    - name: idle
      team: fraud
      runtime: triton
      modelRepository: pvc://models/triton
      stable: {version: "1"}
      canary: {version: "2", weight: 10}
"""
"""The models `series` describes: scorer's canary fails one request in ten, ranker's answers in 955 ms where
stable takes 95, tagger's is as good as stable, idle has no traffic."""

STEP_SECONDS = 15
HISTORY_SECONDS = 20 * 60
FUTURE_SECONDS = 60 * 60
"""Samples run on this long past `now`: a query answers the same for the hour after (a slow test run never
finds the window empty; Prometheus reads no sample past the query's time)."""


def series(now: int) -> str:
    """OpenMetrics text: samples every 15 s from 20 minutes before `now` to an hour after, per model and track:
    counters growing by the given amount per sample, gauges constant."""
    def labels(model: str, track: str, **extra: str) -> str:
        pairs = {"namespace": "fraud", "plinth_model": model, "plinth_track": track, **extra}
        return ",".join(f'{k}="{v}"' for k, v in pairs.items())

    # (metric, labels, growth per sample (counters) or value (gauges), counter?)
    wanted = [
        ("nv_inference_request_success", labels("scorer", "stable"), 90, True),
        ("nv_inference_request_success", labels("scorer", "canary"), 9, True),
        ("nv_inference_request_failure", labels("scorer", "canary"), 1, True),
        ("nv_inference_request_summary_us", labels("scorer", "stable", quantile="0.95"), 100_000, False),
        ("nv_inference_request_summary_us", labels("scorer", "canary", quantile="0.95"), 110_000, False),
        ("nv_inference_request_success", labels("tagger", "stable"), 90, True),
        ("nv_inference_request_success", labels("tagger", "canary"), 10, True),
        ("nv_inference_request_summary_us", labels("tagger", "stable", quantile="0.95"), 100_000, False),
        ("nv_inference_request_summary_us", labels("tagger", "canary", quantile="0.95"), 105_000, False),
        ("bentoml_service_request_total", labels("ranker", "stable", http_response_code="200"), 6, True),
        ("bentoml_service_request_total", labels("ranker", "canary", http_response_code="200"), 1, True),
        ("bentoml_service_request_duration_seconds_bucket", labels("ranker", "stable", le="0.1"), 6, True),
        ("bentoml_service_request_duration_seconds_bucket", labels("ranker", "stable", le="+Inf"), 6, True),
        ("bentoml_service_request_duration_seconds_bucket", labels("ranker", "canary", le="0.1"), 0, True),
        ("bentoml_service_request_duration_seconds_bucket", labels("ranker", "canary", le="1"), 1, True),
        ("bentoml_service_request_duration_seconds_bucket", labels("ranker", "canary", le="+Inf"), 1, True),
    ]
    out: list[str] = []
    steps, ahead = HISTORY_SECONDS // STEP_SECONDS, FUTURE_SECONDS // STEP_SECONDS
    for metric in dict.fromkeys(name for name, *_ in wanted):  # one family per metric name, in one block
        out.append(f"# TYPE {metric} unknown")
        for name, selector, amount, counter in wanted:
            if name == metric:
                out += [f"{metric}{{{selector}}} {amount * i if counter else amount} "
                        f"{now - (steps - i) * STEP_SECONDS}" for i in range(steps + ahead + 1)]
    return "\n".join([*out, "# EOF", ""])



@contextmanager
def prometheus(promtool: str, server: str, root: Path, text: str):
    """The base URL of a Prometheus on 127.0.0.1 whose TSDB (under `root`) holds the OpenMetrics `text`."""
    (root / "series.om").write_text(text)
    created = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(root / "series.om"),
                              str(root / "data")], capture_output=True, text=True, timeout=120)
    if created.returncode != 0:
        raise RuntimeError(f"promtool tsdb create-blocks-from openmetrics: {created.stdout}{created.stderr}")
    (root / "prometheus.yml").write_text("global: {scrape_interval: 1m}\n")
    port = free_port()
    with (root / "prometheus.log").open("w") as log:
        process = subprocess.Popen([server, f"--config.file={root / 'prometheus.yml'}",
                                    f"--storage.tsdb.path={root / 'data'}",
                                    f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while not _ready(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Prometheus did not become ready: {(root / 'prometheus.log').read_text()}")
                time.sleep(0.2)
            yield url
        finally:
            stop_process(process)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False
