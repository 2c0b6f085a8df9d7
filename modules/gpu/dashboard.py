"""The GPU dashboard: DCGM exporter metrics per node and GPU, in the platform dashboards' format."""

from __future__ import annotations

# One JSON layout for every platform dashboard (uid, schema version, datasource, stable key order).
from plinth.modules.monitoring.dashboards import _dashboard, _panel

UID = "plinth-gpu"
BY_GPU = "node, gpu"
LEGEND = "{{node}} / GPU {{gpu}}"
"""`node` is the scraped pod's node (the ServiceMonitor's relabeling), `gpu` DCGM's device index."""


def gpu_dashboard(platform: str) -> str:
    """Utilization, framebuffer memory, temperature and power of every GPU, and a fleet summary."""
    panels = [
        _panel(1, "GPUs reporting", [("count(DCGM_FI_DEV_GPU_UTIL)", "GPUs")], 0, 0, "stat"),
        _panel(2, "Mean GPU utilization", [("avg(DCGM_FI_DEV_GPU_UTIL)", "utilization")], 12, 0, "stat",
               unit="percent"),
        _panel(3, "GPU utilization", [(f"avg by ({BY_GPU}) (DCGM_FI_DEV_GPU_UTIL)", LEGEND)], 0, 8,
               unit="percent"),
        # Framebuffer figures are MiB.
        _panel(4, "Memory used", [(f"sum by ({BY_GPU}) (DCGM_FI_DEV_FB_USED) * 1048576", LEGEND)], 12, 8,
               unit="bytes"),
        _panel(5, "Memory used / total", [(
            f"sum by ({BY_GPU}) (DCGM_FI_DEV_FB_USED) / "
            f"(sum by ({BY_GPU}) (DCGM_FI_DEV_FB_USED) + sum by ({BY_GPU}) (DCGM_FI_DEV_FB_FREE))", LEGEND)],
               0, 16, unit="percentunit"),
        _panel(6, "Temperature", [(f"max by ({BY_GPU}) (DCGM_FI_DEV_GPU_TEMP)", LEGEND)], 12, 16,
               unit="celsius"),
        _panel(7, "Power draw", [(f"sum by ({BY_GPU}) (DCGM_FI_DEV_POWER_USAGE)", LEGEND)], 0, 24, unit="watt"),
    ]
    return _dashboard(UID, f"Plinth / {platform} / GPUs", panels, ["gpu", "plinth"])
