"""Longhorn's real chart (1.12.1) rendered with Plinth's values in prod on-prem: its default settings name the
backups bucket's `longhorn/` prefix and Plinth's credential Secret, and Plinth's RecurringJob and the Vault
snapshot CronJob validate against Longhorn's CRD and the Kubernetes schema; the snapshot pod is admitted by
Pod Security `restricted`."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from support import CHARTS_DIR, platform_spec
from validation import crd_schemas, release_objects, restricted_problems, validation_failures
from plinth.engine.charts import render_charts
from plinth.engine.offline import plan
from plinth.render import kubernetes_objects

KUBE = "1.34"


@cache
def _rendered(charts_dir: Path):
    spec = platform_spec({
        "metadata": {"environment": "prod"},
        "charts": {"source": str(CHARTS_DIR)},
        "certificates": {"certManager": {"enabled": True}},
        "storage": {"longhorn": {"enabled": True}, "objectStore": {"enabled": True}},
        "secrets": {"vault": {"enabled": True, "ha": True}},
    })
    result = plan(spec, "volume-backups-chart")
    return result, render_charts(result, KUBE, charts_dir)


def test_longhorns_default_settings_name_the_backup_target_and_its_secret(charts_dir, helm):
    _, rendered = _rendered(charts_dir)
    [settings] = [o for o in release_objects(rendered, "longhorn")
                  if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "longhorn-default-resource"]
    text = settings["data"]["default-resource.yaml"]
    assert "backup-target: s3://test-backups@us-east-1/longhorn/" in text, text
    assert "backup-target-credential-secret: longhorn-backup-s3" in text, text


def test_the_recurring_job_and_the_snapshot_cronjob_validate_and_the_pod_is_restricted(charts_dir, helm):
    result, rendered = _rendered(charts_dir)
    ours = [obj for _, obj in kubernetes_objects(result) if obj["kind"] in ("RecurringJob", "CronJob")]
    assert sorted(o["kind"] for o in ours) == ["CronJob", "RecurringJob"]
    assert validation_failures(ours, f"{KUBE}.0", crd_schemas(rendered)) == []
    [cronjob] = [o for o in ours if o["kind"] == "CronJob"]
    assert restricted_problems(cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]) == []
