"""The one dashboard builder: panels from a short description, laid out on Grafana's 24-column grid."""

import json

from plinth.modules.monitoring.dashboards import Panel, dashboard, grid, row


def test_grid_lays_panels_out_left_to_right_then_down():
    panels = grid([Panel("a", [("up", "x")]), Panel("b", [("up", "x")], unit="bytes"), Panel("c", [])],
                  first_id=5, top=1, width=12)
    assert [(p["id"], p["gridPos"]) for p in panels] == [
        (5, {"h": 8, "w": 12, "x": 0, "y": 1}), (6, {"h": 8, "w": 12, "x": 12, "y": 1}),
        (7, {"h": 8, "w": 12, "x": 0, "y": 9})]
    assert panels[1]["fieldConfig"]["defaults"]["unit"] == "bytes"
    assert panels[0]["targets"] == [{"refId": "A", "expr": "up", "legendFormat": "x"}]


def test_a_dashboard_is_stable_json_with_a_row_above_its_panels():
    body = dashboard("u", "T", [row(1, "r", 0), *grid([Panel("a", [])], first_id=2, top=1, width=8)], ["b", "a"])
    doc = json.loads(body)
    assert doc["tags"] == ["a", "b"] and doc["editable"] is False
    assert [p["type"] for p in doc["panels"]] == ["row", "timeseries"]
    assert body == json.dumps(doc, indent=2, sort_keys=True) + "\n"
