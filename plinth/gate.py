"""The canary gate (`plinth canary set|promote ... --gate`): before a canary gets more traffic or becomes stable,
its error rate and p95 latency and stable's are read from Prometheus and compared with the model's SLO margins;
a canary worse than stable by more than them is refused, and nothing is written.

The gate reads exactly the series, labels and window of the model's ModelCanaryWorse alert (the expressions of
plinth.modules.serving.monitoring), so the gate refuses what the alert fires on (the alert also waits 10
minutes). Reads are bounded like every online command's (plinth.modelclient.Gateway): one deadline per
request, answers up to MAX_BODY bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from urllib.parse import quote

from plinth.modelclient import Answer, Gateway, Unreachable, json_object, shorten
from plinth.modules.serving.monitoring import error_ratio, p95_ms
from plinth.spec.errors import SpecError, SpecInvalid
from plinth.spec.models import Model

QUERY = "/api/v1/query"
"""Prometheus's instant query API."""


@dataclass(frozen=True)
class Track:
    """One track's numbers over the window; None: no requests (or no latency) measured."""

    name: str
    version: str
    error_ratio: float | None
    p95_ms: float | None


@dataclass(frozen=True)
class Verdict:
    model: Model
    stable: Track
    canary: Track
    reasons: list[str] = field(default_factory=list)
    """Why the canary is refused; empty: it passes."""

    @property
    def passed(self) -> bool:
        return not self.reasons


def prometheus(url: str, timeout: float) -> Gateway:
    """The bounded HTTP client for Prometheus at `url`. Bad input raises SpecInvalid (exit 2)."""
    return Gateway.parse(url, timeout, "http://127.0.0.1:9090", options=("--prometheus", "--gate-timeout"))


def query(server: Gateway, expr: str) -> float | None:
    """The value of an instant query answering one series with no labels (or none: no data); NaN (0/0: no
    requests in the window) is no data too. Unreachable, Answer or ValueError when Prometheus cannot be read."""
    status, body = server.request("GET", f"{QUERY}?query={quote(expr, safe='')}", {})
    document = json_object(QUERY, status, body)
    data = document.get("data")
    if document.get("status") != "success" or not isinstance(data, dict) or data.get("resultType") != "vector" \
            or not isinstance(data.get("result"), list):
        raise ValueError(f"{QUERY}: not an instant vector answer: {shorten(body.decode('utf-8', 'replace'))}")
    result = data["result"]
    if not result:
        return None
    if len(result) > 1:
        raise ValueError(f"{QUERY}: {len(result)} series answered, expected one")
    try:
        value = float(result[0]["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        raise ValueError(f"{QUERY}: a sample without a number: {shorten(str(result[0]))}") from None
    return None if math.isnan(value) else value


def measure(server: Gateway, model: Model) -> tuple[Track, Track]:
    """(stable, canary) as Prometheus has them now: the alert's expressions, one track at a time."""
    assert model.canary is not None
    tracks = []
    for name, release in (("stable", model.stable), ("canary", model.canary)):
        tracks.append(Track(name, release.version, query(server, error_ratio(model, name)),
                            query(server, p95_ms(model, name))))
    return tracks[0], tracks[1]


def judge(model: Model, stable: Track, canary: Track) -> Verdict:
    """The ModelCanaryWorse comparison on the measured numbers; no data on a track is a refusal too (nothing to
    judge the canary by)."""
    slo = model.slo
    reasons = [f"{track.name} served no requests in the last {slo.window}: nothing to judge the canary by"
               for track in (stable, canary) if track.error_ratio is None]
    if stable.error_ratio is not None and canary.error_ratio is not None \
            and canary.error_ratio - stable.error_ratio > slo.error_rate_percent / 100:
        reasons.append(f"the canary fails {_percent(canary.error_ratio)} of requests, stable "
                       f"{_percent(stable.error_ratio)}: more than slo.errorRatePercent ({slo.error_rate_percent:g}) "
                       "points above stable")
    if not reasons:
        reasons += [f"{track.name} has no p95 latency in the last {slo.window}: nothing to judge the canary by"
                    for track in (stable, canary) if track.p95_ms is None]
    if stable.p95_ms is not None and canary.p95_ms is not None \
            and canary.p95_ms > stable.p95_ms * (1 + slo.canary_latency_margin_percent / 100):
        reasons.append(f"the canary's p95 latency is {_ms(canary.p95_ms)}, stable's {_ms(stable.p95_ms)}: more than "
                       f"slo.canaryLatencyMarginPercent ({slo.canary_latency_margin_percent:g}%) above stable's")
    return Verdict(model, stable, canary, reasons)


def gate(model: Model, url: str, timeout: float) -> Verdict:
    """Measure and judge `model`'s canary; SpecInvalid (exit 2) naming --prometheus and the URL when Prometheus
    cannot be read."""
    server = prometheus(url, timeout)
    try:
        stable, canary = measure(server, model)
    except (Unreachable, Answer, ValueError) as exc:
        raise SpecInvalid([SpecError(None, "--prometheus", f"Prometheus at {url} cannot be read: {exc}")]) from None
    return judge(model, stable, canary)


def _percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.2f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def lines(verdict: Verdict) -> list[str]:
    """The numbers of both tracks, the margins, and the verdict."""
    slo = verdict.model.slo
    rows = [("track", "version", "error rate", "p95 latency")]
    for track in (verdict.stable, verdict.canary):
        rows.append((track.name, track.version, _percent(track.error_ratio), _ms(track.p95_ms)))
    rows.append(("margin", "", f"+{slo.error_rate_percent:g}%", f"+{slo.canary_latency_margin_percent:g}% of stable's"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    table = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    model = f"{verdict.model.team}/{verdict.model.name}"
    if verdict.passed:
        return [f"canary gate, {model}, last {slo.window}:", *table, "gate passed: the canary is within the margins"]
    return [f"canary gate, {model}, last {slo.window}:", *table, *(f"refused: {why}" for why in verdict.reasons)]
