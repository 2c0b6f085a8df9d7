"""Production's data survives: every stateful service is backed up on a schedule."""

from __future__ import annotations

from plinth.governance.policies.core import MANDATORY, Policy, dig

CNPG = "postgresql.cnpg.io/v1"
BARMAN_CLOUD = "barman-cloud.cloudnative-pg.io"
"""The plugin's name (modules/backups: PLUGIN); a policy reads resources, never a module."""


def _api_kind(subject) -> str:
    return subject.type.removeprefix("kubernetes:")


def _backups_required(subjects, platform):
    """Each CloudNativePG Cluster archives its WAL through the Barman Cloud plugin into an ObjectStore of its
    namespace that has a retention policy, and a ScheduledBackup with a schedule takes its base backups."""
    if platform.environment != "prod":
        return
    stores = {(s.metadata.get("namespace"), s.metadata.get("name")): s for s in subjects
              if _api_kind(s) == "barmancloud.cnpg.io/v1:ObjectStore"}
    scheduled = {(s.metadata.get("namespace"), dig(s.props, "spec", "cluster", "name")) for s in subjects
                 if _api_kind(s) == f"{CNPG}:ScheduledBackup" and dig(s.props, "spec", "schedule")
                 and dig(s.props, "spec", "method") == "plugin"}
    for s in subjects:
        if _api_kind(s) != f"{CNPG}:Cluster":
            continue
        ns, name = s.metadata.get("namespace"), s.metadata.get("name") or s.name
        archivers = [p for p in dig(s.props, "spec", "plugins") or []
                     if isinstance(p, dict) and p.get("name") == BARMAN_CLOUD and p.get("isWALArchiver")]
        if not archivers:
            yield s, f"no WAL archiving: spec.plugins has no {BARMAN_CLOUD} entry with isWALArchiver: true"
        for plugin in archivers:
            store = stores.get((ns, dig(plugin, "parameters", "barmanObjectName")))
            if store is None:
                yield s, f"its WAL archiver's ObjectStore {dig(plugin, 'parameters', 'barmanObjectName')!r} is " \
                    f"not in namespace {ns}"
            elif not dig(store.props, "spec", "retentionPolicy"):
                yield s, f"its ObjectStore {ns}/{store.metadata.get('name')} has no retentionPolicy"
        if (ns, name) not in scheduled:
            yield s, "no ScheduledBackup (method plugin, with a schedule) takes its base backups"


BACKUPS_REQUIRED_POLICY = Policy(
    "backups-required", "Production backs up every stateful service on a schedule: each CloudNativePG Cluster "
    "archives its WAL through the Barman Cloud plugin into an ObjectStore with a retention policy, and a "
    "ScheduledBackup takes its base backups.",
    "keep backups on in prod (spec `backups`): Plinth gives every Cluster its ObjectStore, WAL archiving and "
    "ScheduledBackup", MANDATORY, _backups_required)
