"""GPU workloads and served models: GPUs as limits behind the GPU taint, model servers with probes,
a PodDisruptionBudget and alerts."""

from __future__ import annotations

import re

from plinth.governance.policies.core import MANDATORY, PDB, Policy, pod_specs, selects
from plinth.vocabulary import GPU, GPU_TAINT, MODEL_LABEL, REGISTERED_MODEL_LABEL, REGISTERED_VERSION_LABEL

PROMETHEUS_RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"


def _is_gpu(resource: str) -> bool:
    return resource == GPU or resource.startswith("nvidia.com/mig-")


def _tolerates_gpu_taint(toleration: dict) -> bool:
    """Kubernetes' toleration matching against the GPU taint: an empty effect matches every effect, an empty
    key with `Exists` every key, `Exists` any value, `Equal` (the default) only `present`."""
    if toleration.get("effect") not in (None, "", GPU_TAINT["effect"]):
        return False
    exists = toleration.get("operator") == "Exists"
    if not toleration.get("key"):
        return exists
    return toleration["key"] == GPU_TAINT["key"] and (exists or toleration.get("value") == GPU_TAINT["value"])


def _gpu_workloads(subjects, platform):
    """GPUs as limits (the device plugin allocates by limit) with the GPU toleration; no toleration without a GPU,
    except on DaemonSets (node agents such as the device plugin run on GPU nodes by design)."""
    taint = f"{GPU}={GPU_TAINT['value']}:{GPU_TAINT['effect']}"
    for s in subjects:
        for pod in pod_specs(s):
            wants = False
            for container in (pod.get("initContainers") or []) + (pod.get("containers") or []):
                resources = container.get("resources") or {}
                requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
                gpus = sorted({r for r in (*requests, *limits) if _is_gpu(r)})
                wants = wants or bool(gpus)
                for resource in gpus:
                    if resource not in limits:
                        yield s, f"container {container.get('name')} requests {resource} without a limit"
            tolerates = any(_tolerates_gpu_taint(t) for t in pod.get("tolerations") or [] if isinstance(t, dict))
            if wants and not tolerates:
                yield s, f"asks for a GPU without tolerating the taint {taint}"
            elif tolerates and not wants and s.kind != "DaemonSet":
                yield s, f"tolerates the taint {taint} without asking for a GPU: it would squat GPU nodes"


def _names_model(rule: dict, model: str) -> bool:
    if model in {str(v) for v in (rule.get("labels") or {}).values()}:
        return True
    return re.search(rf"(?<![\w.-]){re.escape(model)}(?![\w.-])", str(rule.get("expr") or "")) is not None


def _served_model_reliability(subjects, platform):
    budgets = [s for s in subjects if s.type == PDB]
    rules = [s for s in subjects if s.type == PROMETHEUS_RULE]
    for s in subjects:
        if s.kind != "Deployment":
            continue
        template = (s.props.get("spec") or {}).get("template") or {}
        pod_labels = (template.get("metadata") or {}).get("labels") or {}
        model = s.labels.get(MODEL_LABEL) or pod_labels.get(MODEL_LABEL)
        if not model:
            continue
        ns = s.metadata.get("namespace")
        for container in (template.get("spec") or {}).get("containers") or []:
            missing = [probe for probe in ("livenessProbe", "readinessProbe") if not container.get(probe)]
            if missing:
                yield s, f"container {container.get('name')} has no {' or '.join(missing)}"
        if not any(b.metadata.get("namespace") == ns and selects((b.props.get("spec") or {}).get("selector"),
                                                                   pod_labels) for b in budgets):
            yield s, f"no PodDisruptionBudget in namespace {ns} selects its pods"
        if not any(r.metadata.get("namespace") == ns and _names_model(rule, model)
                   for r in rules for group in (r.props.get("spec") or {}).get("groups") or []
                   for rule in group.get("rules") or []):
            yield s, f"no PrometheusRule in namespace {ns} has a rule naming the model {model}"


GPU_WORKLOADS_POLICY = Policy(
    "gpu-workloads", f"Pods that ask for GPUs ({GPU}, nvidia.com/mig-*) set them as limits and tolerate the "
    f"GPU taint {GPU}=present:NoSchedule; other pods (DaemonSets aside) do not tolerate it.",
    "set GPUs under resources.limits and add the GPU toleration only to pods that ask for a GPU",
    MANDATORY, _gpu_workloads)
SERVED_MODEL_RELIABILITY_POLICY = Policy(
    "served-model-reliability", f"Every model server (a Deployment labelled {MODEL_LABEL}, the serving "
    "module's label) has liveness and readiness probes, a PodDisruptionBudget selecting its pods and a "
    "PrometheusRule alerting on the model.", "keep the serving module's probes, PodDisruptionBudget and "
    "PrometheusRule for the model", MANDATORY, _served_model_reliability)


def _served_model_lineage(subjects, platform):
    """Prod with serving.lineageRequired: every model server runs a registered version named by its number."""
    if platform.environment != "prod" or not platform.lineage_required:
        return
    for s in subjects:
        if s.kind != "Deployment" or MODEL_LABEL not in s.labels:
            continue
        version = s.labels.get(REGISTERED_VERSION_LABEL, "")
        if REGISTERED_MODEL_LABEL not in s.labels:
            yield s, "serves files that are not a version registered in MLflow: nothing traces them to a run"
        elif not version.isdigit():
            yield s, f"serves the registered version alias {version!r}: an alias moves, so the version it runs is " \
                     "not fixed by the spec"


SERVED_MODEL_LINEAGE_POLICY = Policy(
    "served-model-lineage", f"In prod, with serving.lineageRequired: every model server (a Deployment labelled "
    f"{MODEL_LABEL}) runs a version of a model registered in MLflow, named by its version number "
    f"({REGISTERED_MODEL_LABEL}, {REGISTERED_VERSION_LABEL}), so `plinth lineage` traces it to its run, params, "
    "metrics and datasets.", "register the model in MLflow and serve it with `registry` and version numbers",
    MANDATORY, _served_model_lineage)
