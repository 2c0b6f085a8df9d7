"""What the chart tests check rendered objects with, kept in one place so every chart is held to the same bar.

Chart archives are read as packaged, values are coalesced as helm does, objects validate against their
CRD's schema or Kubernetes' own, pod specs are held to Pod Security `restricted`, and images are found
wherever charts and operators put them.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

from plinth.engine.charts import render_charts
from plinth.engine.offline import plan
from plinth.plan import Plan
from plinth.spec.models import PlatformSpec
from plinth.spec.rules import check_rules

IMAGE_ARG = re.compile(r"^--[a-z-]*image[a-z-]*=(.+)$")
# Pod Security `restricted` also allows `csi` and `ephemeral`; no chart here needs them, so they stay out.
RESTRICTED_VOLUMES = {"configMap", "secret", "emptyDir", "persistentVolumeClaim", "projected", "downwardAPI"}


def chart_member(archive: Path, name: str) -> str | None:
    """A file of a packaged chart by its path inside the chart (None when absent), without unpacking it."""
    with tarfile.open(archive) as tar:
        top = tar.getnames()[0].split("/")[0]
        try:
            return tar.extractfile(f"{top}/{name}").read().decode()
        except KeyError:
            return None


def coalesce(defaults: dict, values: dict) -> dict:
    """The values helm validates: the chart's defaults with the given values merged over them, maps deeply."""
    out = dict(defaults)
    for key, value in values.items():
        out[key] = coalesce(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def crd_schemas(rendered_items: Iterable, extra_objects: Iterable[dict] = ()) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> openAPIV3Schema of every CRD among the rendered items' objects and `extra_objects`
    (CRDs no chart renders, such as those a controller registers when it starts)."""
    schemas = {}
    for obj in [*(o for item in rendered_items for o in item.objects), *extra_objects]:
        if obj.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = obj["spec"]["group"], obj["spec"]["names"]["kind"]
        for version in obj["spec"]["versions"]:
            schema = version.get("schema", {}).get("openAPIV3Schema")
            if schema:
                schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


def validate(obj: dict, kube_version: str, crds: dict) -> None:
    """Raise unless `obj` matches its CRD's schema or, for built-in kinds, Kubernetes' OpenAPI schema (strict:
    an unknown field fails, as the API server's field validation would)."""
    key = (obj["apiVersion"], obj["kind"])
    if key in crds:
        jsonschema.Draft7Validator(crds[key]).validate(obj)  # OpenAPI v3 schemas; Go regexes are not checked
    else:
        kubernetes_validate.validate(obj, kube_version, strict=True)


def validation_failures(objects: Iterable[dict], kube_version: str, crds: dict) -> list[str]:
    """One line per object `validate` refuses, so a test reports every failure at once."""
    failures = []
    for obj in objects:
        try:
            validate(obj, kube_version, crds)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError,
                kubernetes_validate.SchemaNotFoundError) as exc:
            failures.append(f"{obj['kind']} {obj['metadata'].get('name')}: {str(exc).splitlines()[0][:300]}")
    return failures


def restricted_problems(pod_spec: dict) -> list[str]:
    """What the Pod Security `restricted` level would refuse in a pod spec (container settings may come from
    the pod's securityContext, as the admission check allows); stricter only where noted."""
    problems = [field for field in ("hostNetwork", "hostPID", "hostIPC") if pod_spec.get(field)]
    for volume in pod_spec.get("volumes") or []:
        problems += [f"volume {volume['name']}: {kind}" for kind in volume if kind not in RESTRICTED_VOLUMES | {"name"}]
    pod_ctx = pod_spec.get("securityContext") or {}
    for container in pod_spec.get("initContainers", []) + pod_spec.get("containers", []):
        ctx = container.get("securityContext") or {}
        name = container["name"]
        if ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot")) is not True:
            problems.append(f"{name}: runAsNonRoot")
        if ctx.get("runAsUser", pod_ctx.get("runAsUser")) == 0:
            problems.append(f"{name}: runAsUser 0")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation")
        capabilities = ctx.get("capabilities") or {}
        if capabilities.get("drop") != ["ALL"]:
            problems.append(f"{name}: capabilities.drop")
        if capabilities.get("add"):  # the level allows NET_BIND_SERVICE; no platform pod needs it
            problems.append(f"{name}: capabilities.add")
        seccomp = (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: seccompProfile")
    return problems


def images_in(obj, found: set[str] | None = None, key: str | None = None) -> set[str]:
    """Every image reference in an object, wherever charts and operators put one: `image:` fields,
    `imageName` (CloudNativePG's operand), `--*image*=` arguments and `*_IMAGE*` env values (helper images)."""
    found = set() if found is None else found
    if isinstance(obj, dict) and obj.get("enabled") is False:
        return found  # a switched-off operand block (the GPU operator's ClusterPolicy) pulls nothing
    if isinstance(obj, dict) and isinstance(obj.get("image"), str) and "version" in obj:
        # The GPU operator's {repository, image, version} blocks, joined as the operator does; a block
        # without a repository is switched off or user-supplied (vGPU) and pulls nothing.
        if obj.get("repository"):
            sep = "@" if str(obj["version"]).startswith("sha256:") else ":"
            found.add(f"{obj['repository']}/{obj['image']}{sep}{obj['version']}")
        obj = {k: v for k, v in obj.items() if k != "image"}
    if isinstance(obj, dict):
        name = obj.get("name")
        if isinstance(name, str) and "_IMAGE" in name and isinstance(obj.get("value"), str):
            found.add(obj["value"])
        for k, v in obj.items():
            if k in ("image", "imageName") and isinstance(v, str):
                found.add(v)
            else:
                images_in(v, found, k)
    elif isinstance(obj, list):
        for v in obj:
            images_in(v, found, key)
    elif isinstance(obj, str) and key in ("args", "command"):
        match = IMAGE_ARG.match(obj)
        if match:
            found.add(match.group(1))
    return found


def release_objects(rendered: Iterable, release: str) -> tuple[dict, ...]:
    """The objects one release rendered (it must have rendered some)."""
    [item] = [r for r in rendered if r.resource.name == release]
    assert item.note is None and item.objects
    return item.objects


def dump(objects) -> str:
    """Objects as YAML in a stable key order: what two renders are compared by."""
    return yaml.safe_dump_all(objects, sort_keys=True)


class PlannedRender:
    """One spec of a chart test, planned once and rendered once per `attempt` (two attempts stay apart in the
    cache, so two renders of the same plan can be compared)."""

    def __init__(self, make_spec: Callable[[], PlatformSpec], source: str, kube: str = "1.34"):
        self.make_spec, self.source, self.kube = make_spec, source, kube

    @cache
    def planned(self) -> tuple[PlatformSpec, Plan]:
        spec = self.make_spec()
        assert check_rules(spec) == []
        return spec, plan(spec, self.source)

    @cache
    def rendered(self, charts_dir: Path, attempt: int = 1) -> list:
        return render_charts(self.planned()[1], self.kube, charts_dir)
