"""Every object the charts render (and Plinth's own): exposure, Pod Security, host access, unsafe chart
modes."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from plinth.governance.policies.core import HELM_RELEASE, MANDATORY, Policy, Subject, dig, pod_specs
from plinth.vocabulary import GATEWAY_NAMESPACE, HOST_ACCESS_ALLOWLIST

# These see Plinth's objects, the Helm releases' values and (with `plinth check --charts`) every object
# the charts render from those values. A finding on a chart object names the values key behind it where
# one can be told (`_values_key`), so the fix is in the spec, not the chart.

ROUTE_KINDS = frozenset({"HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"})
EXPOSED_TYPES = frozenset({"loadbalancer", "nodeport"})
PLATFORM_SECRET_NAMESPACES = frozenset({"kube-system", "cilium-secrets", GATEWAY_NAMESPACE})
"""Where the Gateway's TLS keys may be copied: Cilium's own secrets namespace, kube-system, the Gateway's."""

HOST_ACCESS_RELEASES = frozenset({"cilium", "longhorn", "gpu-operator"})
"""Releases whose values may ask for host access (their allowlisted workloads need it); the rendered objects
are still held to HOST_ACCESS_ALLOWLIST."""


def _release_values(subjects) -> dict[str, dict]:
    return {s.props.get("name"): s.props.get("values") or {} for s in subjects if s.type == HELM_RELEASE}


def _leaves(values: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """(dotted path, key, value) of every scalar in a values tree."""
    if isinstance(values, dict):
        for key, value in values.items():
            here = f"{path}.{key}" if path else str(key)
            if isinstance(value, (dict, list)):
                yield from _leaves(value, here)
            else:
                yield here, str(key), value
    elif isinstance(values, list):
        for index, value in enumerate(values):
            yield from _leaves(value, f"{path}[{index}]")


def _values_key(values: dict | None, match: Callable[[str, str, Any], bool]) -> str | None:
    """The first values key (dotted) whose (path, key, value) matches."""
    return next((path for path, key, value in _leaves(values or {}) if match(path, key, value)), None)


def _enabled_under(word: str) -> Callable[[str, str, Any], bool]:
    """`<...word...>.enabled: true`, e.g. ingress.enabled, ui.ingress.enabled, prometheus.route.main.enabled."""
    return lambda path, key, value: key == "enabled" and value is True and \
        any(word in part.lower() for part in path.split(".")[:-1])


def _no_external_services(subjects, platform):
    values = _release_values(subjects)
    for s in subjects:
        spec = s.props.get("spec") or {}
        if s.kind == "Service" and str(spec.get("type", "")).lower() in EXPOSED_TYPES:
            exposed = str(spec["type"]).lower()

            def sets_type(path: str, key: str, value: Any, exposed: str = exposed) -> bool:
                return isinstance(value, str) and value.lower() == exposed

            yield s, f"a Service of type {spec['type']}", _values_key(values.get(s.release), sets_type)
        elif s.kind == "Ingress":
            yield s, "an Ingress: traffic enters through the platform Gateway only", \
                _values_key(values.get(s.release), _enabled_under("ingress"))
        elif s.kind == "Gateway" and s.release:
            yield s, "a Gateway of the chart's own: traffic enters through the platform Gateway only", \
                _values_key(values.get(s.release), _enabled_under("gateway"))
        elif s.kind in ROUTE_KINDS:
            if s.release:
                yield s, f"a {s.kind} of the chart's own: only Plinth's routes attach to the platform Gateway", \
                    _values_key(values.get(s.release), _enabled_under("route"))
                continue
            ns = s.metadata.get("namespace")
            for ref in spec.get("parentRefs") or []:
                if ref.get("kind", "Gateway") != "Gateway" or ref.get("namespace", ns) != GATEWAY_NAMESPACE:
                    yield s, f"attaches to {ref.get('kind', 'Gateway')} {ref.get('namespace', ns)}/" \
                             f"{ref.get('name')}, not the platform Gateway in {GATEWAY_NAMESPACE}"
        if s.type == HELM_RELEASE:
            release_values = s.props.get("values") or {}
            for path, _, value in _leaves(release_values):
                if isinstance(value, str) and value.lower() in EXPOSED_TYPES:
                    yield s, f"values {path} = {value}: the chart would expose a Service outside the cluster", path
            for word, what in (("ingress", "an Ingress"), ("route", "a route of its own")):
                for path, key, value in _leaves(release_values):
                    if _enabled_under(word)(path, key, value):
                        yield s, f"values {path} = true: the chart would create {what}; traffic enters through " \
                                 "the platform Gateway only", path


HOST_ACCESS_FIELDS = ("hostNetwork", "hostPID", "hostIPC")


def _pod_metadata(subject: Subject) -> dict:
    spec = subject.props.get("spec") or {}
    if subject.kind == "Pod":
        return subject.metadata
    template = ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") if subject.kind == "CronJob" \
        else spec.get("template")
    return (template or {}).get("metadata") or {}


def _host_values_key(values: dict | None, found: list[str]) -> str | None:
    """The values key most likely behind host access or a Pod Security finding."""
    def match(path, key, value):
        if key in HOST_ACCESS_FIELDS or key in ("privileged", "allowPrivilegeEscalation"):
            return value is True and any(key in f for f in found)
        if "hostPath" in path or key == "hostPath":
            return any("hostPath" in f for f in found)
        return key == "runAsUser" and value == 0 and any("runAsUser" in f or "runAsNonRoot" in f for f in found)
    return _values_key(values, match)


def _pod_security(subjects, platform):
    from plinth.governance import podsecurity

    levels = {s.metadata.get("name"): (s.labels.get("pod-security.kubernetes.io/enforce"), podsecurity.policy_version(
        s.labels.get("pod-security.kubernetes.io/enforce-version"))) for s in subjects if s.kind == "Namespace"}
    values = _release_values(subjects)
    for s in subjects:
        ns = s.metadata.get("namespace")
        level, version = levels.get(ns, (None, None))
        if level not in ("baseline", "restricted"):
            continue
        for pod in pod_specs(s):
            found = podsecurity.violations(level, pod, _pod_metadata(s).get("annotations") or {},
                                           version)  # type: ignore[arg-type]  # a level comes with its version
            if found:
                yield s, f"breaks Pod Security {level} (namespace {ns}): {'; '.join(found)}", \
                    _host_values_key(values.get(s.release), found)


def host_access(pod: dict) -> list[str]:
    """Privileged containers, host namespaces and hostPath volumes of a pod spec."""
    from plinth.governance.podsecurity import containers

    found = [f"{field}: true" for field in HOST_ACCESS_FIELDS if pod.get(field) is True]
    found += [f"hostPath volume {v.get('name')}" for v in pod.get("volumes") or [] if isinstance(v, dict)
              and "hostPath" in v]
    found += [f"container {c.get('name')}: privileged" for c in containers(pod)
              if ((c.get("securityContext") or {}).get("privileged")) is True]
    return found


def _host_access_allowlist(subjects, platform):
    values = _release_values(subjects)
    for s in subjects:
        key = (s.metadata.get("namespace"), s.kind, s.metadata.get("name"))
        for pod in pod_specs(s):
            found = host_access(pod)
            if found and key not in HOST_ACCESS_ALLOWLIST:
                yield s, f"{'; '.join(found)}: not an allowlisted platform workload", \
                    _host_values_key(values.get(s.release), found)
        if s.type == HELM_RELEASE:
            if s.props.get("name") in HOST_ACCESS_RELEASES:
                continue
            paths = set()
            for path, key_name, value in _leaves(s.props.get("values") or {}):
                if key_name in (*HOST_ACCESS_FIELDS, "privileged") and value is True:
                    yield s, f"values {path} = true: host access for a chart outside the allowlist", path
                elif ".hostPath." in f".{path}." and path.split(".hostPath.")[0] not in paths:
                    paths.add(path.split(".hostPath.")[0])
                    yield s, f"values {path.split('.hostPath.')[0]}.hostPath: a host path for a chart outside the " \
                             "allowlist", path


DEV_FLAG = re.compile(r"(^|\s)-dev(\s|$|=|-)")


def _vault_not_dev(subjects, platform):
    for s in subjects:
        if s.type == HELM_RELEASE and s.props.get("name") == "vault":
            values = s.props.get("values") or {}
            if dig(values, "server", "dev", "enabled") in (True, "true"):
                yield s, "values server.dev.enabled = true: an in-memory Vault with a known root token", \
                    "server.dev.enabled"
            extra = dig(values, "server", "extraArgs")
            if isinstance(extra, str) and DEV_FLAG.search(extra):
                yield s, f"values server.extraArgs {extra!r} starts Vault in dev mode", "server.extraArgs"
        elif s.release == "vault":
            for pod in pod_specs(s):
                for c in (pod.get("containers") or []):
                    line = " ".join(str(a) for a in (c.get("command") or []) + (c.get("args") or []))
                    env = {e.get("name") for e in c.get("env") or [] if isinstance(e, dict)}
                    if DEV_FLAG.search(line) or "VAULT_DEV_ROOT_TOKEN_ID" in env:
                        yield s, f"container {c.get('name')} runs Vault in dev mode"


def _cilium_enforcement(subjects, platform):
    for s in subjects:
        if s.type == HELM_RELEASE and s.props.get("name") == "cilium":
            values = s.props.get("values") or {}
            if str(values.get("policyEnforcementMode", "")).lower() == "never":
                yield s, "values policyEnforcementMode = never: every NetworkPolicy would be ignored", \
                    "policyEnforcementMode"
            secrets_ns = dig(values, "gatewayAPI", "secretsNamespace", "name")
            if secrets_ns is not None and secrets_ns not in PLATFORM_SECRET_NAMESPACES:
                yield s, f"values gatewayAPI.secretsNamespace.name = {secrets_ns}: the Gateway's TLS keys would be " \
                         f"copied outside the platform namespaces ({', '.join(sorted(PLATFORM_SECRET_NAMESPACES))})", \
                    "gatewayAPI.secretsNamespace.name"
        elif s.release == "cilium" and s.kind == "ConfigMap" and s.metadata.get("name") == "cilium-config":
            data = s.props.get("data") or {}
            if str(data.get("enable-policy", "")).lower() == "never":
                yield s, "enable-policy: never (every NetworkPolicy ignored)"
            secrets_ns = data.get("gateway-api-secrets-namespace")
            if secrets_ns and secrets_ns not in PLATFORM_SECRET_NAMESPACES:
                yield s, f"gateway-api-secrets-namespace: {secrets_ns} (outside the platform namespaces)"


def _anonymous_ini(text: str) -> bool:
    section = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif section == "auth.anonymous" and "=" in line:
            key, _, value = line.partition("=")
            if key.strip() == "enabled" and value.strip().lower() == "true":
                return True
    return False


def _grafana_not_anonymous(subjects, platform):
    for s in subjects:
        if s.type == HELM_RELEASE and s.props.get("name") == "kube-prometheus-stack":
            grafana = (s.props.get("values") or {}).get("grafana") or {}
            if dig(grafana, "grafana.ini", "auth.anonymous", "enabled") in (True, "true"):
                yield s, "values grafana.grafana.ini.auth.anonymous.enabled = true: Grafana without a login", \
                    "grafana.grafana.ini.auth.anonymous.enabled"
            if str((grafana.get("env") or {}).get("GF_AUTH_ANONYMOUS_ENABLED", "")).lower() == "true":
                yield s, "values grafana.env.GF_AUTH_ANONYMOUS_ENABLED = true: Grafana without a login", \
                    "grafana.env.GF_AUTH_ANONYMOUS_ENABLED"
        elif s.release and s.kind == "ConfigMap" and _anonymous_ini(str((s.props.get("data") or {}).get(
                "grafana.ini", ""))):
            yield s, "grafana.ini enables [auth.anonymous]"
        elif s.release:
            for pod in pod_specs(s):
                for c in pod.get("containers") or []:
                    if any(isinstance(e, dict) and e.get("name") == "GF_AUTH_ANONYMOUS_ENABLED" and
                           str(e.get("value")).lower() == "true" for e in c.get("env") or []):
                        yield s, f"container {c.get('name')} sets GF_AUTH_ANONYMOUS_ENABLED=true"


NO_EXTERNAL_SERVICES_POLICY = Policy(
    "no-external-services", "Nothing is exposed with a LoadBalancer or NodePort Service, an Ingress, a "
    "Gateway or route of a chart's own (whatever values key asks for it): traffic enters through the "
    "platform Gateway, and Plinth's routes attach to it only.", "remove the values key; expose through an "
    "HTTPRoute on the platform Gateway (the service's hostname field)", MANDATORY, _no_external_services)
POD_SECURITY_POLICY = Policy(
    "pod-security", "Every pod (Plinth's and every chart's) meets the Pod Security level its namespace "
    "enforces (baseline or restricted, as the upstream standard defines them).", "remove the values key "
    "that weakens the pod's security context", MANDATORY, _pod_security)
HOST_ACCESS_ALLOWLIST_POLICY = Policy(
    "host-access-allowlist", "Only the allowlisted platform workloads (Cilium, Longhorn, the GPU "
    "operator's node discovery, node-exporter; plinth.vocabulary.HOST_ACCESS_ALLOWLIST) run "
    "privileged or with host namespaces or hostPath.", "remove the values key that asks for host access",
    MANDATORY, _host_access_allowlist)
VAULT_NOT_DEV_POLICY = Policy(
    "vault-not-dev", "Vault never runs in dev mode (in memory, unsealed, root token known).",
    "remove server.dev and any -dev flag from secrets.vault.values", MANDATORY, _vault_not_dev)
CILIUM_POLICY_ENFORCEMENT_POLICY = Policy(
    "cilium-policy-enforcement", "Cilium enforces network policy (never policyEnforcementMode: never) "
    "and keeps the Gateway's TLS keys in platform namespaces.", "remove policyEnforcementMode and "
    "gatewayAPI.secretsNamespace from network.cilium.values", MANDATORY, _cilium_enforcement)
GRAFANA_NOT_ANONYMOUS_POLICY = Policy(
    "grafana-not-anonymous", "Grafana has no anonymous access.", "remove grafana.ini auth.anonymous (and "
    "GF_AUTH_ANONYMOUS_ENABLED) from monitoring.values", MANDATORY, _grafana_not_anonymous)
