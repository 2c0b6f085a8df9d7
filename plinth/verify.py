"""`plinth verify`: every served model's every track, probed through the platform Gateway.

Each request carries `x-plinth-track: <track>`, which the model's HTTPRoute sends to that track's Service
alone (modules/serving, `route_spec`), and `Host: <serving.hostname>`, the name the route is attached for.
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

Every request has a deadline: --timeout seconds for all of it (connect, send, the whole answer), so a server
that drips its answer cannot hold a probe longer; an answer is read up to MAX_BODY bytes, a request schema is
expanded up to MAX_EXAMPLE_PARTS parts (and MAX_EXAMPLE_ITEMS items per array), and what a server says is
stripped of control characters and terminal escapes before it is shown. Exit codes (the CLI): 0 every track
passed, 1 a track failed (an unreachable URL fails every track), 2 bad input (unknown model, bad URL, invalid
spec).
"""

from __future__ import annotations

import http.client
import json
import math
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from plinth.spec.errors import SpecError, SpecInvalid

DEFAULT_TIMEOUT = 10.0
"""Seconds per request (to connect, and for each read)."""
MAX_TIMEOUT = 3600.0
"""The longest --timeout accepted (an hour)."""
DETAIL_CHARS = 300
"""A failure's detail (an error body, a message) is cut to this many characters."""
MAX_BODY = 8 << 20
"""Bytes of one answer read at most (a service's OpenAPI document is a few KiB)."""
MAX_EXAMPLE_PARTS = 10_000
"""Schema parts expanded to build one request body: `$ref`s can fan out exponentially."""
MAX_EXAMPLE_ITEMS = 1_000
"""Items of one array (minItems) and characters of one string (minLength) in a request body."""
MAX_INPUT_ELEMENTS = 1 << 20
"""Elements of one Triton input tensor built from the model's metadata."""
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


_ESCAPE = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|.)?", re.DOTALL)


def clean(text: str) -> str:
    """Text a server sent, safe for a terminal: terminal escape sequences and every other non-printable
    character (controls, bidi overrides) removed, whitespace runs made one space."""
    text = _ESCAPE.sub("", str(text))
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def _cut(text: str) -> str:
    text = clean(text)
    return text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS - 3] + "..."


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) or type(exc).__name__ in ("timeout", "Timeout"):
        return "timed out"
    return _cut(f"{type(exc).__name__}: {exc}")


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


# --- where the requests go ------------------------------------------------------------------------------


class _Answer(Exception):
    """An HTTP answer that is not the one expected (carries its status)."""

    def __init__(self, status: int, body: bytes):
        super().__init__(f"HTTP {status}: {_cut(body.decode('utf-8', 'replace'))}" if body else f"HTTP {status}")
        self.status = status


class _Unreachable(Exception):
    """No answer at all: refused, timed out, name not resolved, TLS failed."""


class _TLSConnection(http.client.HTTPSConnection):
    """HTTPS to the URL's address with SNI and certificate name of the serving host name (like `curl --resolve`),
    so a port-forwarded or otherwise addressed Gateway still presents, and is checked for, the right name."""

    def __init__(self, host: str, port: int, server_hostname: str, **kwargs):
        super().__init__(host, port, **kwargs)
        self._server_hostname = server_hostname

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        # HTTPSConnection keeps its SSLContext in `_context`.
        self.sock = self._context.wrap_socket(  # type: ignore[attr-defined]
            self.sock, server_hostname=self._server_hostname)


@dataclass(frozen=True)
class Gateway:
    """The platform Gateway as reached from here: the URL's scheme, address and base path; the route's host name."""

    url: str
    scheme: str
    address: str
    port: int
    base: str
    """Path prefix of the URL (no trailing slash), before /<team>/<model>."""
    hostname: str
    """serving.hostname: the Host header, and for https the TLS server name."""
    timeout: float

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes | None = None
                ) -> tuple[int, bytes]:
        """(status, body) of one request within the deadline; _Unreachable when no (whole) answer came.

        The socket timeout bounds each wait; a timer shuts the socket when the deadline passes, which
        ends a read of an answer trickling in slower than that."""
        if self.scheme == "https":
            conn: http.client.HTTPConnection = _TLSConnection(self.address, self.port, self.hostname,
                                                              timeout=self.timeout,
                                                              context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(self.address, self.port, timeout=self.timeout)
        expired = threading.Event()
        timer = threading.Timer(self.timeout, _expire, (conn, expired))
        timer.start()
        try:
            conn.request(method, self.base + path, body=body,
                         headers={"Host": self.hostname, "Accept": "application/json", **headers})
            response = conn.getresponse()
            answer = response.read(MAX_BODY + 1)
            if expired.is_set():  # a read cut short by the deadline returns what had come
                raise TimeoutError
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise _Unreachable("timed out" if expired.is_set() else _why(exc)) from None
        finally:
            timer.cancel()
            conn.close()
        if len(answer) > MAX_BODY:
            raise _Unreachable(f"the answer is larger than the {MAX_BODY >> 20} MiB limit")
        return response.status, answer


def _expire(conn: http.client.HTTPConnection, expired: threading.Event) -> None:
    expired.set()
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def gateway(spec, url: str | None, timeout: float) -> Gateway:
    """Where to probe: --url, else https://<serving.hostname>. Bad input raises SpecInvalid (exit 2)."""
    hostname = spec.serving.hostname
    errors = [] if 0 < timeout <= MAX_TIMEOUT else [
        SpecError(None, "--timeout", f"expected seconds above 0 and at most {MAX_TIMEOUT:g}, got {timeout:g}")]
    text = url if url is not None else f"https://{hostname}"
    expected = "expected http(s)://HOST[:PORT][/PATH], e.g. http://127.0.0.1:8080"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise SpecInvalid([*errors, SpecError(None, "--url", f"{text!r}: {exc}; {expected}")]) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
            or parts.username or parts.password:
        errors.append(SpecError(None, "--url", f"{text!r}: {expected}"))
    if errors:
        raise SpecInvalid(errors)
    return Gateway(url=text, scheme=parts.scheme, address=parts.hostname,  # type: ignore[arg-type]  # checked
                   port=port or (443 if parts.scheme == "https" else 80), base=parts.path.rstrip("/"),
                   hostname=hostname, timeout=timeout)


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
    from plinth.modules.serving import tracks

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
    from plinth.modules.serving import TRACK_HEADER

    return {TRACK_HEADER: result.track}


def _get(gw: Gateway, result: TrackResult, name: str, path: str) -> tuple[Check, bytes | None]:
    """A GET expecting 200: its check (not yet recorded) and the body when it passed."""
    started = time.perf_counter()
    try:
        status, body = gw.request("GET", path, _headers(result))
    except _Unreachable as exc:
        return Check(name, False, _ms(started), f"unreachable: {exc}"), None
    check = Check(name, status == 200, _ms(started), f"HTTP {status}", status)
    if status != 200:
        check.detail = str(_Answer(status, body))
        return check, None
    return check, body


def _health(gw: Gateway, model, result: TrackResult) -> bool:
    from plinth.modules.serving import RUNTIMES, route_prefix

    check, _ = _get(gw, result, "health", route_prefix(model) + RUNTIMES[model.runtime].ready)
    result.checks.append(check)
    return check.passed


def _probe_triton(gw: Gateway, model, result: TrackResult) -> None:
    """Triton over the KServe v2 HTTP protocol, on the same bounded requests as every other probe."""
    from plinth.modules.serving import route_prefix

    if not _health(gw, model, result):
        return
    prefix = route_prefix(model)
    started = time.perf_counter()
    try:
        names, note = _triton_models(gw, prefix, model, result)
        metadata = {name: _json(gw, "GET", f"{prefix}/v2/models/{name}", result)
                    for name in names[:MAX_TRITON_MODELS]}
    except (_Answer, _Unreachable, ValueError, KeyError, TypeError) as exc:
        result.checks.append(Check("metadata", False, _ms(started), _failure(exc), getattr(exc, "status", None)))
        return
    detail = f"{len(names)} model{'s' if len(names) != 1 else ''}: {', '.join(names)}"
    result.checks.append(Check("metadata", True, _ms(started), _cut(f"{detail}{note}"), 200))
    result.target = model.name if model.name in metadata else names[0]
    started = time.perf_counter()
    try:
        header, data = triton_request(metadata[result.target])
        answer = _json(gw, "POST", f"{prefix}/v2/models/{result.target}/infer", result, header + data,
                       {"Content-Type": "application/octet-stream",
                        "Inference-Header-Content-Length": str(len(header))})
        outputs = ", ".join(f"{o['name']} {o['datatype']}{o['shape']}" for o in answer.get("outputs", []))
    except (_Answer, _Unreachable, ValueError, KeyError, TypeError, AttributeError) as exc:
        result.checks.append(Check("inference", False, _ms(started), f"{result.target}: {_failure(exc)}",
                                   getattr(exc, "status", None)))
        return
    result.checks.append(Check("inference", True, _ms(started), f"{result.target} -> {outputs or 'no outputs'}",
                               200))


def _json(gw: Gateway, method: str, path: str, result: TrackResult, body: bytes | None = None,
          headers: dict[str, str] | None = None) -> dict:
    """One request expecting 200 and a JSON object (the answer bounded like every other)."""
    status, answer = gw.request(method, path, {**_headers(result), **(headers or {})}, body)
    if status != 200:
        raise _Answer(status, answer)
    document = json.loads(answer)
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return document


def _failure(exc: BaseException) -> str:
    return _cut(str(exc)) if isinstance(exc, (_Answer, _Unreachable)) else _why(exc)


def _triton_models(gw: Gateway, prefix: str, model, result: TrackResult) -> tuple[list[str], str]:
    """The repository's loaded models (names, sorted) from the statistics API, or the spec's model name where
    statistics are refused (4xx), with a note saying so."""
    try:
        stats = _json(gw, "GET", f"{prefix}/v2/models/stats", result)
    except _Answer as exc:
        if not 400 <= exc.status < 500:
            raise
        return [model.name], f" (statistics not served, HTTP {exc.status}: took the model's own name)"
    names = sorted({s["name"] for s in stats.get("model_stats", [])})
    if not names:
        raise ValueError("the server reports no loaded model (GET /v2/models/stats)")
    return names, ""


TRITON_SIZES = {"BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "FP16": 2, "BF16": 2, "UINT32": 4,
                "INT32": 4, "FP32": 4, "UINT64": 8, "INT64": 8, "FP64": 8, "BYTES": 4}
"""Bytes per element in the KServe v2 binary tensor form (a BYTES element is its 4-byte length, here 0)."""


def triton_request(metadata: dict) -> tuple[bytes, bytes]:
    """(JSON header, binary data) of one inference request: zeros of every input's datatype (empty bytes for
    BYTES), its shape with every -1 (variable or batch dimension) as 1, in the binary tensor extension (every
    datatype, BF16 included, has a binary form; not all have a JSON one)."""
    inputs, size = [], 0
    for spec in metadata.get("inputs", []):
        shape = [1 if int(d) < 0 else int(d) for d in spec["shape"]]
        if math.prod(shape) > MAX_INPUT_ELEMENTS:
            raise ValueError(f"input {spec['name']}: shape {shape} is above the limit of {MAX_INPUT_ELEMENTS} "
                             "elements for a request built here")
        datatype = spec["datatype"]
        if datatype not in TRITON_SIZES:
            raise ValueError(f"input {spec['name']}: datatype {datatype} has no zero value here")
        length = math.prod(shape) * TRITON_SIZES[datatype]
        inputs.append({"name": spec["name"], "shape": shape, "datatype": datatype,
                       "parameters": {"binary_data_size": length}})
        size += length
    return json.dumps({"inputs": inputs}).encode(), bytes(size)


def _probe_bentoml(gw: Gateway, model, result: TrackResult) -> None:
    from plinth.modules.serving import route_prefix

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
        check.passed, check.detail = False, _cut(f"/docs.json: {exc}")
        return
    check.detail = f"POST {path} of {_count_apis(document)}"
    result.target = f"POST {path}"
    started = time.perf_counter()
    try:
        status, answer = gw.request("POST", prefix + path, {**_headers(result), "Content-Type": "application/json"},
                                    payload)
    except _Unreachable as exc:
        result.checks.append(Check("inference", False, _ms(started), f"POST {path}: unreachable: {exc}"))
        return
    ok = 200 <= status < 300
    detail = f"POST {path} -> HTTP {status}" if ok else f"POST {path}: {_Answer(status, answer)}"
    result.checks.append(Check("inference", ok, _ms(started), detail, status))


def _apis(document: dict) -> list[tuple[str, dict]]:
    """(path, POST operation) of the service APIs BentoML documents (`x-bentoml-name`), in document order."""
    paths = document.get("paths")
    if not isinstance(paths, dict):
        raise ValueError("no `paths` in the OpenAPI document")
    return [(path, ops["post"]) for path, ops in paths.items()
            if isinstance(ops, dict) and isinstance(ops.get("post"), dict) and "x-bentoml-name" in ops["post"]]


def _count_apis(document: dict) -> str:
    n = len(_apis(document))
    return f"{n} API{'s' if n != 1 else ''}"


def bentoml_api(document: dict) -> tuple[str, dict]:
    """(path, JSON request schema) of the first service API that takes JSON; ValueError when there is none."""
    apis = _apis(document)
    if not apis:
        raise ValueError("no service API (a POST with x-bentoml-name)")
    for path, operation in apis:
        content = (operation.get("requestBody") or {}).get("content") or {}
        if "application/json" in content:
            return path, content["application/json"].get("schema") or {}
    raise ValueError(f"no service API takes JSON (the first, {apis[0][0]}, takes "
                     f"{', '.join((apis[0][1].get('requestBody') or {}).get('content') or {}) or 'nothing'})")


def example(schema: Any, document: dict, depth: int = 0, budget: list[int] | None = None) -> Any:
    """A value valid for a JSON schema (OpenAPI 3.0/3.1 flavour): `default`, `example(s)`, `const` or the first
    `enum` value where given; else zeros, empty strings, False, one-item arrays, objects with their required
    properties. `$ref`s resolve within the document (`#/...`). ValueError past the bounds (MAX_EXAMPLE_PARTS
    parts in all, MAX_EXAMPLE_ITEMS per array or string)."""
    budget = [0] if budget is None else budget  # parts expanded so far, shared by the whole expansion
    budget[0] += 1
    if budget[0] > MAX_EXAMPLE_PARTS:
        raise ValueError(f"the request schema expands to more than {MAX_EXAMPLE_PARTS} parts")
    if depth > 32 or not isinstance(schema, dict):
        return None
    if "$ref" in schema:
        return example(_resolve(schema["$ref"], document), document, depth + 1, budget)
    for key in ("default", "const", "example"):
        if key in schema:
            return schema[key]
    if isinstance(schema.get("examples"), list) and schema["examples"]:
        return schema["examples"][0]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        variants = [v for v in schema.get(key) or [] if not (isinstance(v, dict) and v.get("type") == "null")]
        if variants:
            return example(variants[0], document, depth + 1, budget)
    if schema.get("allOf"):
        parts = [example(part, document, depth + 1, budget) for part in schema["allOf"]]
        if all(isinstance(p, dict) for p in parts):
            return {k: v for p in parts for k, v in p.items()}
        return parts[0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties") or {}
        return {name: example(properties.get(name, {}), document, depth + 1, budget)
                for name in schema.get("required", []) if isinstance(name, str)}
    if kind == "array":
        if isinstance(schema.get("prefixItems"), list):
            return [example(item, document, depth + 1, budget) for item in schema["prefixItems"]]
        count = max(1, _bounded(schema, "minItems", 1))
        if "maxItems" in schema:
            count = min(count, int(schema["maxItems"]))
        return [example(schema.get("items", {}), document, depth + 1, budget) for _ in range(count)]
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        value = max(0, low) if isinstance(low, (int, float)) and not isinstance(low, bool) else 0
        if isinstance(schema.get("exclusiveMinimum"), (int, float)) and value <= schema["exclusiveMinimum"]:
            value = schema["exclusiveMinimum"] + 1
        return int(value) if kind == "integer" else float(value)
    if kind == "string":
        formats = {"date-time": "1970-01-01T00:00:00Z", "date": "1970-01-01", "time": "00:00:00",
                   "uuid": "00000000-0000-0000-0000-000000000000"}
        # No format (None) is no key: the plain string.
        return formats.get(schema.get("format"), "x" * _bounded(schema, "minLength", 0))  # type: ignore[arg-type]
    if kind == "boolean":
        return False
    return None


def _bounded(schema: dict, key: str, default: int) -> int:
    value = int(schema.get(key, default))
    if value > MAX_EXAMPLE_ITEMS:
        raise ValueError(f"{key} {value} is above the limit of {MAX_EXAMPLE_ITEMS} for a request built here")
    return value


def _resolve(ref: str, document: dict) -> Any:
    if not ref.startswith("#/"):
        raise ValueError(f"$ref {ref!r}: only references within the document are followed")
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise ValueError(f"$ref {ref!r} does not resolve")
        node = node[part]
    return node


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
