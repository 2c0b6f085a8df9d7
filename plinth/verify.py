"""`plinth verify`: every served model's every track, probed through the platform Gateway.

Each request carries `x-plinth-track: <track>`, which the model's HTTPRoute sends to that track's Service
alone (modules/serving/routing.py), and `Host: <serving.hostname>`, the name the route is attached for.
Per track (stable, canary, shadow):

- health: Triton `GET /v2/health/ready`, BentoML `GET /readyz`: HTTP 200. A track that fails it stops there.
- metadata: Triton: the repository's models from `GET /v2/models/stats` (under the routed `/v2/models`; the
  repository index, `POST /v2/repository/index`, is not routed), then `GET /v2/models/<name>` of each. Where
  statistics are not served (a 4xx, e.g. `--http-restricted-api statistics`), the model named like the spec's
  model. BentoML: its OpenAPI document `GET /docs.json`: the first service API (`x-bentoml-name`) that takes
  JSON, and its request schema.
- inference: ONE request with an input built from that metadata. Triton (the KServe v2 HTTP protocol with its
  binary tensor extension, `POST /v2/models/<name>/infer`): the model named like the spec's model, else the
  first by name; every input zeros of its datatype and shape, `-1` dimensions as 1. BentoML: a POST of a JSON
  body built from the request schema (defaults and examples where given, else zero values; required properties only).

The requests (plinth/modelclient.py): every request has a deadline, --timeout seconds for all of it
(connect, send, the whole answer), so a server that drips its answer cannot hold a probe longer; an answer
is read up to MAX_BODY bytes, a request schema is expanded up to MAX_EXAMPLE_PARTS parts (and
MAX_EXAMPLE_ITEMS items per array), and what a server says is stripped of control characters and terminal
escapes before it is shown. Exit codes (the CLI): 0 every track
passed, 1 a track failed (an unreachable URL fails every track), 2 bad input (unknown model, bad URL, invalid
spec).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from plinth.modelclient import (
    Answer,
    Gateway,
    Unreachable,
    bentoml_api,
    clean,
    count_apis,
    error_text,
    example,
    json_object,
    shorten,
    triton_request,
)
from plinth.spec.errors import SpecError, SpecInvalid

DEFAULT_TIMEOUT = 10.0
"""Seconds per request (to connect, and for each read)."""
MAX_TRITON_MODELS = 100
"""Models whose metadata is read from one Triton server (the statistics list them all)."""


@dataclass
class Check:
    """One probe of a track: health, metadata or inference."""

    check: str
    passed: bool
    ms: float
    detail: str = ""
    status: int | None = None
    """The HTTP status, when an answer came."""


@dataclass
class TrackResult:
    team: str
    model: str
    runtime: str
    track: str
    checks: list[Check] = field(default_factory=list)
    target: str = ""
    """What the inference request went to: the Triton model, or BentoML's `POST /<api>`."""

    @property
    def passed(self) -> bool:
        return len(self.checks) == 3 and all(c.passed for c in self.checks)

    @property
    def latency_ms(self) -> float | None:
        """The inference request's round trip through the Gateway (None when it was not made)."""
        return next((c.ms for c in self.checks if c.check == "inference"), None)

    @property
    def failure(self) -> str:
        failed = next((c for c in self.checks if not c.passed), None)
        return f"{failed.check}: {failed.detail}" if failed else ""

    def to_dict(self) -> dict:
        return {"team": self.team, "model": self.model, "runtime": self.runtime, "track": self.track,
                "passed": self.passed, "latency_ms": self.latency_ms, "target": self.target,
                "checks": [{"check": c.check, "passed": c.passed, "status": c.status, "ms": c.ms,
                            "detail": c.detail} for c in self.checks]}


@dataclass
class Report:
    url: str
    host: str
    timeout: float
    tracks: list[TrackResult]

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.tracks)

    @property
    def failed(self) -> list[TrackResult]:
        return [t for t in self.tracks if not t.passed]

    def to_json(self) -> str:
        return json.dumps({"url": self.url, "host": self.host, "timeout": self.timeout, "passed": self.passed,
                           "tracks": [t.to_dict() for t in self.tracks]}, indent=2) + "\n"


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


# --- where the requests go ------------------------------------------------------------------------------


def gateway(spec, url: str | None, timeout: float) -> Gateway:
    """Where to probe: --url, else https://<serving.hostname>. Bad input raises SpecInvalid (exit 2)."""
    hostname = spec.serving.hostname
    return Gateway.parse(url if url is not None else f"https://{hostname}", timeout, "http://127.0.0.1:8080",
                         hostname=hostname)


# --- what to probe --------------------------------------------------------------------------------------


def select(spec, names: list[str] | None) -> list:
    """The served models to probe: all, or those named (`name` or `team/name`). Bad input raises SpecInvalid."""
    from plinth.modules.serving import Serving

    models = list(spec.serving.models)
    if not models:
        raise SpecInvalid([SpecError(None, "serving.models", "no models are served: nothing to verify")])
    if not Serving.routed(Serving.block(spec)):
        raise SpecInvalid([SpecError(None, "serving", "the models are not routed through the platform Gateway "
                                     "(network.cilium with gatewayApi, and serving.hostname): nothing to verify "
                                     "through it")])
    if not names:
        return models
    known = {m.name: m for m in models} | {f"{m.team}/{m.name}": m for m in models}
    unknown = [n for n in names if n not in known]
    if unknown:
        served = ", ".join(f"{m.team}/{m.name}" for m in models)
        raise SpecInvalid([SpecError(None, "--model", f"no served model {n!r} (served: {served})") for n in unknown])
    chosen = {known[n].name for n in names}
    return [m for m in models if m.name in chosen]


def verify(spec, url: str | None = None, models: list[str] | None = None,
           timeout: float = DEFAULT_TIMEOUT) -> Report:
    """Probe every track of the selected models, in spec order (stable, canary, shadow)."""
    from plinth.modules.serving.names import tracks

    errors: list[SpecError] = []
    for check in (lambda: select(spec, models), lambda: gateway(spec, url, timeout)):
        try:
            check()
        except SpecInvalid as exc:  # bad input: every error at once
            errors += exc.errors
    if errors:
        raise SpecInvalid(errors)
    chosen, gw = select(spec, models), gateway(spec, url, timeout)
    results = []
    for model in chosen:
        for track, _ in tracks(model):
            result = TrackResult(model.team, model.name, model.runtime, track)
            (_probe_triton if model.runtime == "triton" else _probe_bentoml)(gw, model, result)
            results.append(result)
    return Report(url=gw.url, host=gw.hostname, timeout=timeout, tracks=results)


# --- the probes -----------------------------------------------------------------------------------------


def _headers(result: TrackResult) -> dict[str, str]:
    from plinth.modules.serving.routing import TRACK_HEADER

    return {TRACK_HEADER: result.track}


def _get(gw: Gateway, result: TrackResult, name: str, path: str) -> tuple[Check, bytes | None]:
    """A GET expecting 200: its check (not yet recorded) and the body when it passed."""
    started = time.perf_counter()
    try:
        status, body = gw.request("GET", path, _headers(result))
    except Unreachable as exc:
        return Check(name, False, _ms(started), f"unreachable: {exc}"), None
    check = Check(name, status == 200, _ms(started), f"HTTP {status}", status)
    if status != 200:
        check.detail = str(Answer(status, body))
        return check, None
    return check, body


def _health(gw: Gateway, model, result: TrackResult) -> bool:
    from plinth.modules.serving.names import route_prefix
    from plinth.modules.serving.runtimes import RUNTIMES

    check, _ = _get(gw, result, "health", route_prefix(model) + RUNTIMES[model.runtime].ready)
    result.checks.append(check)
    return check.passed


def _probe_triton(gw: Gateway, model, result: TrackResult) -> None:
    """Triton over the KServe v2 HTTP protocol, on the same bounded requests as every other probe."""
    from plinth.modules.serving.names import route_prefix

    if not _health(gw, model, result):
        return
    prefix = route_prefix(model)
    started = time.perf_counter()
    try:
        names, note = _triton_models(gw, prefix, model, result)
        metadata = {name: _json(gw, "GET", f"{prefix}/v2/models/{name}", result)
                    for name in names[:MAX_TRITON_MODELS]}
    except (Answer, Unreachable, ValueError, KeyError, TypeError) as exc:
        result.checks.append(Check("metadata", False, _ms(started), _failure(exc), getattr(exc, "status", None)))
        return
    detail = f"{len(names)} model{'s' if len(names) != 1 else ''}: {', '.join(names)}"
    result.checks.append(Check("metadata", True, _ms(started), shorten(f"{detail}{note}"), 200))
    result.target = model.name if model.name in metadata else names[0]
    started = time.perf_counter()
    try:
        header, data = triton_request(metadata[result.target])
        answer = _json(gw, "POST", f"{prefix}/v2/models/{result.target}/infer", result, header + data,
                       {"Content-Type": "application/octet-stream",
                        "Inference-Header-Content-Length": str(len(header))})
        outputs = ", ".join(f"{o['name']} {o['datatype']}{o['shape']}" for o in answer.get("outputs", []))
    except (Answer, Unreachable, ValueError, KeyError, TypeError, AttributeError) as exc:
        result.checks.append(Check("inference", False, _ms(started), f"{result.target}: {_failure(exc)}",
                                   getattr(exc, "status", None)))
        return
    result.checks.append(Check("inference", True, _ms(started), f"{result.target} -> {outputs or 'no outputs'}",
                               200))


def _json(gw: Gateway, method: str, path: str, result: TrackResult, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> dict:
    """One request expecting 200 and a JSON object (the answer bounded like every other)."""
    return json_object(path, *gw.request(method, path, {**_headers(result), **(headers or {})}, body))


def _failure(exc: BaseException) -> str:
    return shorten(str(exc)) if isinstance(exc, (Answer, Unreachable)) else error_text(exc)


def _triton_models(gw: Gateway, prefix: str, model, result: TrackResult) -> tuple[list[str], str]:
    """The repository's loaded models (names, sorted) from the statistics API, or the spec's model name where
    statistics are refused (4xx), with a note saying so."""
    try:
        stats = _json(gw, "GET", f"{prefix}/v2/models/stats", result)
    except Answer as exc:
        if not 400 <= exc.status < 500:
            raise
        return [model.name], f" (statistics not served, HTTP {exc.status}: took the model's own name)"
    names = sorted({s["name"] for s in stats.get("model_stats", [])})
    if not names:
        raise ValueError("the server reports no loaded model (GET /v2/models/stats)")
    return names, ""


def _probe_bentoml(gw: Gateway, model, result: TrackResult) -> None:
    from plinth.modules.serving.names import route_prefix

    if not _health(gw, model, result):
        return
    prefix = route_prefix(model)
    check, body = _get(gw, result, "metadata", prefix + "/docs.json")
    result.checks.append(check)
    if body is None:
        return
    try:
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        path, schema = bentoml_api(document)
        payload = json.dumps(example(schema, document)).encode()
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        check.passed, check.detail = False, shorten(f"/docs.json: {exc}")
        return
    check.detail = f"POST {path} of {count_apis(document)}"
    result.target = f"POST {path}"
    started = time.perf_counter()
    try:
        status, answer = gw.request("POST", prefix + path, {**_headers(result), "Content-Type": "application/json"},
                                    payload)
    except Unreachable as exc:
        result.checks.append(Check("inference", False, _ms(started), f"POST {path}: unreachable: {exc}"))
        return
    ok = 200 <= status < 300
    detail = f"POST {path} -> HTTP {status}" if ok else f"POST {path}: {Answer(status, answer)}"
    result.checks.append(Check("inference", ok, _ms(started), detail, status))


# --- the report -----------------------------------------------------------------------------------------


def table(report: Report):
    """A rich Table: one row per track."""
    from rich.table import Table

    grid = Table(title=f"plinth verify {report.url} (Host {report.host})", title_justify="left")
    for name, justify in (("model", "left"), ("runtime", "left"), ("track", "left"), ("health", "center"),
                          ("metadata", "center"), ("inference", "center"), ("latency", "right"),
                          ("result", "left")):
        grid.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]  # the literals above
    for t in report.tracks:
        marks = {c.check: "ok" if c.passed else "[red]FAIL[/red]" for c in t.checks}
        latency = f"{t.latency_ms:.1f} ms" if t.latency_ms is not None else "-"
        outcome = f"[green]pass[/green] {_markup_escape(clean(t.target))}" if t.passed else \
            f"[red]FAIL[/red] {_markup_escape(clean(t.failure))}"
        grid.add_row(f"{t.team}/{t.model}", t.runtime, t.track, marks.get("health", "-"),
                     marks.get("metadata", "-"), marks.get("inference", "-"), latency, outcome)
    return grid


def _markup_escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def summary(report: Report) -> str:
    n = len(report.tracks)
    if report.passed:
        return f"{n} track{'s' if n != 1 else ''} passed"
    names = ", ".join(f"{t.team}/{t.model} {t.track}" for t in report.failed)
    return f"{len(report.failed)} of {n} tracks failed: {names}"
