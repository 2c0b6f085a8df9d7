"""A served model's request logger (serving.models[].drift.requestLog): a sidecar in the model's pod that listens
on `--listen`, forwards every request to the model server (`--upstream`, on localhost) and returns its answer
unchanged; for a sampled share of POST requests (inference) it records the request and response bodies as one
JSON line and writes the lines in batches into the object store:

    s3://<bucket>/<prefix>/<YYYY-MM-DD>/<HH>/<pod>-<unix ms>-<seq>.jsonl      (UTC hour of the batch's write)

Answers are read whole before they are returned (no streaming: a server-sent-events answer arrives at once).
Each record: {"time", "track", "method", "path", "status", "ms", "request", "response"}; a body that is JSON is
kept as JSON, other UTF-8 text as a string, anything else (binary tensors) as null; a body longer than
`--max-body-bytes` is null with `"<request|response>_truncated": true` and its size.

The request path never waits for the store: a sampled record goes into a bounded buffer (`--buffer-records`);
when it is full, the record is counted and dropped. A writer thread flushes every `--flush-seconds` or as soon
as `--flush-records` are waiting; a batch the store refuses is counted and dropped. SIGTERM: requests are still
served for `--drain-seconds` (default 5: the endpoint leaves the Service meanwhile), then those in flight finish,
what is left is written, and the logger exits 0. The counts go to stderr with every write and, with
`--metrics-port`, to Prometheus: `plinth_requestlog_records_total{outcome}` (sampled, written, dropped_full,
dropped_store) on :PORT/metrics.

Credentials and endpoint come from the AWS SDKs' environment (the team's Secret `object-store-credentials`):
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, AWS_ENDPOINT_URL_S3 (path-style, https) and
AWS_CA_BUNDLE (the CA the store's certificate comes from). The standard library only: the image is built from
the Dockerfile beside this file. Bad arguments or environment: one line on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import hmac
import http.client
import http.server
import json
import os
import queue
import random
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Mapping

HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
                        "transfer-encoding", "upgrade"))
"""Headers that belong to one connection (RFC 9110 7.6.1): never forwarded either way."""
DRAIN_SECONDS = 5.0
"""After SIGTERM, requests are still served this long (each answer closing its connection) while the endpoint is
taken out of the Service; then the logger stops taking new ones and waits for those in flight."""
IN_FLIGHT_SECONDS = 30.0
"""How long the requests still in flight may take after the drain (the pod's grace period is 60 s)."""
METRIC = "plinth_requestlog_records_total"
UPSTREAM_TIMEOUT = 300
"""Seconds the model server may take per request (connect, and each read): a model's slowest answer."""
STORE_TIMEOUT = 30
MAX_PROXIED_BYTES = 64 * 1024 * 1024
"""The default of --max-proxied-bytes: the largest request or answer body the logger carries (it holds each
whole). A larger request gets 413, a larger answer 502, so the sidecar's memory stays bounded (its limit is
drift.requestLog.memory)."""
MAX_LINE_BYTES = 8192
"""The longest chunk-size or trailer line of a chunked request."""


class ConfigError(Exception):
    """Bad arguments or environment: one line, exit code 2."""


# --- the object store --------------------------------------------------------------------------------------


class Store:
    """PUT of one object, path-style, signed with AWS Signature Version 4, over HTTPS trusting AWS_CA_BUNDLE."""

    def __init__(self, env: Mapping[str, str]):
        missing = [k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL_S3") if not env.get(k)]
        if missing:
            raise ConfigError(f"the environment lacks {', '.join(missing)} (the team's object-store-credentials)")
        endpoint = urllib.parse.urlsplit(env["AWS_ENDPOINT_URL_S3"])
        if endpoint.scheme != "https" or not endpoint.hostname:
            raise ConfigError(f"AWS_ENDPOINT_URL_S3 {env['AWS_ENDPOINT_URL_S3']!r} is not an https:// URL")
        self.host, self.port = endpoint.hostname, endpoint.port or 443
        self.netloc = endpoint.netloc
        self.access_key, self.secret_key = env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
        self.region = env.get("AWS_DEFAULT_REGION") or "us-east-1"
        ca = env.get("AWS_CA_BUNDLE")
        try:
            self.tls = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
        except OSError as error:
            raise ConfigError(f"AWS_CA_BUNDLE {ca}: {error.strerror or error}") from None

    def put(self, bucket: str, key: str, body: bytes) -> None:
        """Write one object; raises OSError (the store unreachable or refusing) with the store's error code."""
        path = "/" + urllib.parse.quote(f"{bucket}/{key}", safe="/~")
        now = datetime.datetime.now(datetime.UTC)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        headers = {"content-type": "application/x-ndjson", "host": self.netloc,
                   "x-amz-content-sha256": hashlib.sha256(body).hexdigest(), "x-amz-date": amz_date}
        signed = ";".join(sorted(headers))
        canonical = "\n".join(["PUT", path, "", *(f"{k}:{headers[k]}" for k in sorted(headers)), "", signed,
                               headers["x-amz-content-sha256"]])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        key_ = ("AWS4" + self.secret_key).encode()
        for part in (day, self.region, "s3", "aws4_request"):
            key_ = hmac.new(key_, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key_, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                                    f"SignedHeaders={signed}, Signature={signature}")
        connection = http.client.HTTPSConnection(self.host, self.port, timeout=STORE_TIMEOUT, context=self.tls)
        try:
            connection.request("PUT", path, body=body, headers=headers)
            answer = connection.getresponse()
            text = answer.read(4096).decode(errors="replace")
            if answer.status != 200:
                code = text[text.find("<Code>") + 6:text.find("</Code>")] if "<Code>" in text else ""
                raise OSError(f"HTTP {answer.status} {code}".strip())
        finally:
            connection.close()


# --- the records -------------------------------------------------------------------------------------------


def body_value(body: bytes, limit: int) -> tuple[object, bool]:
    """A body as a record keeps it: (JSON, or UTF-8 text, or None for binary or past `limit`; truncated)."""
    if len(body) > limit:
        return None, True
    if not body:
        return None, False
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None, False
    try:
        return json.loads(text), False
    except ValueError:
        return text, False


class Recorder:
    """The bounded buffer between the request path (`offer`, never blocks) and the writer thread."""

    def __init__(self, store: Store | None, bucket: str, prefix: str, pod: str, track: str, max_body: int,
                 flush_seconds: float, flush_records: int, buffer_records: int):
        self.store, self.bucket, self.prefix, self.pod, self.track = store, bucket, prefix.strip("/"), pod, track
        self.max_body, self.flush_seconds, self.flush_records = max_body, flush_seconds, flush_records
        self.buffer: queue.Queue = queue.Queue(maxsize=buffer_records)
        self.full = threading.Event()  # flush_records are waiting: write now
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.counts = {"sampled": 0, "written": 0, "dropped_full": 0, "dropped_store": 0}
        self.sequence = 0

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counts[name] += n

    def exposition(self) -> bytes:
        """The counts in Prometheus' text format (0.0.4)."""
        with self.lock:
            counts = dict(self.counts)
        lines = [f"# HELP {METRIC} Sampled requests by what became of their record.", f"# TYPE {METRIC} counter"]
        lines += [f'{METRIC}{{outcome="{name}"}} {value}' for name, value in counts.items()]
        return ("\n".join(lines) + "\n").encode()

    def offer(self, record: tuple) -> None:
        """(time, method, path, status, ms, request body, response body): raw, encoded by the writer."""
        try:
            self.buffer.put_nowait(record)
        except queue.Full:
            self.count("dropped_full")
            return
        self.count("sampled")
        if self.buffer.qsize() >= self.flush_records:
            self.full.set()

    def encode(self, record: tuple) -> bytes:
        at, method, path, status, ms, request, response = record
        line: dict = {"time": datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat(
            timespec="milliseconds").replace("+00:00", "Z"), "track": self.track, "method": method, "path": path,
            "status": status, "ms": round(ms, 3)}
        for name, body in (("request", request), ("response", response)):
            value, truncated = body_value(body, self.max_body)
            line[name] = value
            if truncated:
                line[f"{name}_truncated"], line[f"{name}_bytes"] = True, len(body)
        return json.dumps(line, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"

    def key(self, now: float) -> str:
        stamp = datetime.datetime.fromtimestamp(now, datetime.UTC)
        self.sequence += 1
        return (f"{self.prefix}/{stamp:%Y-%m-%d}/{stamp:%H}/{self.pod}-{int(now * 1000)}-{self.sequence:06d}"
                ".jsonl")

    def flush(self) -> None:
        """Write what is waiting, in batches of at most flush_records."""
        while True:
            batch: list[tuple] = []
            while len(batch) < self.flush_records:
                try:
                    batch.append(self.buffer.get_nowait())
                except queue.Empty:
                    break
            if not batch:
                return
            body = b"".join(self.encode(record) for record in batch)
            key = self.key(time.time())
            try:
                if self.store is not None:
                    self.store.put(self.bucket, key, body)
                self.count("written", len(batch))
                outcome = f"wrote {len(batch)} records to s3://{self.bucket}/{key}"
            except OSError as error:
                self.count("dropped_store", len(batch))
                outcome = f"could not write {len(batch)} records to s3://{self.bucket}/{key}: {error}"
            with self.lock:
                counts = ", ".join(f"{k} {v}" for k, v in self.counts.items())
            print(f"requestlog: {outcome} ({counts})", file=sys.stderr, flush=True)

    def run(self) -> None:
        """The writer thread: flush every flush_seconds, or when flush_records wait; once more when stopping."""
        while not self.stopping.is_set():
            self.full.wait(self.flush_seconds)
            self.full.clear()
            self.flush()
        self.flush()


# --- the proxy ---------------------------------------------------------------------------------------------


class Traffic:
    """Requests in flight, and whether the logger is draining (SIGTERM)."""

    def __init__(self) -> None:
        self.draining = threading.Event()
        self.idle = threading.Condition()
        self.in_flight = 0

    def __enter__(self) -> Traffic:
        with self.idle:
            self.in_flight += 1
        return self

    def __exit__(self, *exc) -> None:
        with self.idle:
            self.in_flight -= 1
            self.idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self.idle:
            return self.idle.wait_for(lambda: self.in_flight == 0, timeout)


def handler(upstream: tuple[str, int], recorder: Recorder, rate: float, rng: random.Random, traffic: Traffic,
            max_bytes: int = MAX_PROXIED_BYTES):
    local = threading.local()

    def connection() -> http.client.HTTPConnection:
        # One kept-alive connection to the model server per serving thread.
        if getattr(local, "connection", None) is None:
            local.connection = http.client.HTTPConnection(*upstream, timeout=UPSTREAM_TIMEOUT)
        return local.connection

    class Proxy(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive with the client (the Gateway's proxy)

        def _body(self) -> bytes | None:
            """The request's body; ValueError: bad framing; OverflowError: over max_bytes."""
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks: list[bytes] = []
                total = 0
                while True:
                    size = int(self.rfile.readline(MAX_LINE_BYTES).split(b";", 1)[0].strip() or b"0", 16)
                    total += size
                    if total > max_bytes:
                        raise OverflowError(total)
                    if size == 0:
                        while self.rfile.readline(MAX_LINE_BYTES) not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline(MAX_LINE_BYTES)
            length = int(self.headers.get("Content-Length") or 0)
            if length > max_bytes:
                raise OverflowError(length)
            return self.rfile.read(length) if length > 0 else None

        def _forward(self) -> None:
            with traffic:
                self._answer()

        def _answer(self) -> None:
            started = time.monotonic()
            try:
                body = self._body()
            except ValueError:
                self.send_error(400, "bad request body framing")
                return
            except OverflowError:
                self.close_connection = True  # the rest of the body is not read
                self.send_error(413, f"the request body is over {max_bytes} bytes")
                return
            # Expect: the body is already read (this server answered any 100-continue itself).
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "expect"}
            if body is not None:
                headers["Content-Length"] = str(len(body))
            for attempt in (1, 2):
                try:
                    upstream_conn = connection()
                    upstream_conn.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream_conn.getresponse()
                    data = answer.read(max_bytes + 1)
                    break
                except (OSError, http.client.HTTPException) as error:
                    local.connection = None
                    # A kept-alive connection the server closed meanwhile: once more on a new one.
                    if attempt == 2 or not isinstance(error, (http.client.RemoteDisconnected, BrokenPipeError,
                                                              ConnectionResetError)):
                        self.send_error(502, "the model server did not answer")
                        return
            if len(data) > max_bytes:
                upstream_conn.close()  # the rest of the answer is not read: the connection cannot be reused
                local.connection = None
                self.send_error(502, f"the model server's answer is over {max_bytes} bytes")
                return
            self.send_response_only(answer.status, answer.reason)
            for name, value in answer.getheaders():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            # The body's own length (a HEAD answer's is the server's); 204 and 304 carry none.
            length = answer.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
            if length is not None and answer.status not in (204, 304):
                self.send_header("Content-Length", length)
            if traffic.draining.is_set():  # the client's next request goes to another endpoint
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            self.wfile.flush()
            # After the answer is on its way: sampling and the buffer never delay it.
            if self.command == "POST" and rng.random() < rate:
                recorder.offer((time.time(), self.command, self.path, answer.status,
                                (time.monotonic() - started) * 1000, body or b"", data))

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_OPTIONS = do_PATCH = _forward  # noqa: N815

        def log_message(self, *args):  # requests are the model server's to log
            pass

    return Proxy


def metrics_handler(recorder: Recorder):
    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the handler's API)
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            body = recorder.exposition()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # scrapes are not news
            pass

    return Metrics


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    address_family = socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET

    def server_bind(self):
        if self.address_family == socket.AF_INET6:  # both families on one socket
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def main(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Forward a model server's requests; log a sample to S3.")
    parser.add_argument("--listen", type=int, required=True, help="port to serve on (all addresses)")
    parser.add_argument("--upstream", required=True, help="the model server: http://127.0.0.1:PORT")
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", required=True, help="key prefix: requests/<team>/<model>")
    parser.add_argument("--track", default="stable", help="the pod's track, in every record")
    parser.add_argument("--pod", default=os.environ.get("POD_NAME") or socket.gethostname(),
                        help="the pod's name, in every object's key (default: $POD_NAME, else the host name)")
    parser.add_argument("--sample-rate", type=float, default=0.1)
    parser.add_argument("--max-body-bytes", type=int, default=65536)
    parser.add_argument("--max-proxied-bytes", type=int, default=MAX_PROXIED_BYTES,
                        help=f"the largest request or answer body carried (default: {MAX_PROXIED_BYTES})")
    parser.add_argument("--flush-seconds", type=float, default=60)
    parser.add_argument("--flush-records", type=int, default=1000)
    parser.add_argument("--buffer-records", type=int, default=10000)
    parser.add_argument("--metrics-port", type=int, help="serve the counts on :PORT/metrics (default: not at all)")
    parser.add_argument("--drain-seconds", type=float, default=DRAIN_SECONDS,
                        help=f"after SIGTERM, keep serving this long (default: {DRAIN_SECONDS:g})")
    args = parser.parse_args(argv)
    try:
        if not 0 <= args.sample_rate <= 1:
            raise ConfigError(f"--sample-rate {args.sample_rate} is not in 0-1")
        if min(args.max_body_bytes, args.max_proxied_bytes, args.flush_records, args.buffer_records) < 1 \
                or args.flush_seconds <= 0 or args.drain_seconds < 0:
            raise ConfigError("--max-body-bytes, --max-proxied-bytes, --flush-seconds, --flush-records and "
                              "--buffer-records must be positive, --drain-seconds not negative")
        upstream = urllib.parse.urlsplit(args.upstream)
        if upstream.scheme != "http" or not upstream.hostname or upstream.path not in ("", "/"):
            raise ConfigError(f"--upstream {args.upstream!r} is not http://HOST:PORT")
        store = Store(os.environ if env is None else env)
    except ConfigError as error:
        print(f"requestlog: {error}", file=sys.stderr)
        return 2
    recorder = Recorder(store, args.bucket, args.prefix, args.pod, args.track, args.max_body_bytes,
                        args.flush_seconds, args.flush_records, args.buffer_records)
    writer = threading.Thread(target=recorder.run, name="writer")
    writer.start()
    traffic = Traffic()
    server = Server(("::" if Server.address_family == socket.AF_INET6 else "", args.listen),
                    handler((upstream.hostname, upstream.port or 80), recorder, args.sample_rate, random.Random(),
                            traffic, args.max_proxied_bytes))

    def drain() -> None:
        time.sleep(args.drain_seconds)
        server.shutdown()  # from this thread: shutdown waits for serve_forever to return

    def stop(*_):
        # Serve on while the endpoint leaves the Service, then stop taking requests, then the last flush.
        if not traffic.draining.is_set():
            traffic.draining.set()
            threading.Thread(target=drain, daemon=True).start()

    if args.metrics_port is not None:
        metrics = Server(("::" if Server.address_family == socket.AF_INET6 else "", args.metrics_port),
                         metrics_handler(recorder))
        threading.Thread(target=metrics.serve_forever, name="metrics", daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"requestlog: :{args.listen} -> {args.upstream}, sampling {args.sample_rate:g} of POST requests into "
          f"s3://{args.bucket}/{recorder.prefix}/", file=sys.stderr, flush=True)
    server.serve_forever()
    server.server_close()
    if not traffic.wait_idle(IN_FLIGHT_SECONDS):
        print(f"requestlog: {traffic.in_flight} requests still in flight after {IN_FLIGHT_SECONDS:g}s",
              file=sys.stderr, flush=True)
    recorder.stopping.set()
    recorder.full.set()
    writer.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
