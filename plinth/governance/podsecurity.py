"""The Kubernetes Pod Security Standards (baseline, restricted) as the PodSecurity admission plugin checks them.

Pure functions over a pod spec and its metadata, so `plinth check` judges every pod (Plinth's and the
charts') against its namespace's `pod-security.kubernetes.io/enforce` level before anything reaches a
cluster. The checks follow the upstream standard (and the PodSecurity plugin's versioned checks) for the Kubernetes
versions Plinth supports, 1.32+, at the namespace's `enforce-version`; the opt-in user-namespace relaxations
(`hostUsers: false`) are not applied, so such a pod is judged as any other:
https://kubernetes.io/docs/concepts/security/pod-security-standards/
"""

from __future__ import annotations

from collections.abc import Iterator

BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP",
    "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})
SAFE_SYSCTLS = frozenset({
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes", "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"})
"""The safe sysctls as of policy version 1.32 (the oldest Kubernetes version Plinth supports)."""
HOST_PROBES_VERSION = (1, 34)
"""From this policy version baseline forbids `host` in probes and lifecycle handlers."""
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
RESTRICTED_VOLUMES = frozenset({
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"})
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
LEVELS = ("privileged", "baseline", "restricted")


def containers(pod: dict) -> Iterator[dict]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in pod.get(key) or []:
            if isinstance(container, dict):
                yield container


def _ctx(obj: dict) -> dict:
    ctx = obj.get("securityContext")
    return ctx if isinstance(ctx, dict) else {}


def baseline(pod: dict, annotations: dict | None = None, version: tuple[int, int] = (1, 34)) -> list[str]:
    """What breaks the baseline standard (known privilege escalations) at a policy version, as short reasons."""
    found: list[str] = []
    pod_ctx = _ctx(pod)
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field) is True:
            found.append(f"{field}: true")
    if (pod_ctx.get("windowsOptions") or {}).get("hostProcess") is True:
        found.append("securityContext.windowsOptions.hostProcess: true")
    for volume in pod.get("volumes") or []:
        if isinstance(volume, dict) and "hostPath" in volume:
            found.append(f"hostPath volume {volume.get('name')}")
    found += _seccomp_not_unconfined("pod", pod_ctx)
    found += _selinux("pod", pod_ctx)
    found += _apparmor("pod", pod_ctx)
    for sysctl in pod_ctx.get("sysctls") or []:
        name = sysctl.get("name") if isinstance(sysctl, dict) else None
        if name not in SAFE_SYSCTLS:
            found.append(f"sysctl {name}")
    for key, value in (annotations or {}).items():
        if key.startswith(APPARMOR_ANNOTATION) and not (value == "runtime/default" or str(value).startswith(
                "localhost/")):
            found.append(f"annotation {key}: {value}")
    for c in containers(pod):
        name, ctx = c.get("name"), _ctx(c)
        if ctx.get("privileged") is True:
            found.append(f"container {name}: privileged")
        if (ctx.get("windowsOptions") or {}).get("hostProcess") is True:
            found.append(f"container {name}: windowsOptions.hostProcess: true")
        added = [cap for cap in (ctx.get("capabilities") or {}).get("add") or [] if cap not in BASELINE_CAPABILITIES]
        if added:
            found.append(f"container {name}: adds capabilities {', '.join(map(str, added))}")
        for port in c.get("ports") or []:
            if isinstance(port, dict) and port.get("hostPort") not in (None, 0):
                found.append(f"container {name}: hostPort {port['hostPort']}")
        if ctx.get("procMount") not in (None, "Default"):
            found.append(f"container {name}: procMount {ctx['procMount']}")
        found += _seccomp_not_unconfined(f"container {name}", ctx)
        found += _selinux(f"container {name}", ctx)
        found += _apparmor(f"container {name}", ctx)
        if version >= HOST_PROBES_VERSION:
            found += [f"container {name}: {where} sets host" for where in _handler_hosts(c)]
    return found


def _handler_hosts(container: dict) -> list[str]:
    """The probes and lifecycle handlers of a container that name a host (the kubelet would call it)."""
    handlers = {probe: container.get(probe) for probe in ("livenessProbe", "readinessProbe", "startupProbe")}
    lifecycle = found if isinstance(found := container.get("lifecycle"), dict) else {}
    handlers |= {f"lifecycle.{hook}": lifecycle.get(hook) for hook in ("postStart", "preStop")}
    return [f"{where}.{action}.host" for where, handler in handlers.items() if isinstance(handler, dict)
            for action in ("httpGet", "tcpSocket") if ((handler.get(action) or {}).get("host") or "") != ""]


def restricted(pod: dict, annotations: dict | None = None, version: tuple[int, int] = (1, 34)) -> list[str]:
    """What breaks the restricted standard (baseline, plus current pod-hardening practice)."""
    found = baseline(pod, annotations, version)
    pod_ctx = _ctx(pod)
    # Windows pods are exempt from the Linux-only controls (privilege escalation, capabilities, seccomp).
    linux = ((pod.get("os") or {}).get("name")) != "windows"
    for volume in pod.get("volumes") or []:
        if isinstance(volume, dict):
            kinds = [k for k in volume if k != "name" and k not in RESTRICTED_VOLUMES]
            if kinds and "hostPath" not in kinds:  # hostPath is reported by baseline already
                found.append(f"volume {volume.get('name')} of type {', '.join(kinds)}")
    if pod_ctx.get("runAsUser") == 0:
        found.append("securityContext.runAsUser: 0")
    pod_non_root = pod_ctx.get("runAsNonRoot")
    pod_seccomp = (pod_ctx.get("seccompProfile") or {}).get("type")
    for c in containers(pod):
        name, ctx = c.get("name"), _ctx(c)
        if linux and ctx.get("allowPrivilegeEscalation") is not False:
            found.append(f"container {name}: allowPrivilegeEscalation is not false")
        non_root = ctx.get("runAsNonRoot", pod_non_root)
        if non_root is not True:
            found.append(f"container {name}: runAsNonRoot is not true")
        if ctx.get("runAsUser") == 0:
            found.append(f"container {name}: runAsUser: 0")
        if not linux:
            continue
        seccomp = (ctx.get("seccompProfile") or {}).get("type", pod_seccomp)
        if seccomp not in ("RuntimeDefault", "Localhost", "Unconfined"):  # Unconfined: reported by baseline
            found.append(f"container {name}: seccompProfile is not RuntimeDefault or Localhost")
        caps = ctx.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            found.append(f"container {name}: capabilities do not drop ALL")
        # Only NET_BIND_SERVICE may be added back; capabilities outside baseline's set are reported there.
        added = [cap for cap in caps.get("add") or [] if cap != "NET_BIND_SERVICE" and cap in BASELINE_CAPABILITIES]
        if added:
            found.append(f"container {name}: adds capabilities {', '.join(map(str, added))}")
    return found


def policy_version(label: str | None) -> tuple[int, int]:
    """A namespace's `pod-security.kubernetes.io/enforce-version` (v1.34, or latest/absent: the newest)."""
    try:
        major, minor = str(label).removeprefix("v").split(".")
        return int(major), int(minor)
    except ValueError:
        return (99, 0)


def violations(level: str, pod: dict, annotations: dict | None = None, version: tuple[int, int] = (1, 34)
               ) -> list[str]:
    """What breaks `level` at a policy version (privileged allows everything)."""
    if level == "restricted":
        return restricted(pod, annotations, version)
    if level == "baseline":
        return baseline(pod, annotations, version)
    return []


def _seccomp_not_unconfined(where: str, ctx: dict) -> list[str]:
    kind = (ctx.get("seccompProfile") or {}).get("type")
    return [f"{where}: seccompProfile Unconfined"] if kind == "Unconfined" else []


def _selinux(where: str, ctx: dict) -> list[str]:
    options = ctx.get("seLinuxOptions") or {}
    found = []
    if options.get("type", "") not in SELINUX_TYPES:
        found.append(f"{where}: seLinuxOptions.type {options['type']}")
    for field in ("user", "role"):
        if options.get(field):
            found.append(f"{where}: seLinuxOptions.{field} {options[field]}")
    return found


def _apparmor(where: str, ctx: dict) -> list[str]:
    kind = (ctx.get("appArmorProfile") or {}).get("type")
    return [f"{where}: appArmorProfile {kind}"] if kind not in (None, "RuntimeDefault", "Localhost") else []
