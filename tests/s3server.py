"""A real S3 server for the tests: SeaweedFS's `weed server` (master, volume server, filer and S3 gateway in
one process) on free loopback ports in a temp dir, with an identities file (`-s3.config`) and, as the platform's
store, HTTPS only with the filer's planned TLS arguments (a test CA's certificate for localhost); and a small S3
client (Signature V4 over http.client) that talks to it as any of those identities, trusting that CA.

SeaweedFS's identity actions (`-s3.config`), as this version enforces them against the running server
(tests/test_backup_drill.py); Read, Write and List alike:
  "Read", "Write", "List", "Tagging", "Admin"   every bucket
  "Read:<bucket>"                               that whole bucket (an action without `*` matches a bucket only)
  "Read:<bucket>/<prefix>/*"                    keys under <prefix>/ (a pattern: `*` and `?` are wildcards)
  "List:<bucket>/<prefix>/*"                    listings with ?prefix=<prefix>/ (not the whole bucket)
"Read:<bucket>/<prefix>" and "Read:<bucket>/<prefix>/" (no `*`) grant nothing; "Read:<bucket>/fraud*" also
grants `fraud-lookalike/`. Barman Cloud needs no more than "Read:<bucket>", "Write:<bucket>", "List:<bucket>".
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.client
import json
import os
import secrets
import signal
import ssl
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support import free_port, make_tls
from plinth.modules.objectstore import tls_args

WEED_MISSING = ("no weed (SeaweedFS): run tests/e2e/toolchain/build.sh, which builds it from the "
                "github.com/seaweedfs/seaweedfs module, or set PLINTH_WEED to a weed binary")
START_SECONDS = 60
"""How long the server may take to take a write (its volume server must register with its master first)."""
LOG_TAIL = 4000
"""How much of the server's log a failure shows (the log itself stays in the server's directory)."""
REGION = "us-east-1"


def weed() -> str:
    """$PLINTH_WEED, else the toolchain's weed (tests/e2e/toolchain/build.sh); absent, the test skips."""
    from e2e.binaries import toolchain_tool  # asks the toolchain's build script: only where a test needs weed

    found = toolchain_tool("weed")
    if found is None:
        pytest.skip(WEED_MISSING)
    return found


@dataclass(frozen=True)
class Identity:
    """One entry of SeaweedFS's identities file: a name, one access key pair (made fresh), its actions."""
    name: str
    actions: tuple[str, ...]
    access_key: str = field(default_factory=lambda: "AK" + secrets.token_hex(8).upper())
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(30), repr=False)

    def config(self) -> dict:
        return {"name": self.name, "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                "actions": list(self.actions)}

    def aws_env(self) -> dict[str, str]:
        """The environment an AWS SDK client (boto3: Barman Cloud) authenticates with as this identity."""
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": REGION}


@dataclass
class Response:
    status: int
    body: bytes

    @property
    def error_code(self) -> str | None:
        """The S3 error code (`AccessDenied`, `NoSuchKey`, ...) of an error answer, else None."""
        text = self.body.decode(errors="replace")
        start = text.find("<Code>")
        return text[start + 6:text.find("</Code>")] if start >= 0 else None


class S3Server:
    """`weed server -filer -s3` in `workdir`, its S3 gateway on 127.0.0.1:`port`, identities from `identities`;
    `start()` returns once it took a write into each of `buckets` (created by `admin`); `stop()` ends it."""

    def __init__(self, binary: str, workdir: Path, admin: Identity, identities: list[Identity],
                 buckets: list[str]):
        self.binary, self.workdir, self.admin, self.buckets = binary, workdir, admin, buckets
        self.identities = [admin, *identities]
        self.port = free_port()
        self.endpoint = f"https://localhost:{self.port}"
        self.log = workdir / "weed.log"
        tls = workdir / "tls"
        tls.mkdir(parents=True, exist_ok=True)
        # The CA the server's certificate comes from: clients trust it (AWS_CA_BUNDLE for boto3).
        self.ca, *_ = make_tls(tls)
        self.tls_args = tls_args(str(tls))
        self.process: subprocess.Popen | None = None

    def args(self) -> list[str]:
        data, config = self.workdir / "data", self.workdir / "s3.json"
        data.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps({"identities": [i.config() for i in self.identities]}, indent=2))
        # Every listener on its own free port: the gRPC ports default to HTTP port + 10000 (past 65535 for
        # high ports), the Iceberg and Lance endpoints to fixed ones; the local sockets default to /tmp.
        ports = {"master.port": free_port(), "master.port.grpc": free_port(),
                 "volume.port": free_port(), "volume.port.grpc": free_port(),
                 "filer.port": free_port(), "filer.port.grpc": free_port(),
                 "s3.port": self.port, "s3.port.grpc": free_port(), "s3.port.iceberg": 0, "s3.port.lance": 0}
        return [self.binary, "server", "-filer", "-s3", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
                "-volume.max=32", "-master.volumeSizeLimitMB=64", "-volume.preStopSeconds=0", f"-s3.config={config}",
                f"-filer.localSocket={self.workdir}/filer.sock", f"-s3.localSocket={self.workdir}/s3.sock",
                *(f"-{name}={value}" for name, value in ports.items()), *self.tls_args]

    def start(self) -> S3Server:
        with self.log.open("wb") as log:
            # Its own session, so that stop() reaches it alone; cwd: it reads security.toml from there if any.
            self.process = subprocess.Popen(self.args(), cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + START_SECONDS
        pending = list(self.buckets)
        while pending:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode} before it was ready:\n"
                                   f"{self.log_tail()}")
            try:
                bucket = pending[0]
                if self.request(self.admin, "PUT", bucket).status in (200, 409) and \
                        self.request(self.admin, "PUT", bucket, ".ready", b"ready").status == 200:
                    self.request(self.admin, "DELETE", bucket, ".ready")
                    pending.pop(0)
                    continue
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"weed took no write into {pending[0]} within {START_SECONDS}s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.5)
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # A clean stop takes 15 to 30 s (the filer retries flushing its metadata log after the volume server,
        # stopped first, is gone), and nothing reads the test's store after it: a short grace, then killed.
        for sig, wait in ((signal.SIGTERM, 2), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(wait)
                return
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue

    def log_tail(self) -> str:
        with self.log.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - LOG_TAIL))
            return log.read().decode(errors="replace")

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- the client -----------------------------------------------------------------------------------

    def request(self, identity: Identity, method: str, bucket: str, key: str = "", body: bytes = b"",
                query: dict[str, str] | None = None) -> Response:
        """One path-style S3 request signed (SigV4) as `identity`."""
        path = "/" + urllib.parse.quote(f"{bucket}/{key}" if key else bucket, safe="/~")
        query_string = "&".join(f"{urllib.parse.quote(k, safe='~')}={urllib.parse.quote(v, safe='~')}"
                                for k, v in sorted((query or {}).items()))
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        headers = {"host": f"localhost:{self.port}", "x-amz-content-sha256": hashlib.sha256(body).hexdigest(),
                   "x-amz-date": amz_date}
        signed = ";".join(sorted(headers))
        canonical = "\n".join([method, path, query_string, *(f"{k}:{headers[k]}" for k in sorted(headers)), "",
                               signed, headers["x-amz-content-sha256"]])
        scope = f"{day}/{REGION}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        signing_key = ("AWS4" + identity.secret_key).encode()
        for part in (day, REGION, "s3", "aws4_request"):
            signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={identity.access_key}/{scope}, "
                                    f"SignedHeaders={signed}, Signature={signature}")
        connection = http.client.HTTPSConnection("localhost", self.port, timeout=30, context=self.tls_context())
        try:
            connection.request(method, path + (f"?{query_string}" if query_string else ""), body=body or None,
                               headers=headers)
            answer = connection.getresponse()
            return Response(answer.status, answer.read())
        finally:
            connection.close()

    def tls_context(self, trusted: Path | None = None) -> ssl.SSLContext:
        """A client's TLS context trusting `trusted` (default: the server's CA) and nothing else."""
        return ssl.create_default_context(cafile=str(trusted or self.ca))

    def objects(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Key -> size of every object in `bucket` under `prefix` (listed as the admin identity)."""
        import xml.etree.ElementTree as ET

        found: dict[str, int] = {}
        token = None
        while True:
            query = {"list-type": "2", "prefix": prefix, **({"continuation-token": token} if token else {})}
            answer = self.request(self.admin, "GET", bucket, query=query)
            assert answer.status == 200, (answer.status, answer.body[:500])
            root = ET.fromstring(answer.body)
            ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
            for item in root.iter(f"{ns}Contents"):
                found[item.findtext(f"{ns}Key")] = int(item.findtext(f"{ns}Size"))
            token = root.findtext(f"{ns}NextContinuationToken")
            if root.findtext(f"{ns}IsTruncated") != "true" or not token:
                return found
