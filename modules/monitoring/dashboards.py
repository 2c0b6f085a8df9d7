"""The platform's Grafana dashboards, as code: generated JSON, stable key order, no timestamps.

One builder for every dashboard of the platform (this module's, the GPU module's, serving's): panels from
a short description (`Panel`), laid out on Grafana's 24-column grid, and the ConfigMap Grafana's sidecar
loads them from."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import PLATFORM_NAMESPACES
from plinth.context import PlatformContext

DASHBOARD_LABEL = "grafana_dashboard"
"""The label (value "1") Grafana's sidecar finds dashboard ConfigMaps by."""
PANEL_HEIGHT = 8


@dataclass(frozen=True)
class Panel:
    """One Prometheus panel: its title, its queries as (PromQL, legend), Grafana's unit and panel type."""

    title: str
    queries: list[tuple[str, str]]
    unit: str = "short"
    kind: str = "timeseries"


def grid(panels: list[Panel], first_id: int = 1, top: int = 0, width: int = 12) -> list[dict]:
    """Panels left to right, then top to bottom, `width` columns each, numbered from `first_id`."""
    per_row = 24 // width
    return [{
        "id": first_id + index,
        "title": panel.title,
        "type": panel.kind,
        "datasource": {"type": "prometheus", "uid": "prometheus"},
        "gridPos": {"h": PANEL_HEIGHT, "w": width, "x": (index % per_row) * width,
                    "y": top + (index // per_row) * PANEL_HEIGHT},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
                    for i, (expr, legend) in enumerate(panel.queries)],
    } for index, panel in enumerate(panels)]


def row(panel_id: int, title: str, top: int) -> dict:
    """A row header across the whole width (one line high) above the panels that follow it."""
    return {"id": panel_id, "type": "row", "title": title, "collapsed": False,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": top}, "panels": []}


def dashboard(uid: str, title: str, panels: list[dict], tags: list[str]) -> str:
    doc = {
        "uid": uid,
        "title": title,
        "tags": sorted(tags),
        "editable": False,
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "1m",
        "panels": panels,
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def dashboard_config_map(resource: str, key: str, body: str, component: str, ctx: PlatformContext,
                         opts: pulumi.ResourceOptions) -> k8s.core.v1.ConfigMap:
    """ConfigMap `plinth-dashboard-<key>` (file `plinth-<key>.json`) in Grafana's namespace: its sidecar
    loads dashboards from its own namespace only."""
    return k8s.core.v1.ConfigMap(
        resource,
        metadata=ctx.metadata(f"plinth-dashboard-{key}", component, namespace=PLATFORM_NAMESPACES["monitoring"],
                              labels={DASHBOARD_LABEL: "1"}),
        data={f"plinth-{key}.json": body},
        opts=opts,
    )


def platform_overview(platform: str) -> str:
    """Cluster health at a glance: nodes, pods, CPU and memory, firing alerts."""
    panels = [
        Panel("Ready nodes", [('sum(kube_node_status_condition{condition="Ready",status="true"})', "ready")],
              kind="stat"),
        Panel("Firing alerts by severity", [('sum by (severity) (ALERTS{alertstate="firing"})', "{{severity}}")],
              kind="stat"),
        Panel("CPU used / allocatable", [
            ('sum(rate(container_cpu_usage_seconds_total{container!=""}[5m]))', "used"),
            ("sum(kube_node_status_allocatable{resource=\"cpu\"})", "allocatable")]),
        Panel("Memory used / allocatable", [
            ('sum(container_memory_working_set_bytes{container!=""})', "used"),
            ('sum(kube_node_status_allocatable{resource="memory"})', "allocatable")], unit="bytes"),
        Panel("Pods not running", [
            ('sum by (namespace) (kube_pod_status_phase{phase=~"Pending|Failed|Unknown"})', "{{namespace}}")]),
        Panel("Platform releases: pods ready", [
            ('sum by (namespace) (kube_pod_status_ready{condition="true",'
             'namespace=~"kube-system|cert-manager|longhorn-system|monitoring|plinth-gateway"})', "{{namespace}}")]),
    ]
    return dashboard("plinth-overview", f"Plinth / {platform} / Platform overview", grid(panels),
                     ["plinth", "platform"])


def tenancy_quotas(platform: str, teams: list[str]) -> str:
    """Per team: quota used against hard limits (CPU, memory, GPUs, pods)."""
    selector = "|".join(sorted(teams)) or "none"
    panels = []
    for resource in ("requests.cpu", "requests.memory", "requests.nvidia.com/gpu", "pods"):
        ratio = (f'sum by (namespace) (kube_resourcequota{{namespace=~"{selector}",resource="{resource}",'
                 f'type="used"}}) / sum by (namespace) (kube_resourcequota{{namespace=~"{selector}",'
                 f'resource="{resource}",type="hard"}})')
        panels.append(Panel(f"{resource}: used / quota", [(ratio, "{{namespace}}")], unit="percentunit"))
    return dashboard("plinth-tenancy", f"Plinth / {platform} / Tenancy quotas", grid(panels), ["plinth", "tenancy"])
