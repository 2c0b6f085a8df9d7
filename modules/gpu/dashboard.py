"""The GPU dashboard: DCGM exporter metrics per node and GPU, in the platform dashboards' format."""

from __future__ import annotations

from plinth.modules.monitoring.dashboards import Panel, dashboard, grid

UID = "plinth-gpu"
BY_GPU = "node, gpu"
LEGEND = "{{node}} / GPU {{gpu}}"
"""`node` is the scraped pod's node (the ServiceMonitor's relabeling), `gpu` DCGM's device index."""


def gpu_dashboard(platform: str) -> str:
    """Utilization, framebuffer memory, temperature and power of every GPU, and a fleet summary."""
    panels = [
        Panel("GPUs reporting", [("count(DCGM_FI_DEV_GPU_UTIL)", "GPUs")], kind="stat"),
        Panel("Mean GPU utilization", [("avg(DCGM_FI_DEV_GPU_UTIL)", "utilization")], unit="percent", kind="stat"),
        Panel("GPU utilization", [(f"avg by ({BY_GPU}) (DCGM_FI_DEV_GPU_UTIL)", LEGEND)], unit="percent"),
        # Framebuffer figures are MiB.
        Panel("Memory used", [(f"sum by ({BY_GPU}) (DCGM_FI_DEV_FB_USED) * 1048576", LEGEND)], unit="bytes"),
        Panel("Memory used / total", [(
            f"sum by ({BY_GPU}) (DCGM_FI_DEV_FB_USED) / "
            f"(sum by ({BY_GPU}) (DCGM_FI_DEV_FB_USED) + sum by ({BY_GPU}) (DCGM_FI_DEV_FB_FREE))", LEGEND)],
              unit="percentunit"),
        Panel("Temperature", [(f"max by ({BY_GPU}) (DCGM_FI_DEV_GPU_TEMP)", LEGEND)], unit="celsius"),
        Panel("Power draw", [(f"sum by ({BY_GPU}) (DCGM_FI_DEV_POWER_USAGE)", LEGEND)], unit="watt"),
    ]
    return dashboard(UID, f"Plinth / {platform} / GPUs", grid(panels), ["gpu", "plinth"])
