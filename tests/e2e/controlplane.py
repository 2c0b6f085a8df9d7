"""A throwaway local Kubernetes control plane (etcd + kube-apiserver) for e2e tests.

The binaries come from ``tests/e2e/toolchain/build.sh`` (its last stdout line is
the bin dir).  Usage, e.g. from a session-scoped pytest fixture::

    with LocalControlPlane(bin_dir, tmp_path_factory.mktemp("cp")) as cp:
        os.environ["KUBECONFIG"] = cp.kubeconfig_path
        ...

Everything is generated at start-up (CA, serving cert for 127.0.0.1/localhost,
service-account RSA key pair, an admin client cert with O=system:masters), both
servers listen on free loopback ports only, and both are started in their own
process groups which are killed on exit -- also when start-up fails half-way,
when the interpreter exits without ``__exit__`` (atexit), and, on Linux, when
the parent process dies (PR_SET_PDEATHSIG).

If ``bin_dir`` also holds ``kube-controller-manager`` it is started too (namespace
deletion, service accounts + tokens, garbage collection, the workload controllers,
endpoints, HPA, disruption budgets, persistent-volume binding, ...); then the
ServiceAccount admission plugin is on, as on a real cluster. With ``kube-scheduler``
pods are scheduled; with ``kwok`` (and ``kwok_stages``, its stage file) the nodes
the caller creates with the ``kwok.x-k8s.io/node: fake`` annotation are simulated:
see live.py for what that means and what it does not.
"""

from __future__ import annotations

import atexit
import base64
import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

__all__ = ["LocalControlPlane", "ControlPlaneError", "KWOK_NODE"]

KWOK_NODE = "kwok.x-k8s.io/node"
"""The annotation (value ``fake``) that hands a Node to KWOK."""
STOP_GRACE_SECONDS = 3
"""How long the processes get to end on SIGTERM before they are killed (stop)."""


class ControlPlaneError(RuntimeError):
    """The control plane could not be started."""


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #
def _free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (sockets held until all are picked)."""
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _tail(path: Path, lines: int = 40) -> str:
    try:
        data = path.read_bytes()[-16384:].decode("utf-8", "replace")
    except OSError:
        return "<no log>"
    return "\n".join(data.splitlines()[-lines:])


def _pdeathsig() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:
            pass


def _generate_pki(d: Path, sans_dns: list[str], sans_ip: list[str]) -> dict[str, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    until = now + datetime.timedelta(days=2)

    def key_pem(key) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def name(cn: str, org: Optional[str] = None) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        if org:
            attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
        return x509.Name(attrs)

    def certificate(subject: x509.Name, issuer: x509.Name, public_key, ca: bool) -> x509.CertificateBuilder:
        """What the CA and the leaves share; the CA signs certificates, leaves sign handshakes."""
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(until)
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, key_cert_sign=ca, crl_sign=ca,
                    content_commitment=False, key_encipherment=False, data_encipherment=False,
                    key_agreement=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("plinth-e2e-ca")
    ca_cert = (
        certificate(ca_name, ca_name, ca_key.public_key(), ca=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(subject: x509.Name, eku, san=None):
        key = ec.generate_private_key(ec.SECP256R1())
        b = (
            certificate(subject, ca_name, key.public_key(), ca=False)
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                critical=False,
            )
        )
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return key, b.sign(ca_key, hashes.SHA256())

    serving_key, serving_cert = leaf(
        name("kube-apiserver"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName(n) for n in sans_dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in sans_ip],
    )
    admin_key, admin_cert = leaf(name("plinth-e2e-admin", "system:masters"), ExtendedKeyUsageOID.CLIENT_AUTH)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    d.mkdir(parents=True, exist_ok=True)
    files = {
        "ca.crt": ca_cert.public_bytes(serialization.Encoding.PEM),
        "apiserver.crt": serving_cert.public_bytes(serialization.Encoding.PEM),
        "apiserver.key": key_pem(serving_key),
        "admin.crt": admin_cert.public_bytes(serialization.Encoding.PEM),
        "admin.key": key_pem(admin_key),
        "sa.key": key_pem(sa_key),
        "sa.pub": sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    }
    out = {}
    for fname, data in files.items():
        p = d / fname
        p.write_bytes(data)
        if fname.endswith(".key"):
            p.chmod(0o600)
        out[fname] = p
    return out


# --------------------------------------------------------------------------- #
# the control plane
# --------------------------------------------------------------------------- #
class LocalControlPlane:
    """etcd + kube-apiserver on loopback; a context manager.

    Attributes after ``start()`` / ``__enter__``: ``server`` (https URL),
    ``kubeconfig_path``, ``kubeconfig`` (text), ``ca_path``, ``client_cert_path``,
    ``client_key_path``, ``log_dir``.
    """

    SERVICE_CIDR = "10.0.0.0/24"
    POD_CIDR = "10.244.0.0/16"
    """Where KWOK takes pod addresses from (its default is 10.0.0.0/24, the service range)."""

    def __init__(
        self,
        bin_dir: os.PathLike | str,
        workdir: os.PathLike | str,
        *,
        startup_timeout: float = 120.0,
        extra_apiserver_args: tuple[str, ...] = (),
        controller_manager: Optional[bool] = None,
        scheduler: bool = False,
        kwok_stages: os.PathLike | str | None = None,
    ) -> None:
        self.bin_dir = Path(bin_dir)
        self.workdir = Path(workdir)
        self.startup_timeout = startup_timeout
        self.extra_apiserver_args = tuple(extra_apiserver_args)
        kcm = os.access(self.bin_dir / "kube-controller-manager", os.X_OK)
        if controller_manager and not kcm:
            raise ControlPlaneError(f"{self.bin_dir / 'kube-controller-manager'} missing")
        self.controller_manager = kcm if controller_manager is None else controller_manager
        for exe, wanted in (("kube-scheduler", scheduler), ("kwok", kwok_stages)):
            if wanted and not os.access(self.bin_dir / exe, os.X_OK):
                raise ControlPlaneError(f"{self.bin_dir / exe} missing; run tests/e2e/toolchain/build.sh")
        if (scheduler or kwok_stages) and not self.controller_manager:
            raise ControlPlaneError("the scheduler and simulated nodes need the controller-manager")
        self.scheduler = scheduler
        self.kwok_stages = Path(kwok_stages) if kwok_stages else None
        self._procs: list[tuple[str, subprocess.Popen]] = []
        self._logs: dict[str, Path] = {}
        self.server = ""
        self.kubeconfig = ""
        self.kubeconfig_path = ""
        self.log_dir = self.workdir / "logs"
        for exe in ("etcd", "kube-apiserver"):
            if not os.access(self.bin_dir / exe, os.X_OK):
                raise ControlPlaneError(f"{self.bin_dir / exe} missing; run tests/e2e/toolchain/build.sh")

    # -- context manager ------------------------------------------------------
    def __enter__(self) -> "LocalControlPlane":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- lifecycle --------------------------------------------------------------
    def start(self) -> "LocalControlPlane":
        atexit.register(self.stop)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        wd = self.workdir
        wd.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        pki = _generate_pki(
            wd / "pki",
            ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
             "kubernetes.default.svc.cluster.local"],
            ["127.0.0.1", "10.0.0.1"],
        )
        self.ca_path = str(pki["ca.crt"])
        self.client_cert_path = str(pki["admin.crt"])
        self.client_key_path = str(pki["admin.key"])

        etcd_client, etcd_peer, secure_port = _free_ports(3)
        etcd_url = f"http://127.0.0.1:{etcd_client}"
        peer_url = f"http://127.0.0.1:{etcd_peer}"
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=plinth-e2e",
                f"--data-dir={wd / 'etcd-data'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=plinth-e2e={peer_url}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait("etcd", lambda: self._http_ok(f"{etcd_url}/health"), 30)

        self.server = f"https://127.0.0.1:{secure_port}"
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={secure_port}",
                f"--cert-dir={wd / 'apiserver-certs'}",
                f"--tls-cert-file={pki['apiserver.crt']}",
                f"--tls-private-key-file={pki['apiserver.key']}",
                f"--client-ca-file={pki['ca.crt']}",
                f"--service-account-key-file={pki['sa.pub']}",
                f"--service-account-signing-key-file={pki['sa.key']}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--api-audiences=https://kubernetes.default.svc.cluster.local",
                "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={self.SERVICE_CIDR}",
                # The admission webhooks charts install (cert-manager's, the Prometheus operator's,
                # the Vault injector's, the secrets operator's, ...) never get a serving endpoint:
                # their containers never run here, and calling them would fail every later create
                # they match. ServiceAccount admission needs the controller-manager's SA controller.
                # TaintNodesByCondition taints every new Node not-ready until the node lifecycle
                # controller sees its kubelet; simulated nodes are Ready from the start.
                "--disable-admission-plugins=" + ",".join(
                    ["MutatingAdmissionWebhook", "ValidatingAdmissionWebhook"]
                    + ([] if self.controller_manager else ["ServiceAccount"])
                    + (["TaintNodesByCondition"] if self.kwok_stages else [])),
                "--allow-privileged=true",
                "--profiling=false",
                "--v=1",
                *self.extra_apiserver_args,
            ],
        )
        self._wait("kube-apiserver", lambda: self._status("/readyz") == 200, self.startup_timeout)

        self.kubeconfig = self._render_kubeconfig(pki)
        kc = wd / "kubeconfig"
        kc.write_text(self.kubeconfig)
        kc.chmod(0o600)
        self.kubeconfig_path = str(kc)

        if self.controller_manager:
            self._spawn(
                "kube-controller-manager",
                [
                    str(self.bin_dir / "kube-controller-manager"),
                    f"--kubeconfig={kc}",
                    "--secure-port=0",  # no serving endpoint needed
                    "--leader-elect=false",
                    "--controllers=" + ",".join(
                        f"{c}-controller"
                        for c in (
                            "namespace", "serviceaccount", "serviceaccount-token", "garbage-collector",
                            "root-ca-certificate-publisher", "deployment", "replicaset", "statefulset",
                            "daemonset", "job", "cronjob", "endpoints", "endpointslice",
                            "endpointslice-mirroring", "resourcequota", "horizontal-pod-autoscaler",
                            "disruption", "pod-garbage-collector", "ttl-after-finished",
                            "clusterrole-aggregation", "persistentvolume-binder",
                            # lets a deleted PVC (PV) go once no pod (PVC) uses it
                            "persistentvolumeclaim-protection", "persistentvolume-protection",
                            # type-checks ValidatingAdmissionPolicies into their status
                            "validatingadmissionpolicy-status",
                        )
                    ),
                    f"--service-account-private-key-file={pki['sa.key']}",
                    f"--root-ca-file={pki['ca.crt']}",
                    f"--service-cluster-ip-range={self.SERVICE_CIDR}",
                    "--v=1",
                ],
            )
            # the service-account controller creating "default" proves it is working
            self._wait(
                "kube-controller-manager",
                lambda: self._status("/api/v1/namespaces/default/serviceaccounts/default") == 200,
                self.startup_timeout,
            )
        if self.scheduler:
            self._spawn("kube-scheduler", [
                str(self.bin_dir / "kube-scheduler"), f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}", "--secure-port=0", "--leader-elect=false", "--v=1"])
        if self.kwok_stages:
            self._spawn("kwok", [
                str(self.bin_dir / "kwok"), f"--kubeconfig={kc}", f"--config={self.kwok_stages}",
                "--manage-all-nodes=false", f"--manage-nodes-with-annotation-selector={KWOK_NODE}=fake",
                f"--cidr={self.POD_CIDR}", "--v=WARN"])

    def stop(self) -> None:
        """Terminate the controller-manager, kube-apiserver, then etcd (process groups). Idempotent."""
        procs, self._procs = self._procs, []
        for _name, proc in reversed(procs):
            self._kill_group(proc, signal.SIGTERM)
        # A throw-away cluster: nothing of it is read after the stop. The API server's graceful shutdown waits
        # for its open watches (up to 15 s in the tiers); past a short grace it is killed.
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for _name, proc in reversed(procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            self._kill_group(proc, signal.SIGKILL)  # also reaps leftovers in the group
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        try:
            atexit.unregister(self.stop)
        except Exception:
            pass

    # -- HTTP helpers ------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_path)
        ctx.load_cert_chain(self.client_cert_path, self.client_key_path)
        return ctx

    # -- internals ---------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str]) -> None:
        log = self.log_dir / f"{name}.log"
        self._logs[name] = log
        with open(log, "ab") as fh:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,  # own process group -> killpg on stop
                preexec_fn=_pdeathsig,
            )
        self._procs.append((name, proc))

    @staticmethod
    def _kill_group(proc: subprocess.Popen, sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)  # pgid == pid thanks to start_new_session
        except (ProcessLookupError, PermissionError):
            pass

    def _wait(self, name: str, ready, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        proc = dict(self._procs)[name]
        while True:
            if proc.poll() is not None:
                raise ControlPlaneError(
                    f"{name} exited with code {proc.returncode} during start-up; "
                    f"log tail ({self._logs[name]}):\n{_tail(self._logs[name])}"
                )
            try:
                if ready():
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise ControlPlaneError(
                    f"{name} not ready after {timeout:.0f}s; log tail ({self._logs[name]}):\n"
                    f"{_tail(self._logs[name])}"
                )
            time.sleep(0.25)

    @staticmethod
    def _http_ok(url: str) -> bool:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200

    def _status(self, path: str) -> int:
        try:
            with urllib.request.urlopen(self.server + path, context=self.ssl_context(), timeout=3) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def _render_kubeconfig(self, pki: dict[str, Path]) -> str:
        def b64(p: Path) -> str:
            return base64.b64encode(p.read_bytes()).decode()

        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "plinth-e2e", "cluster": {
                "server": self.server, "certificate-authority-data": b64(pki["ca.crt"])}}],
            "users": [{"name": "plinth-e2e-admin", "user": {
                "client-certificate-data": b64(pki["admin.crt"]),
                "client-key-data": b64(pki["admin.key"])}}],
            "contexts": [{"name": "plinth-e2e", "context": {
                "cluster": "plinth-e2e", "user": "plinth-e2e-admin", "namespace": "default"}}],
            "current-context": "plinth-e2e",
            "preferences": {},
        }
        return json.dumps(cfg, indent=2) + "\n"  # JSON is valid YAML
