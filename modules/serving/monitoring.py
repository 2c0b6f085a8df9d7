"""The model's monitoring: the ServiceMonitor, the PromQL of its signals, its alerts, and the serving
dashboard."""

from __future__ import annotations

from typing import TYPE_CHECKING

from plinth.context import PlatformContext
from plinth.modules.monitoring.dashboards import Panel, dashboard, grid, row
from plinth.modules.serving import reqlog
from plinth.modules.serving.names import TRACKS, deployment_name, selector, tracks
from plinth.modules.serving.runtimes import RUNTIMES

if TYPE_CHECKING:  # the component's own module imports this one
    from plinth.modules.serving import ServingArgs

DRIFT_METRIC = "plinth_model_drift_score"
"""The gauge (0-1) a model's drift job (serving.models[].drift) or the team's own drift monitor exports per model,
labels namespace=<team> (the scraped target's), model=<model>."""
GPU_SATURATION_PERCENT = 90
"""DCGM GPU utilisation above which ModelGpuSaturated fires (sustained for 15 minutes)."""


def monitor_spec(model, ctx: PlatformContext) -> dict:
    """Scrape every track's Service; the pod's model and track become labels plinth_model and plinth_track
    (Triton's own metrics already carry `model`: the repository's model name)."""
    ports = [RUNTIMES[model.runtime].metrics_port]
    if reqlog.logged(model):  # the request logger's counts (its stable and canary Services have the port)
        ports.append(reqlog.METRICS_PORT_NAME)
    return {
        "selector": {"matchLabels": selector(model, ctx)},
        "namespaceSelector": {"matchNames": [model.team]},
        "endpoints": [{
            "port": port,
            "path": "/metrics",
            "interval": "30s",
            "relabelings": [
                {"sourceLabels": ["__meta_kubernetes_pod_label_plinth_dev_model"], "targetLabel": "plinth_model",
                 "action": "replace"},
                {"sourceLabels": ["__meta_kubernetes_pod_label_plinth_dev_track"], "targetLabel": "plinth_track",
                 "action": "replace"},
            ],
        } for port in ports],
    }


def _selector(model, tracks_re: str, extra: str = "") -> str:
    return f'namespace="{model.team}",plinth_model="{model.name}",plinth_track=~"{tracks_re}"{extra}'


def error_ratio(model, tracks_re: str = "stable|canary") -> str:
    """Failed / all requests over the SLO window (a series that has not appeared yet counts as no failures)."""
    sel, w = _selector(model, tracks_re), model.slo.window
    if model.runtime == "triton":
        bad = f"sum(rate(nv_inference_request_failure{{{sel}}}[{w}]))"
        ok = f"sum(rate(nv_inference_request_success{{{sel}}}[{w}]))"
        return f"(({bad} or vector(0)) / ({ok} + ({bad} or vector(0))))"
    failed = _selector(model, tracks_re, ',http_response_code=~"5.."')
    bad = f"sum(rate(bentoml_service_request_total{{{failed}}}[{w}]))"
    every = f"sum(rate(bentoml_service_request_total{{{sel}}}[{w}]))"
    return f"(({bad} or vector(0)) / {every})"


def request_rate(model, by: str = "plinth_track") -> str:
    sel, w = _selector(model, "stable|canary|shadow"), model.slo.window
    if model.runtime == "triton":
        return (f"sum by ({by}) (rate(nv_inference_request_success{{{sel}}}[{w}])) + "
                f"sum by ({by}) (rate(nv_inference_request_failure{{{sel}}}[{w}]))")
    return f"sum by ({by}) (rate(bentoml_service_request_total{{{sel}}}[{w}]))"


def p95_ms(model, tracks_re: str = "stable|canary", by: str = "") -> str:
    """95th percentile latency in milliseconds: Triton's summary quantile (the worst pod: quantiles do not
    add up across pods), BentoML's histogram over the SLO window."""
    sel, w = _selector(model, tracks_re), model.slo.window
    group = f" by ({by})" if by else ""
    if model.runtime == "triton":
        return f'(max{group} (nv_inference_request_summary_us{{{sel},quantile="0.95"}}) / 1000)'
    les = f"le, {by}" if by else "le"
    return (f"(histogram_quantile(0.95, sum by ({les}) "
            f"(rate(bentoml_service_request_duration_seconds_bucket{{{sel}}}[{w}]))) * 1000)")


def canary_worse(model) -> str:
    """The canary fails more often than stable by more than the error-rate SLO (percentage points), or its p95
    latency is above stable's by more than the canary latency margin: what ModelCanaryWorse fires on and what
    the canary gate (plinth.gate) refuses, from the same series."""
    slo = model.slo
    errors = f"{error_ratio(model, 'canary')} - {error_ratio(model, 'stable')} > {_fraction(slo.error_rate_percent)}"
    latency = f"{p95_ms(model, 'canary')} > {p95_ms(model, 'stable')} * {1 + slo.canary_latency_margin_percent / 100:g}"
    return f"({errors}) or ({latency})"


def gpu_utilisation(model) -> str:
    """DCGM's per-GPU utilisation of the model's pods. The exporter names the pod using each GPU; scraped
    through its Service those labels arrive as exported_namespace/exported_pod (honorLabels off) or as
    namespace/pod (honorLabels on): either matches."""
    pods = f"{model.name}-({'|'.join(TRACKS)})-.+"
    return (f'avg(DCGM_FI_DEV_GPU_UTIL{{exported_namespace="{model.team}",exported_pod=~"{pods}"}} '
            f'or DCGM_FI_DEV_GPU_UTIL{{namespace="{model.team}",pod=~"{pods}"}})')


def _fraction(percent: float) -> str:
    return f"{percent / 100:g}"


def alert_rules(model, args: ServingArgs) -> list[dict]:
    """The model's alerts; every rule carries the label model=<name> (the served-model-reliability policy)."""
    slo = model.slo

    def rule(alert: str, expr: str, for_: str, severity: str, summary: str, **labels: str) -> dict:
        return {"alert": alert, "expr": expr, "for": for_,
                "labels": {"severity": severity, "model": model.name, "team": model.team, **labels},
                "annotations": {"summary": f"{model.team}/{model.name}: {summary}",
                                "description": f"Model {model.name} of team {model.team} ({model.runtime}): "
                                               f"{summary}. Value: {{{{ $value }}}}."}}

    rules = [
        rule("ModelErrorRateHigh", f"{error_ratio(model)} > {_fraction(slo.error_rate_percent)}", "10m",
             "critical", f"more than {slo.error_rate_percent:g}% of requests fail"),
        rule("ModelLatencyHigh", f"{p95_ms(model)} > {slo.latency_ms}", "10m", "warning",
             f"p95 latency above {slo.latency_ms} ms"),
    ]
    if model.stable.replicas or model.autoscaling.enabled:
        rules.append(rule(
            "ModelUnavailable",
            f'kube_deployment_status_replicas_available{{namespace="{model.team}",'
            f'deployment="{deployment_name(model, "stable")}"}} < 1', "5m", "critical",
            "no stable replica is available"))
    if model.canary:
        rules.append(rule("ModelCanaryWorse", canary_worse(model), "10m", "warning",
                          f"the canary ({model.canary.version}) is worse than stable ({model.stable.version}): it "
                          f"fails more than {slo.error_rate_percent:g} points more often, or its p95 latency is more "
                          f"than {slo.canary_latency_margin_percent:g}% above stable's; lower its weight or remove it"))
    if model.gpu and args.gpu_metrics:
        rules.append(rule("ModelGpuSaturated", f"{gpu_utilisation(model)} > {GPU_SATURATION_PERCENT}", "15m",
                          "warning", f"its GPUs are more than {GPU_SATURATION_PERCENT}% busy"))
    if reqlog.logged(model):
        tracks = "|".join(reqlog.LOGGED_TRACKS)
        dropped = _selector(model, tracks, ',outcome=~"dropped_full|dropped_store"')
        sampled = _selector(model, tracks, ',outcome="sampled"')
        rules.append(rule(
            "ModelRequestLogDropping", f"sum(rate({reqlog.RECORDS_METRIC}{{{dropped}}}[15m])) / "
            f"sum(rate({reqlog.RECORDS_METRIC}{{{sampled}}}[15m])) > {_fraction(reqlog.DROPPED_PERCENT)}", "15m",
            "warning",
            f"its request log drops more than {reqlog.DROPPED_PERCENT}% of the sampled records (its buffer is full "
            "or the object store refuses them): the drift window misses them"))
    if args.drift.enabled:
        # A model's drift job may set its own threshold.
        threshold = model.drift.threshold if model.drift and model.drift.threshold is not None \
            else args.drift.threshold
        rules.append(rule(
            "ModelDrift", f'max({DRIFT_METRIC}{{namespace="{model.team}",model="{model.name}"}}) > '
            f"{threshold:g}", "30m", "warning",
            f"input drift score above {threshold:g}; retraining may be due", alert_kind="drift",
            version=model.stable.tag))
    return rules


def serving_dashboard(platform: str, models) -> str:
    """Per model, one row: requests, error ratio and p95 latency, each by track (canary against stable,
    and the shadow beside them)."""
    panels: list[dict] = []
    for index, model in enumerate(sorted(models, key=lambda m: (m.team, m.name))):
        top = index * 9
        errors = [(error_ratio(model, track), track) for track, _ in tracks(model)]
        panels.append(row(100 * index + 1, f"{model.team}/{model.name} ({model.runtime})", top))
        panels += grid([
            Panel("Requests / s by track", [(request_rate(model), "{{plinth_track}}")], unit="reqps"),
            Panel("Error ratio by track", errors, unit="percentunit"),
            Panel("p95 latency by track", [(p95_ms(model, "stable|canary|shadow", "plinth_track"), "{{plinth_track}}")],
                  unit="ms"),
        ], first_id=100 * index + 2, top=top + 1, width=8)
    return dashboard("plinth-serving", f"Plinth / {platform} / Model serving", panels, ["plinth", "serving"])
