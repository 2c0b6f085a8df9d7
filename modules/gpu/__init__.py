"""GPU enablement (gpu.operator): the NVIDIA GPU Operator with the device-plugin sharing Plinth generates
from the spec (time-slicing or MIG), DCGM metrics and the GPU dashboard; and the GPU node facts (resource,
taint, label) that GPU workloads use. Why each choice: README.md beside this file."""

from __future__ import annotations

import re

import pulumi
import pulumi_kubernetes as k8s
import yaml

from plinth.catalog import ImageRef
from plinth.context import PlatformContext, resource_name
from plinth.modules.cluster.differences import gpu_operator_values
from plinth.modules.gpu.dashboard import gpu_dashboard
from plinth.modules.helm import HelmService, merge_values
from plinth.modules.monitoring.dashboards import dashboard_config_map
from plinth.spec import models
from plinth.vocabulary import GPU, GPU_TAINT

# --- GPU nodes: the one place these facts live (the governance policy `gpu-workloads` holds the taint) ---

GPU_RESOURCE = GPU
"""The device plugin's extended resource (`nvidia.com/gpu`); MIG in mixed strategy adds nvidia.com/mig-*."""
GPU_TAINT_KEY: str = GPU_TAINT["key"]
GPU_TAINT_VALUE: str = GPU_TAINT["value"]
GPU_TAINT_EFFECT: str = GPU_TAINT["effect"]
GPU_NODE_LABEL = "nvidia.com/gpu.present"
"""Set to "true" by the operator on every node where node-feature-discovery finds an NVIDIA GPU."""
GPU_NODE_LABEL_VALUE = "true"


def gpu_taint() -> dict:
    """The taint GPU nodes carry (node pools set it; existing clusters: README), as a Node's spec.taints item."""
    return {"key": GPU_TAINT_KEY, "value": GPU_TAINT_VALUE, "effect": GPU_TAINT_EFFECT}


def gpu_toleration() -> dict:
    """What a pod on GPU nodes tolerates: the GPU taint, whatever its value."""
    return {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": GPU_TAINT_EFFECT}


def gpu_node_selector() -> dict[str, str]:
    return {GPU_NODE_LABEL: GPU_NODE_LABEL_VALUE}


# --- sharing ------------------------------------------------------------------------------------------

DEVICE_PLUGIN_CONFIG = "plinth-device-plugin-config"
"""The ConfigMap (namespace gpu-operator) holding the device plugin's time-slicing configuration."""
TIME_SLICING = "time-slicing"
"""Its key: the configuration every GPU node uses (devicePlugin.config.default)."""
MIG_CONFIG_LABEL = "nvidia.com/mig.config"
"""The node label MIG manager reads: which mig-parted configuration to apply to the node's GPUs."""
MIG_DISABLED = "all-disabled"
MIG_PROFILE = re.compile(r"^all-(?:\d+g\.\d+gb(?:\.me)?|balanced)$")
"""The mig-parted configurations MIG manager generates for every MIG-capable GPU: one size on every GPU
(all-1g.10gb, all-3g.40gb, all-1g.10gb.me with media extensions) or `all-balanced` (sizes mixed)."""
NVIDIA_PCI_VENDOR = "10de"
GPU_PCI_CLASSES = ("0300", "0302")
"""Display and 3D controllers: the PCI classes the operator itself treats as GPUs."""


def mig_strategy(sharing) -> str:
    """single: one MIG size, still advertised as nvidia.com/gpu; mixed: each size its own nvidia.com/mig-<size>."""
    if sharing.type != "mig":
        return "none"
    return "mixed" if sharing.mig_profile == "all-balanced" else "single"


def time_slicing_config(replicas: int) -> str:
    """The device plugin's configuration file: every GPU advertised as `replicas` time-shared GPUs."""
    config = {"version": "v1",
              "sharing": {"timeSlicing": {"resources": [{"name": GPU_RESOURCE, "replicas": replicas}]}}}
    return yaml.safe_dump(config, sort_keys=False)


# --- images -------------------------------------------------------------------------------------------

IMAGE_BLOCKS: dict[tuple[str, ...], str] = {
    ("operator",): "gpu-operator",
    ("validator",): "gpu-operator",
    ("nodeStatusExporter",): "gpu-operator",
    ("driver",): "driver",
    ("driver", "manager"): "k8s-driver-manager",
    ("toolkit",): "container-toolkit",
    ("devicePlugin",): "k8s-device-plugin",
    ("gfd",): "k8s-device-plugin",
    ("dcgm",): "dcgm",
    ("dcgmExporter",): "dcgm-exporter",
    ("migManager",): "k8s-mig-manager",
    ("gds",): "nvidia-fs",
    ("gdrcopy",): "gdrdrv",
    ("vgpuManager", "driverManager"): "k8s-driver-manager",
    ("vfioManager",): "k8s-driver-manager",
    ("vfioManager", "driverManager"): "k8s-driver-manager",
    ("vgpuDeviceManager",): "vgpu-device-manager",
    ("ccManager",): "k8s-cc-manager",
    ("sandboxDevicePlugin",): "kubevirt-gpu-device-plugin",
    ("kataSandboxDevicePlugin",): "nvidia-sandbox-device-plugin",
}
"""Every values block naming an image as repository/image/version, and its catalog image (by name).
Not here: vgpuManager's own image (licensed, yours to supply) and kataManager (no image)."""
NFD_IMAGE = "node-feature-discovery"


def _triple(ref: str, ctx: PlatformContext) -> dict:
    """An image in the operator's form: repository (registry and path), image (the last segment), version."""
    image = ImageRef.parse(ref).mirrored(ctx.mirror_registry)
    path, _, name = image.repository.rpartition("/")
    return {"repository": f"{image.registry}/{path}", "image": name, "version": image.tag}


class GpuOperator(HelmService):
    """The NVIDIA GPU Operator (plinth:gpu:GpuOperator)."""

    type_token = "plinth:gpu:GpuOperator"
    chart_key = "gpu-operator"
    spec_path = ("gpu", "operator")
    # The driver, container toolkit, device plugin, DCGM and MIG manager are node agents that run
    # privileged with host paths, PID and devices (README: Pod Security).
    pod_security = "privileged"

    @classmethod
    def catalog(cls) -> dict[str, str]:
        return {ImageRef.parse(ref).name: ref for ref in cls.chart().images}

    @classmethod
    def images(cls, block: models.GpuOperator, ctx: PlatformContext) -> tuple[str, ...]:
        # The driver image only when the operator installs the driver; NFD only with its subchart on.
        nfd = block.values.get("nfd")
        nfd_on = not (isinstance(nfd, dict) and nfd.get("enabled") is False)
        return tuple(ref for name, ref in cls.catalog().items()
                     if (block.driver or name != "driver") and (nfd_on or name != NFD_IMAGE))

    @classmethod
    def owned_values(cls, block: models.GpuOperator, ctx: PlatformContext) -> dict:
        catalog, secrets = cls.catalog(), list(ctx.image_pull_secrets)
        values: dict = {}
        for path, name in IMAGE_BLOCKS.items():
            node = values
            for key in path:
                node = node.setdefault(key, {})
            node.update(_triple(catalog[name], ctx))
            if len(path) == 1:
                node["imagePullSecrets"] = secrets
        nfd = ImageRef.parse(catalog[NFD_IMAGE]).mirrored(ctx.mirror_registry)
        sharing = block.sharing
        time_slicing = sharing.type == "timeSlicing"
        values["driver"]["enabled"] = block.driver
        if not block.driver:
            # Named by nothing when nothing runs it: the ClusterPolicy would otherwise list an image (with a
            # tag that exists only per OS) that no node pulls.
            values["driver"].update({"repository": "", "image": "", "version": ""})
        values["devicePlugin"]["config"] = {"name": DEVICE_PLUGIN_CONFIG if time_slicing else "",
                                            "default": TIME_SLICING if time_slicing else ""}
        values["mig"] = {"strategy": mig_strategy(sharing)}
        # all-disabled or "" (the CRD allows nothing else): with it the operator labels unlabelled MIG-capable
        # nodes all-disabled; with a profile the NodeFeatureRule below labels them (README: MIG).
        values["migManager"]["config"] = {"default": "" if sharing.type == "mig" else MIG_DISABLED}
        values["dcgmExporter"]["serviceMonitor"] = {
            "enabled": ctx.monitoring,
            # The node each exporter runs on, as `node` (what the GPU dashboard groups by).
            "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node",
                             "action": "replace"}],
        }
        values["daemonsets"] = {"tolerations": [gpu_toleration()]}
        # The namespace's Pod Security labels are Plinth's: the operator must not relabel it.
        values["psa"] = {"enabled": False}
        # Plinth configures sharing through the ClusterPolicy; the experimental DRA stack stays off.
        values["clusterPolicy"] = {"deployCR": True}
        values["gpuCluster"] = {"deployCR": False}
        values = merge_values(values, gpu_operator_values(ctx.target))
        values["node-feature-discovery"] = {
            "image": {"repository": f"{nfd.registry}/{nfd.repository}", "tag": nfd.tag},
            "imagePullSecrets": [{"name": s} for s in secrets],
            # Leader election (on with more than one replica): a second master keeps labelling nodes through
            # a drain. The chart fixes the operator's own Deployment at one replica (see policies' exemptions).
            "master": {"replicaCount": 2 if ctx.prod_like else 1, "podDisruptionBudget": {"enable": ctx.prod_like}},
            "worker": {"tolerations": [
                {"key": "node-role.kubernetes.io/control-plane", "operator": "Equal", "value": "",
                 "effect": "NoSchedule"},
                gpu_toleration(),
            ]},
        }
        return values

    def prerequisites(self, name: str, block: models.GpuOperator, ctx: PlatformContext,
                      opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        if block.sharing.type != "timeSlicing":
            return []
        # The device plugin reads it when it starts on a node: it exists before the ClusterPolicy.
        return [k8s.core.v1.ConfigMap(
            resource_name(name, "device-plugin-config"),
            metadata=ctx.metadata(DEVICE_PLUGIN_CONFIG, name, namespace=self.chart().namespace),
            data={TIME_SLICING: time_slicing_config(block.sharing.replicas)},
            opts=opts,
        )]

    def objects(self, name: str, block: models.GpuOperator, ctx: PlatformContext, opts: pulumi.ResourceOptions) -> None:
        if block.sharing.type == "mig":
            # NFD (its CRD comes with the release) labels every NVIDIA GPU node with the profile; MIG
            # manager applies it on MIG-capable GPUs and ignores the label elsewhere.
            k8s.apiextensions.CustomResource(
                resource_name(name, "mig-config"),
                api_version="nfd.k8s-sigs.io/v1alpha1",
                kind="NodeFeatureRule",
                metadata=ctx.metadata(f"plinth-{ctx.platform}-mig-config", name),
                spec={"rules": [{
                    "name": "plinth MIG profile",
                    "labels": {MIG_CONFIG_LABEL: block.sharing.mig_profile},
                    "matchFeatures": [{"feature": "pci.device", "matchExpressions": {
                        "vendor": {"op": "In", "value": [NVIDIA_PCI_VENDOR]},
                        "class": {"op": "In", "value": list(GPU_PCI_CLASSES)},
                    }}],
                }]},
                opts=opts,
            )
        if ctx.monitoring:
            dashboard_config_map(resource_name(name, "dashboard"), "gpu", gpu_dashboard(ctx.platform), name, ctx,
                                 opts)
