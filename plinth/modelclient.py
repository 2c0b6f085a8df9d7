"""HTTP to a served model through the platform Gateway: bounded requests, the KServe v2 inference request
(Triton) and a request body from BentoML's OpenAPI document. What a server says is cleaned before it is shown.

Every request has a deadline (connect, send, the whole answer); an answer is read up to MAX_BODY bytes; a
request schema is expanded up to MAX_EXAMPLE_PARTS parts (and MAX_EXAMPLE_ITEMS items per array).
"""

from __future__ import annotations

import http.client
import json
import math
import re
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from plinth.spec.errors import SpecError, SpecInvalid

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

_ESCAPE = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)?|.)?", re.DOTALL)


def clean(text: str) -> str:
    """Text a server sent, safe for a terminal: terminal escape sequences and every other non-printable
    character (controls, bidi overrides) removed, whitespace runs made one space."""
    text = _ESCAPE.sub("", str(text))
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def shorten(text: str) -> str:
    """`clean` text cut to DETAIL_CHARS (a failure's detail)."""
    text = clean(text)
    return text if len(text) <= DETAIL_CHARS else text[:DETAIL_CHARS - 3] + "..."


def error_text(exc: BaseException) -> str:
    """What went wrong, for a failure's detail: "timed out", else the exception's type and message."""
    if isinstance(exc, TimeoutError) or type(exc).__name__ in ("timeout", "Timeout"):
        return "timed out"
    return shorten(f"{type(exc).__name__}: {exc}")


# --- bounded requests ------------------------------------------------------------------------------------


class Answer(Exception):
    """An HTTP answer that is not the one expected (carries its status)."""

    def __init__(self, status: int, body: bytes):
        super().__init__(f"HTTP {status}: {shorten(body.decode('utf-8', 'replace'))}" if body else f"HTTP {status}")
        self.status = status


def json_object(path: str, status: int, body: bytes) -> dict:
    """The JSON object of a 200 answer to `path`; Answer for any other status, ValueError for any other body."""
    if status != 200:
        raise Answer(status, body)
    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return document


class Unreachable(Exception):
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


MAX_TIMEOUT = 3600.0
"""The longest --timeout an online command takes (seconds)."""


@dataclass(frozen=True)
class Credentials:
    """The Authorization header every request carries, and where it came from. Only `source` is ever shown: the
    header and the secrets stay out of every repr, message and exception."""

    source: str
    """Where the credentials came from, for messages (e.g. the environment variables' names)."""
    header: str = field(repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Values that must never be shown (`redact` takes them out of a server's answer, which may echo them)."""

    def redact(self, text: str) -> str:
        for secret in (self.header, *self.secrets):
            if secret:
                text = text.replace(secret, "***")
        return text


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
    credentials: Credentials | None = field(default=None, repr=False)
    """Sent with every request (None: no Authorization header)."""
    context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)
    """For https: how the server's certificate is checked (None: the system's CAs, host name checked)."""

    @classmethod
    def parse(cls, url: str, timeout: float, example: str, hostname: str | None = None,
              options: tuple[str, str] = ("--url", "--timeout")) -> Gateway:
        """The Gateway at `url` (http(s)://HOST[:PORT][/PATH]) with the `--url` and `--timeout` a command was given
        (`options`: their names, for the errors); `hostname`: the Host header and TLS name when it is not the URL's.
        Bad input raises SpecInvalid (exit 2)."""
        url_option, timeout_option = options
        errors = [] if 0 < timeout <= MAX_TIMEOUT else [SpecError(
            None, timeout_option, f"expected seconds above 0 and at most {MAX_TIMEOUT:g}, got {timeout:g}")]
        expected = f"expected http(s)://HOST[:PORT][/PATH], e.g. {example}"
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise SpecInvalid([*errors, SpecError(None, url_option, f"{url!r}: {exc}; {expected}")]) from None
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment \
                or parts.username or parts.password:
            errors.append(SpecError(None, url_option, f"{url!r}: {expected}"))
        if errors:
            raise SpecInvalid(errors)
        return cls(url=url, scheme=parts.scheme, address=parts.hostname,  # type: ignore[arg-type]  # checked
                   port=port or (443 if parts.scheme == "https" else 80), base=parts.path.rstrip("/"),
                   hostname=hostname or parts.hostname, timeout=timeout)  # type: ignore[arg-type]  # checked

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes | None = None
                ) -> tuple[int, bytes]:
        """(status, body) of one request within the deadline; Unreachable when no (whole) answer came.

        The socket timeout bounds each wait; a timer shuts the socket when the deadline passes, which
        ends a read of an answer trickling in slower than that."""
        if self.scheme == "https":
            conn: http.client.HTTPConnection = _TLSConnection(self.address, self.port, self.hostname,
                                                              timeout=self.timeout,
                                                              context=self.context or ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(self.address, self.port, timeout=self.timeout)
        expired = threading.Event()
        opened: list[socket.socket] = []
        timer = threading.Timer(self.timeout, _expire, (conn, opened, expired))
        timer.start()
        try:
            signed = {"Authorization": self.credentials.header} if self.credentials else {}
            conn.request(method, self.base + path, body=body,
                         headers={"Host": self.hostname, "Accept": "application/json", **signed, **headers})
            # An answer without a length ends when the server closes: http.client then lets go of the socket
            # (conn.sock is None) while the answer is read from it, so the deadline keeps its own reference.
            if conn.sock is not None:
                opened.append(conn.sock)
            response = conn.getresponse()
            answer = response.read(MAX_BODY + 1)
            if expired.is_set():  # a read cut short by the deadline returns what had come
                raise TimeoutError
        except (OSError, http.client.HTTPException, ValueError) as exc:
            why = "timed out" if expired.is_set() else error_text(exc)
            raise Unreachable(self.credentials.redact(why) if self.credentials else why) from None
        finally:
            timer.cancel()
            conn.close()
        if len(answer) > MAX_BODY:
            raise Unreachable(f"the answer is larger than the {MAX_BODY >> 20} MiB limit")
        return response.status, answer


def _expire(conn: http.client.HTTPConnection, opened: list[socket.socket], expired: threading.Event) -> None:
    expired.set()
    sock = conn.sock or (opened[0] if opened else None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# --- Triton: the KServe v2 inference request -------------------------------------------------------------


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


# --- BentoML: a request from the OpenAPI document --------------------------------------------------------


def _apis(document: dict) -> list[tuple[str, dict]]:
    """(path, POST operation) of the service APIs BentoML documents (`x-bentoml-name`), in document order."""
    paths = document.get("paths")
    if not isinstance(paths, dict):
        raise ValueError("no `paths` in the OpenAPI document")
    return [(path, ops["post"]) for path, ops in paths.items()
            if isinstance(ops, dict) and isinstance(ops.get("post"), dict) and "x-bentoml-name" in ops["post"]]


def count_apis(document: dict) -> str:
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
        return formats.get(str(schema.get("format")), "x" * _bounded(schema, "minLength", 0))
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
