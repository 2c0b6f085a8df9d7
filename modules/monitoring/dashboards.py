"""The platform's own Grafana dashboards, as code: generated JSON, stable key order, no ids or timestamps."""

from __future__ import annotations

import json


def _panel(panel_id: int, title: str, exprs: list[tuple[str, str]], x: int, y: int, kind: str = "timeseries",
           unit: str = "short") -> dict:
    return {
        "id": panel_id,
        "title": title,
        "type": kind,
        "datasource": {"type": "prometheus", "uid": "prometheus"},
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
                    for i, (expr, legend) in enumerate(exprs)],
    }


def _dashboard(uid: str, title: str, panels: list[dict], tags: list[str]) -> str:
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


def platform_overview(platform: str) -> str:
    """Cluster health at a glance: nodes, pods, CPU and memory, firing alerts."""
    panels = [
        _panel(1, "Ready nodes", [('sum(kube_node_status_condition{condition="Ready",status="true"})', "ready")],
               0, 0, "stat"),
        _panel(2, "Firing alerts by severity", [('sum by (severity) (ALERTS{alertstate="firing"})', "{{severity}}")],
               12, 0, "stat"),
        _panel(3, "CPU used / allocatable", [
            ('sum(rate(container_cpu_usage_seconds_total{container!=""}[5m]))', "used"),
            ("sum(kube_node_status_allocatable{resource=\"cpu\"})", "allocatable")], 0, 8),
        _panel(4, "Memory used / allocatable", [
            ('sum(container_memory_working_set_bytes{container!=""})', "used"),
            ('sum(kube_node_status_allocatable{resource="memory"})', "allocatable")], 12, 8, unit="bytes"),
        _panel(5, "Pods not running", [
            ('sum by (namespace) (kube_pod_status_phase{phase=~"Pending|Failed|Unknown"})', "{{namespace}}")],
               0, 16),
        _panel(6, "Platform releases: pods ready", [
            ('sum by (namespace) (kube_pod_status_ready{condition="true",'
             'namespace=~"kube-system|cert-manager|longhorn-system|monitoring|plinth-gateway"})', "{{namespace}}")],
               12, 16),
    ]
    return _dashboard("plinth-overview", f"Plinth / {platform} / Platform overview", panels, ["plinth", "platform"])


def tenancy_quotas(platform: str, teams: list[str]) -> str:
    """Per team: quota used against hard limits (CPU, memory, GPUs, pods)."""
    selector = "|".join(sorted(teams)) or "none"
    panels = []
    for index, (resource, _unit) in enumerate((("requests.cpu", "short"), ("requests.memory", "bytes"),
                                              ("requests.nvidia.com/gpu", "short"), ("pods", "short"))):
        ratio = (f'sum by (namespace) (kube_resourcequota{{namespace=~"{selector}",resource="{resource}",'
                 f'type="used"}}) / sum by (namespace) (kube_resourcequota{{namespace=~"{selector}",'
                 f'resource="{resource}",type="hard"}})')
        panels.append(_panel(index + 1, f"{resource}: used / quota", [(ratio, "{{namespace}}")],
                             (index % 2) * 12, (index // 2) * 8, unit="percentunit"))
    return _dashboard("plinth-tenancy", f"Plinth / {platform} / Tenancy quotas", panels, ["plinth", "tenancy"])
