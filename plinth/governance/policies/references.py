"""References between objects: every name one object gives for another resolves in the plan."""

from __future__ import annotations

from collections.abc import Iterator

from plinth.governance.policies.core import HELM_RELEASE, MANDATORY, Policy, Subject, dig, pod_specs, selects
from plinth.vocabulary import USER_PROVIDED

BUILTIN_PRIORITY_CLASSES = frozenset({"system-cluster-critical", "system-node-critical"})
"""PriorityClasses every cluster has."""
CNPG_CLUSTER_SECRETS = ("-app", "-ca", "-replication", "-server", "-superuser")
"""Secrets CloudNativePG creates for a `Cluster` <name> (<name>-app, ...), in the Cluster's namespace."""
VAULT_SECRET_KINDS = frozenset({"VaultStaticSecret", "VaultDynamicSecret", "VaultPKISecret"})
"""Vault Secrets Operator kinds whose `spec.destination.name` Secret the operator creates."""


CLUSTER_SCOPED = frozenset({
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PriorityClass", "StorageClass",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding", "APIService", "CSIDriver", "PersistentVolume", "IngressClass",
    "GatewayClass", "RuntimeClass", "ClusterIssuer", "CiliumClusterwideNetworkPolicy", "VolumeSnapshotClass",
    "NodeFeatureRule", "ClusterPolicy", "NVIDIADriver"})
"""Kinds without a namespace: a chart's namespaced objects get their release's; a reference to one of these
ignores any namespace (the engine may report `default` for a custom resource whose CRD it has not seen yet)."""


def _ref_index(subjects) -> set[tuple[str, str | None, str]]:
    """(kind, namespace, name) of every object the plan declares, and of every object a named operator creates
    from one of them: cert-manager a Certificate's `secretName`, the Vault Secrets Operator a destination
    Secret, CloudNativePG a Cluster's secrets, a StatefulSet its claims (<template>-<name>-<ordinal>, by
    template name)."""
    known: set[tuple[str, str | None, str]] = set()
    for s in subjects:
        if s.kind is None:
            continue
        ns, name, spec = s.metadata.get("namespace"), s.metadata.get("name"), s.props.get("spec") or {}
        known.add((s.kind, None if s.kind in CLUSTER_SCOPED else ns, name))
        if s.kind == "Certificate" and spec.get("secretName"):
            known.add(("Secret", ns, spec["secretName"]))
        elif s.kind in VAULT_SECRET_KINDS and dig(spec, "destination", "name"):
            known.add(("Secret", ns, spec["destination"]["name"]))
        elif s.kind == "Cluster" and s.type.startswith("kubernetes:postgresql.cnpg.io"):
            known.update(("Secret", ns, f"{name}{suffix}") for suffix in CNPG_CLUSTER_SECRETS)
    return known


def _listeners(subjects) -> dict[tuple[str | None, str], set[str]]:
    return {(s.metadata.get("namespace"), s.metadata.get("name")):
            {str(lst.get("name")) for lst in (s.props.get("spec") or {}).get("listeners") or []}
            for s in subjects if s.kind == "Gateway"}


def _parent_refs(s: Subject) -> Iterator[dict]:
    """Gateway parentRefs of an HTTPRoute, and of an ACME issuer's HTTP-01 solver routes."""
    spec = s.props.get("spec") or {}
    if s.kind == "HTTPRoute":
        yield from spec.get("parentRefs") or []
    elif s.kind in ("Issuer", "ClusterIssuer"):
        for solver in dig(spec, "acme", "solvers") or []:
            yield from dig(solver, "http01", "gatewayHTTPRoute", "parentRefs") or []


def _pod_references(pod: dict) -> Iterator[tuple[str, str]]:
    """(kind, name) of every object a pod spec needs to start (optional references left out)."""
    if pod.get("serviceAccountName") not in (None, "default"):
        yield "ServiceAccount", pod["serviceAccountName"]
    if pod.get("priorityClassName"):
        yield "PriorityClass", pod["priorityClassName"]
    for secret in pod.get("imagePullSecrets") or []:
        yield "Secret", secret.get("name")
    for volume in pod.get("volumes") or []:
        sources = [volume, *(dig(volume, "projected", "sources") or [])]
        for source in sources:
            if (source.get("secret") or {}).get("secretName") and not source["secret"].get("optional"):
                yield "Secret", source["secret"]["secretName"]
            if (source.get("secret") or {}).get("name") and not source["secret"].get("optional"):
                yield "Secret", source["secret"]["name"]
            if (source.get("configMap") or {}).get("name") and not source["configMap"].get("optional"):
                yield "ConfigMap", source["configMap"]["name"]
        if (volume.get("persistentVolumeClaim") or {}).get("claimName"):
            yield "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]
    for container in (pod.get("initContainers") or []) + (pod.get("containers") or []):
        for source in container.get("envFrom") or []:
            for key, kind in (("secretRef", "Secret"), ("configMapRef", "ConfigMap")):
                if source.get(key) and not source[key].get("optional"):
                    yield kind, source[key].get("name")
        for env in container.get("env") or []:
            for key, kind in (("secretKeyRef", "Secret"), ("configMapKeyRef", "ConfigMap")):
                ref = dig(env, "valueFrom", key)
                if ref and not ref.get("optional"):
                    yield kind, ref.get("name")


def _service_ports(service: Subject) -> set[str]:
    return {str(p.get("name")) for p in (service.props.get("spec") or {}).get("ports") or [] if p.get("name")}


def _monitored_namespaces(monitor: Subject, namespaces: set[str | None]) -> set[str | None]:
    selector = (monitor.props.get("spec") or {}).get("namespaceSelector") or {}
    if selector.get("any"):
        return namespaces
    return set(selector.get("matchNames") or [monitor.metadata.get("namespace")])


def _chart_instance(selector: dict, namespaces: set, subjects) -> bool:
    """A selector naming a Helm release of these namespaces by its instance label, when that chart is not
    rendered: it selects the chart's objects, which only a render shows (`plinth check --charts`)."""
    instance = (selector.get("matchLabels") or {}).get("app.kubernetes.io/instance")
    return any(s.type == HELM_RELEASE and s.props.get("name") == instance and s.props.get("namespace") in namespaces
               for s in subjects) and not any(s.rendered and s.name == instance for s in subjects)


def _service(namespace: str, name: str, labels: dict, ports: tuple[str, ...]) -> Subject:
    return Subject("kubernetes:core/v1:Service", name, {
        "metadata": {"namespace": namespace, "name": name, "labels": labels},
        "spec": {"ports": [{"name": port} for port in ports]}})


KUBERNETES_SERVICE = _service("default", "kubernetes", {"component": "apiserver", "provider": "kubernetes"},
                              ("https",))
"""The API server's Service, in every cluster."""
KUBELET_SERVICE_ARG = "--kubelet-service="
KUBELET_SERVICE_LABELS = {"app.kubernetes.io/managed-by": "prometheus-operator", "app.kubernetes.io/name": "kubelet",
                          "k8s-app": "kubelet"}
KUBELET_SERVICE_PORTS = ("https-metrics", "http-metrics", "cadvisor")
"""The kubelets' Service the Prometheus operator maintains when run with --kubelet-service=<ns>/<name>."""


def _provided_services(subjects) -> Iterator[Subject]:
    """Services no plan or chart declares that exist anyway: the API server's, and those operators create."""
    yield KUBERNETES_SERVICE
    for s in subjects:
        for pod in pod_specs(s):
            for container in pod.get("containers") or []:
                for arg in container.get("args") or []:
                    if isinstance(arg, str) and arg.startswith(KUBELET_SERVICE_ARG) and "/" in arg:
                        ns, name = arg.removeprefix(KUBELET_SERVICE_ARG).split("/", 1)
                        yield _service(ns, name, KUBELET_SERVICE_LABELS, KUBELET_SERVICE_PORTS)


def _references_resolve(subjects, platform):
    known = _ref_index(subjects)
    candidates = [s for s in subjects if s.kind == "Service"] + list(_provided_services(subjects))
    listeners = _listeners(subjects)
    for s in subjects:
        ns = s.metadata.get("namespace")
        for ref in _parent_refs(s):
            if ref.get("kind", "Gateway") != "Gateway":
                continue
            gateway = (ref.get("namespace") or ns, ref.get("name"))
            where = f"Gateway {gateway[0]}/{gateway[1]}"
            if gateway not in listeners:
                yield s, f"parentRef names {where}, which the plan does not declare"
            elif ref.get("sectionName") and ref["sectionName"] not in listeners[gateway]:
                yield s, (f"parentRef names listener {ref['sectionName']!r} of {where}, which has only "
                          f"{', '.join(sorted(listeners[gateway]))}")
        if s.kind == "Certificate":
            issuer = (s.props.get("spec") or {}).get("issuerRef") or {}
            kind = issuer.get("kind", "Issuer")
            if (kind, None if kind == "ClusterIssuer" else ns, issuer.get("name")) not in known:
                yield s, f"issuerRef names {kind} {issuer.get('name')}, which the plan does not declare"
        if s.kind == "ServiceMonitor":
            spec = s.props.get("spec") or {}
            scope = _monitored_namespaces(s, {o.metadata.get("namespace") for o in subjects})
            services = [o for o in candidates if o.metadata.get("namespace") in scope
                        and selects(spec.get("selector") or {}, o.labels)]
            if not services and _chart_instance(spec.get("selector") or {}, scope, subjects):
                continue  # the chart's Service: its objects are the chart tier's to check (README)
            if not services:
                yield s, f"selects no Service in {', '.join(sorted(map(str, scope)))}"
            for endpoint in spec.get("endpoints") or []:
                port = endpoint.get("port")
                if services and port and not any(port in _service_ports(o) for o in services):
                    yield s, f"endpoint port {port!r} is not a port name of the Service(s) it selects"
        provided = set(filter(None, str((s.metadata.get("annotations") or {}).get(USER_PROVIDED, "")).split(",")))
        for pod in pod_specs(s):
            for kind, name in _pod_references(pod):
                if (kind, None if kind == "PriorityClass" else ns, name) in known or f"{kind}/{name}" in provided:
                    continue
                if kind == "PriorityClass" and name in BUILTIN_PRIORITY_CLASSES:
                    continue
                yield s, f"its pods use {kind} {name}, which the plan does not declare and no operator creates"


REFERENCES_RESOLVE_POLICY = Policy(
    "references-resolve", "Every reference between objects resolves: an HTTPRoute's (or an ACME "
    "solver's) Gateway parentRef and sectionName name a declared Gateway listener; a Certificate's issuer "
    "exists; a ServiceMonitor selects a Service with its endpoint port names; a pod's ServiceAccount, "
    "Secrets, ConfigMaps, PVCs and PriorityClass are declared or created by a named operator "
    "(cert-manager, Vault Secrets Operator, CloudNativePG).", "declare the referenced object, or fix "
    "the name (take it from the constant of the module that owns it)", MANDATORY, _references_resolve)
