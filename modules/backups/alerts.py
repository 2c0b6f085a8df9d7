"""Alerts on the backups (with monitoring on): a backup that failed, and one that is older than its schedule
allows. Each owner plans its rules beside its backup: Velero's Schedule (velero.py), the databases' Barman
Cloud plugin (__init__.py), Vault's snapshot CronJob (modules/secrets), Longhorn's recurring volume backup
(modules/storage). Metric names, thresholds and what is
not covered: README.md beside this file.

A backup is stale when the last good one is older than the longest gap between two runs of its schedule plus
MARGIN_SECONDS (the time a run that starts on time has to finish)."""

from __future__ import annotations

import datetime

import pulumi
import pulumi_kubernetes as k8s

MARGIN_SECONDS = 3 * 3600
"""Added to a schedule's longest gap before its backup counts as stale: a backup that starts on time has three
hours to finish (Vault's job gives up after 30 minutes, a large base backup takes longer)."""
UNREADABLE_GAP_SECONDS = 7 * 86400
"""The gap assumed for a cron expression this module cannot read (the spec checks five fields only): a week,
so such a schedule alerts late rather than falsely."""

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NAMES = {3: {n: i + 1 for i, n in enumerate(_MONTHS)}, 4: {n: i for i, n in enumerate(_WEEKDAYS)}}
"""The names a month and a weekday field may use (case-insensitive)."""
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_FIRST_DAY = datetime.date(2024, 1, 1)
_DAYS = 8 * 366
"""Eight years of days: every leap-year and weekday combination a 5-field cron can name."""


def _field(text: str, index: int) -> set[int] | None:
    """The values of one cron field; None for `*` (or `?`): every value."""
    low, high = _RANGES[index]
    if text in ("*", "?"):
        return None
    values: set[int] = set()
    for part in text.lower().split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if span in ("*", "?"):
            start, end = low, high
        else:
            first, _, last = span.partition("-")
            start = int(_NAMES.get(index, {}).get(first, first))
            end = int(_NAMES.get(index, {}).get(last, last)) if last else (high if step_text else start)
        if step < 1 or not low <= start <= end <= high:
            raise ValueError(part)
        values.update(range(start, end + 1, step))
    if index == 4 and 7 in values:  # 7 is Sunday too
        values = (values - {7}) | {0}
    return values


def longest_gap_seconds(cron: str) -> int:
    """The longest time between two runs of a 5-field cron expression (UTC), over every day it can fall on;
    UNREADABLE_GAP_SECONDS for an expression it cannot read or that never runs."""
    try:
        minute, hour, day, month, weekday = (_field(f, i) for i, f in enumerate(cron.split()))
    except ValueError:
        return UNREADABLE_GAP_SECONDS
    times = sorted(h * 60 + m for h in (hour if hour is not None else range(24))
                   for m in (minute if minute is not None else range(60)))

    def runs_on(date: datetime.date) -> bool:
        if month is not None and date.month not in month:
            return False
        by_day = day is None or date.day in day
        by_weekday = weekday is None or date.isoweekday() % 7 in weekday
        # Both restricted: either matches (cron's rule); otherwise the restricted one decides.
        return (by_day or by_weekday) if day is not None and weekday is not None else (by_day and by_weekday)

    days = [n for n in range(_DAYS) if runs_on(_FIRST_DAY + datetime.timedelta(days=n))]
    if not days or not times:
        return UNREADABLE_GAP_SECONDS
    within = max((b - a for a, b in zip(times, times[1:])), default=0)
    between = max((b - a for a, b in zip(days, days[1:])), default=7) * 1440 - (times[-1] - times[0])
    return max(within, between) * 60


def stale_after(cron: str) -> int:
    """Seconds after the last good backup at which it is stale: the schedule's longest gap plus the margin."""
    return longest_gap_seconds(cron) + MARGIN_SECONDS


def hours(seconds: int) -> str:
    """A threshold in words, for the alerts' summaries."""
    return f"{seconds / 3600:g} hours"


def velero_rules(schedule: str, cron: str) -> list[dict]:
    """Velero's server metrics (label `schedule`): a failed or partly failed backup of the Schedule since the last
    check, and its last successful backup older than the schedule allows."""
    after = stale_after(cron)
    selector = f'schedule="{schedule}"'
    return [
        {"alert": "VeleroBackupFailed",
         "expr": f"increase(velero_backup_failure_total{{{selector}}}[1h]) > 0 or "
                 f"increase(velero_backup_partial_failure_total{{{selector}}}[1h]) > 0",
         "labels": {"severity": "warning"},
         "annotations": {"summary": f"Velero backup of schedule {schedule} failed or partly failed in the last "
                                    "hour: `velero backup get` and its logs say why"}},
        {"alert": "VeleroBackupStale",
         "expr": f"time() - velero_backup_last_successful_timestamp{{{selector}}} > {after}",
         "for": "10m",
         "labels": {"severity": "critical"},
         "annotations": {"summary": f"The last successful Velero backup of schedule {schedule} is older than "
                                    f"{hours(after)} (schedule `{cron}` plus {hours(MARGIN_SECONDS)})"}},
    ]


def _by_cluster(metric: str) -> str:
    """A CloudNativePG instance metric with the cluster's name (its pods are `<cluster>-<n>`), the newest value
    of the cluster's instances."""
    return f'max by (namespace, cluster) (label_replace({metric}, "cluster", "$1", "pod", "(.+)-[0-9]+"))'


def database_rules(cron: str) -> list[dict]:
    """Every CloudNativePG cluster, from its instances' metrics: WAL archiving failing (the operator's default
    `pg_stat_archiver` query), and the Barman Cloud plugin's last base backup failed or too old."""
    after = stale_after(cron)
    return [
        {"alert": "PostgresWalArchivingFailing",
         "expr": f"{_by_cluster('cnpg_pg_stat_archiver_last_failed_time')} > "
                 f"{_by_cluster('cnpg_pg_stat_archiver_last_archived_time')}",
         "for": "15m",
         "labels": {"severity": "critical"},
         "annotations": {"summary": "{{ $labels.namespace }}/{{ $labels.cluster }}: WAL archiving to the backups "
                                    "bucket fails: the recovery point falls behind"}},
        {"alert": "PostgresBaseBackupFailed",
         "expr": f"{_by_cluster('barman_cloud_cloudnative_pg_io_last_failed_backup_timestamp')} > "
                 f"{_by_cluster('barman_cloud_cloudnative_pg_io_last_available_backup_timestamp')}",
         "labels": {"severity": "warning"},
         "annotations": {"summary": "{{ $labels.namespace }}/{{ $labels.cluster }}: the last base backup failed "
                                    "(`kubectl get backups -n {{ $labels.namespace }}`)"}},
        {"alert": "PostgresBaseBackupStale",
         # Zero (no backup yet, while the first one runs) is not stale: a failing first one is *Failed.
         "expr": f"time() - ({_by_cluster('barman_cloud_cloudnative_pg_io_last_available_backup_timestamp')} "
                 f"> 0) > {after}",
         "for": "10m",
         "labels": {"severity": "critical"},
         "annotations": {"summary": "{{ $labels.namespace }}/{{ $labels.cluster }}: the last base backup is older "
                                    f"than {hours(after)} (schedule `{cron}` plus {hours(MARGIN_SECONDS)})"}},
    ]


def cronjob_rules(prefix: str, what: str, namespace: str, cronjob: str, cron: str) -> list[dict]:
    """A backup CronJob, from kube-state-metrics: a Job of it failed after its last success, and no success
    (or, never successful, no creation) within the schedule's gap plus the margin."""
    after = stale_after(cron)
    job = f'namespace="{namespace}", cronjob="{cronjob}"'
    # The last success, or the CronJob's creation while it has none.
    since = (f"max by (namespace, cronjob) (kube_cronjob_status_last_successful_time{{{job}}} "
             f"or kube_cronjob_created{{{job}}})")
    return [
        {"alert": f"{prefix}Failed",
         "expr": f'max by (namespace) (kube_job_created{{namespace="{namespace}", job_name=~"{cronjob}-[0-9]+"}} '
                 f'and on (namespace, job_name) kube_job_failed{{condition="true"}} == 1) '
                 f"> on (namespace) group_left (cronjob) {since}",
         "labels": {"severity": "warning"},
         "annotations": {"summary": f"{what}: a Job of CronJob {namespace}/{cronjob} failed after its last "
                                    f"success (`kubectl get jobs -n {namespace}`)"}},
        {"alert": f"{prefix}Stale",
         "expr": f"time() - {since} > {after}",
         "for": "10m",
         "labels": {"severity": "critical"},
         "annotations": {"summary": f"{what}: no successful run of CronJob {namespace}/{cronjob} for "
                                    f"{hours(after)} (schedule `{cron}` plus {hours(MARGIN_SECONDS)})"}},
    ]


LONGHORN_BACKUP_FAILED = 4
"""`longhorn_backup_state` of a failed backup: Error is 4, Unknown 5 (New 0, Pending 1, InProgress 2, Completed 3)."""


def volume_rules(namespace: str, job: str, cron: str) -> list[dict]:
    """Longhorn's manager metrics (verified against longhorn/longhorn-manager v1.12.1, the chart's appVersion:
    metrics_collector/backup_collector.go and volume_collector.go): a backup in state Error or Unknown, and an
    attached volume whose last successful backup (or, never backed up, its first scrape) is older than the
    RecurringJob's schedule allows. Detached volumes are left out: the job skips them (Longhorn's setting
    allow-recurring-job-while-volume-detached, off by default) and their data does not change. The failed
    backup's `recurring_job` label is empty (Longhorn fills it from a completed backup's config), so the failure
    alert covers every volume backup, the job's and ad-hoc ones."""
    after = stale_after(cron)
    volume = "volume, pvc_namespace, pvc"
    last = "longhorn_volume_last_backup_at"  # Unix time of the last successful backup, 0 for none
    attached = 'max by (volume) (longhorn_volume_state{state="attached"}) == 1'
    return [
        {"alert": "LonghornBackupFailed",
         "expr": f"max by (volume, backup) (longhorn_backup_state >= {LONGHORN_BACKUP_FAILED})",
         "labels": {"severity": "warning"},
         "annotations": {"summary": "Longhorn backup {{ $labels.backup }} of volume {{ $labels.volume }} failed "
                                    f"(`kubectl -n {namespace} get backups.longhorn.io {{{{ $labels.backup }}}} "
                                    "-o yaml`: status.error); Longhorn deletes it after its failed-backup-ttl"}},
        {"alert": "LonghornVolumeBackupStale",
         # The last backup too old; or none (0) throughout the window, the volume already scraped at its start.
         "expr": f"(time() - max by ({volume}) ({last} > 0) > {after} "
                 f"or max by ({volume}) (max_over_time({last}[{after}s])) == 0 "
                 f"and on (volume) max by (volume) ({last} offset {after}s)) "
                 f"and on (volume) {attached}",
         "for": "10m",
         "labels": {"severity": "critical"},
         "annotations": {"summary": "Longhorn volume {{ $labels.volume }} ({{ $labels.pvc_namespace }}/"
                                    "{{ $labels.pvc }}): no successful backup for "
                                    f"{hours(after)} (RecurringJob {namespace}/{job}, schedule `{cron}` plus "
                                    f"{hours(MARGIN_SECONDS)})"}},
    ]


def alert_rule(resource: str, metadata: dict, group: str, rules: list[dict],
               opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
    """The PrometheusRule holding one backup's alerts (Prometheus picks up every namespace's rules)."""
    return k8s.apiextensions.CustomResource(
        resource, api_version="monitoring.coreos.com/v1", kind="PrometheusRule", metadata=metadata,
        spec={"groups": [{"name": group, "rules": rules}]}, opts=opts)
