"""The NVIDIA GPU Operator's real chart (v26.7.0, with its node-feature-discovery subchart) rendered with
Plinth's values, air-gapped, in each sharing mode: every object valid against the Kubernetes schema or its
CRD's (the chart ships its CRDs), every image — the Deployments' and Jobs', and those the operator composes
from the ClusterPolicy's repository/image/version blocks — in the catalog and from the mirror, the sharing
configuration and tolerations as Plinth set them, and two renders byte-identical."""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest
import yaml

from support import CHARTS_DIR, platform_spec
from validation import chart_member, crd_schemas, images_in, validation_failures
from plinth.catalog import CHARTS, mirror_image
from plinth.engine.charts import chart_archive, render_charts
from plinth.engine.offline import plan
from plinth.mirror import mirror_list
from plinth.modules.gpu import DEVICE_PLUGIN_CONFIG, IMAGE_BLOCKS, TIME_SLICING, gpu_toleration
from plinth.render import kubernetes_objects
from plinth.spec.rules import check_rules

KUBE = "1.34"
MIRROR = "mirror.corp.internal/plinth"
PULL_SECRET = "mirror-pull"
MODES = {"time-slicing": {"sharing": {"type": "timeSlicing", "replicas": 4}},
         "mig-balanced": {"sharing": {"type": "mig", "migProfile": "all-balanced"}},
         "driver": {"driver": True}}
DRIVER = "nvcr.io/nvidia/driver:595.91.07"
POD_KINDS = {"Deployment", "DaemonSet", "Job"}


@cache
def _planned(mode: str):
    spec = platform_spec({
        "metadata": {"environment": "prod"},
        "identity": {"reason": "the chart tier renders the GPU operator; sign-on has its own tests"},
        "charts": {"source": str(CHARTS_DIR)},
        "monitoring": {"enabled": True},
        "airgap": {"enabled": True, "mirror": {"registry": MIRROR, "charts": str(CHARTS_DIR),
                                               "pullSecret": {"username": "robot"}}},
        "gpu": {"operator": {"enabled": True, **MODES[mode]}},
        "backups": {"enabled": False, "reason": "the chart tier renders the GPU operator"},
    })
    assert check_rules(spec) == []
    return spec, plan(spec, "gpu-chart")


def _release(mode: str):
    _, result = _planned(mode)
    [release] = [r for r in result.resources if r.type.endswith("helm.sh/v3:Release") and r.name == "gpu-operator"]
    return release


@cache
def _rendered(charts_dir: Path, mode: str, attempt: int = 1) -> tuple[dict, ...]:
    """The gpu-operator release alone (`attempt` keeps two renders apart in the cache)."""
    _, result = _planned(mode)
    only = replace(result, resources=(_release(mode),))
    [rendered] = render_charts(only, KUBE, charts_dir)
    assert rendered.note is None and rendered.objects
    return rendered.objects


@pytest.fixture(params=sorted(MODES))
def mode(request) -> str:
    return request.param


@pytest.fixture
def objects(mode, charts_dir, helm) -> tuple[dict, ...]:
    return _rendered(charts_dir, mode)


def _policy(objects) -> dict:
    [policy] = [o for o in objects if o["kind"] == "ClusterPolicy"]
    return policy["spec"]


def _operand_images(spec: dict) -> tuple[set[str], dict[str, dict]]:
    """The images the operator pulls for the ClusterPolicy's blocks (joined as its ImagePath does), and the
    blocks that name an image without a repository (which it would take as a complete reference)."""
    joined, bare = set(), {}

    def walk(node, path):
        if not isinstance(node, dict):
            return
        if isinstance(node.get("image"), str):
            if node.get("repository"):
                sep = "@" if str(node["version"]).startswith("sha256:") else ":"
                joined.add(f"{node['repository']}/{node['image']}{sep}{node['version']}")
            else:
                bare[".".join(path)] = node
        for key, value in node.items():
            walk(value, (*path, key))

    walk(spec, ())
    return joined, bare


def test_two_renders_of_the_same_plan_are_byte_identical(mode, charts_dir, helm):
    first, second = (yaml.safe_dump_all(_rendered(charts_dir, mode, attempt), sort_keys=True) for attempt in (1, 2))
    assert first == second


def test_every_object_validates_against_kubernetes_and_crd_schemas(mode, objects):
    _, result = _planned(mode)
    crds = crd_schemas([type("Rendered", (), {"objects": objects})()])
    mine = [obj for _, obj in kubernetes_objects(result)
            if obj["metadata"].get("namespace") == "gpu-operator" or obj["metadata"]["name"] == "gpu-operator"
            or obj["kind"] == "NodeFeatureRule" or obj["metadata"]["name"] == "plinth-dashboard-gpu"]
    kinds = {o["kind"] for o in mine}
    assert {"Namespace", "NetworkPolicy", "Secret", "ConfigMap"} <= kinds
    assert ("NodeFeatureRule" in kinds) == (mode == "mig-balanced")
    assert validation_failures([*objects, *mine], f"{KUBE}.0", crds) == []
    # The custom resources were checked against their CRDs, not skipped.
    assert {("nvidia.com/v1", "ClusterPolicy"), ("nfd.k8s-sigs.io/v1alpha1", "NodeFeatureRule")} <= set(crds)


def test_every_rendered_image_is_in_the_catalog_and_mirrored(mode, objects):
    spec, _ = _planned(mode)
    plain = set().union(*(images_in(o) for o in objects if o["kind"] not in ("ClusterPolicy",
                                                                             "CustomResourceDefinition")))
    joined, bare = _operand_images(_policy(objects))
    catalog = {mirror_image(ref, MIRROR) for ref in CHARTS["gpu-operator"].images}
    # The driver image is named (and listed) only when the operator installs the driver.
    expected = catalog if mode == "driver" else catalog - {mirror_image(DRIVER, MIRROR)}
    assert plain | joined == expected
    # The one image without a repository is vGPU's own (licensed, yours to build), and it is off.
    assert list(bare) == ["vgpuManager"] and bare["vgpuManager"]["enabled"] is False
    # What `plinth images` lists is exactly what renders, each at its mirror name.
    assert {i.target for i in mirror_list(spec).images if i.service == "gpu-operator"} == expected


def test_every_image_block_of_the_chart_is_set_by_plinth(charts_dir, helm):
    """A chart upgrade that adds an image block fails here until IMAGE_BLOCKS names it."""
    archive = chart_archive(_release("time-slicing"), charts_dir)
    defaults = yaml.safe_load(chart_member(archive, "values.yaml"))
    found = set()

    def walk(node, path):
        if isinstance(node, dict):
            if "image" in node and "repository" in node:
                found.add(path)
            for key, value in node.items():
                walk(value, (*path, key))

    walk(defaults, ())
    # vgpuManager: licensed, no image to set; draDriver: the GPUCluster (DRA) stack, which Plinth keeps off.
    assert found == set(IMAGE_BLOCKS) | {("vgpuManager",), ("draDriver",)}
    assert not [o for o in _rendered(charts_dir, "time-slicing") if o["kind"] == "GPUCluster"]


def test_every_pod_and_operand_pulls_with_the_mirror_secret(objects):
    pods = [o["spec"]["template"]["spec"] for o in objects if o["kind"] in POD_KINDS]
    assert len(pods) >= 7  # operator, NFD master/worker/gc, and the hooks
    assert [p for p in pods if {"name": PULL_SECRET} not in (p.get("imagePullSecrets") or [])] == []
    spec = _policy(objects)
    operands = [key for key, block in spec.items() if isinstance(block, dict) and block.get("repository")]
    # Every top-level block but the operator's (a Deployment) and, unless installed, the driver's.
    assert len(operands) == len([p for p in IMAGE_BLOCKS if len(p) == 1]) - (1 if spec["driver"]["enabled"] else 2)
    assert [k for k in operands if spec[k].get("imagePullSecrets") != [PULL_SECRET]] == []


def test_the_cluster_policy_carries_plinths_sharing_and_tolerations(mode, objects):
    spec = _policy(objects)
    assert spec["daemonsets"]["tolerations"] == [gpu_toleration()]
    [worker] = [o for o in objects if o["kind"] == "DaemonSet" and "worker" in o["metadata"]["name"]]
    assert gpu_toleration() in worker["spec"]["template"]["spec"]["tolerations"]
    assert spec["driver"]["enabled"] is (mode == "driver")
    assert spec["psa"] == {"enabled": False}
    assert spec["dcgmExporter"]["serviceMonitor"]["enabled"] is True
    if mode == "time-slicing":
        assert spec["devicePlugin"]["config"] == {"name": DEVICE_PLUGIN_CONFIG, "default": TIME_SLICING}
    else:
        assert "config" not in spec["devicePlugin"]
    if mode == "mig-balanced":
        assert spec["mig"] == {"strategy": "mixed"}
        assert spec["migManager"]["config"]["default"] == ""
    else:
        assert spec["mig"] == {"strategy": "none"}
        assert spec["migManager"]["config"]["default"] == "all-disabled"
    if mode == "driver":
        assert (spec["driver"]["repository"], spec["driver"]["image"], spec["driver"]["version"]) == (
            f"{MIRROR}/nvidia", "driver", "595.91.07")
    else:
        assert not {"repository", "image", "version"} & set(spec["driver"])
