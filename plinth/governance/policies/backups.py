"""Production's data survives: every stateful service is backed up on a schedule."""

from __future__ import annotations

from plinth.governance.policies.core import HELM_RELEASE, MANDATORY, Policy, dig

CNPG = "postgresql.cnpg.io/v1"
BARMAN_CLOUD = "barman-cloud.cloudnative-pg.io"
"""The plugin's name (modules/backups: PLUGIN); a policy reads resources, never a module."""


def _api_kind(subject) -> str:
    return subject.type.removeprefix("kubernetes:")


def _release(subjects, name: str):
    return next((s for s in subjects if s.type == HELM_RELEASE and s.props.get("name") == name), None)


def _longhorn_backed_up(subjects):
    """Longhorn has a backup target, and a RecurringJob backs up the default group on a schedule, keeping some."""
    release = _release(subjects, "longhorn")
    if release is None:
        return
    if not dig(release.props, "values", "defaultBackupStore", "backupTarget"):
        yield release, "Longhorn has no backup target (defaultBackupStore.backupTarget)"
    jobs = [s for s in subjects if _api_kind(s) == "longhorn.io/v1beta2:RecurringJob"
            and dig(s.props, "spec", "task") in ("backup", "backup-force-create")
            and "default" in (dig(s.props, "spec", "groups") or []) and dig(s.props, "spec", "cron")
            and (dig(s.props, "spec", "retain") or 0) > 0]
    if not jobs:
        yield release, "no RecurringJob (task backup, group default, with a cron and a retain) backs up its volumes"


def _vault_snapshotted(subjects):
    """Vault on raft: a CronJob of its namespace saves a raft snapshot, one run at a time."""
    release = _release(subjects, "vault")
    if release is None or not dig(release.props, "values", "server", "ha", "raft", "enabled"):
        return
    namespace = release.props.get("namespace")
    for s in subjects:
        if s.kind != "CronJob" or s.metadata.get("namespace") != namespace:
            continue
        spec = s.props.get("spec") or {}
        containers = dig(spec, "jobTemplate", "spec", "template", "spec", "containers") or []
        commands = " ".join(" ".join(c.get("command") or []) + " " + " ".join(c.get("args") or [])
                            for c in containers if isinstance(c, dict))
        if "raft snapshot save" in commands and spec.get("schedule") and spec.get("concurrencyPolicy") == "Forbid":
            return
    yield release, f"Vault runs on raft but no CronJob of namespace {namespace} saves a raft snapshot on a " \
        "schedule (concurrencyPolicy: Forbid)"


def _backups_bucket(subjects) -> bool:
    """The platform has a backups bucket: the object store's (the SeaweedFS release) or the cloud's."""
    return any((s.type == HELM_RELEASE and s.props.get("name") == "seaweedfs")
               or (s.type.endswith(":Bucket") and str(s.props.get("bucket") or s.props.get("name") or "")
                   .endswith("-backups")) for s in subjects)


def _velero_backs_up(subjects):
    """Where the platform has a backups bucket: a Velero release with a BackupStorageLocation of its namespace
    (provider and bucket), and a Schedule of its namespace that backs up on a schedule into one of its locations,
    each backup with a ttl."""
    release = _release(subjects, "velero")
    if release is None:
        if _backups_bucket(subjects):
            yield None, "no Velero release backs up the namespaces' objects into the backups bucket"
        return
    namespace = release.props.get("namespace")
    names = {s.metadata.get("name") for s in subjects
             if _api_kind(s) == "velero.io/v1:BackupStorageLocation" and s.metadata.get("namespace") == namespace
             and dig(s.props, "spec", "provider") and dig(s.props, "spec", "objectStorage", "bucket")}
    if not names:
        yield release, f"Velero has no BackupStorageLocation in namespace {namespace} with a provider and a bucket"
        return
    for s in subjects:
        if _api_kind(s) != "velero.io/v1:Schedule" or s.metadata.get("namespace") != namespace:
            continue
        spec = s.props.get("spec") or {}
        template = spec.get("template") or {}
        if spec.get("schedule") and template.get("ttl") and (template.get("storageLocation") or "default") in names:
            return
    yield release, f"no Schedule of namespace {namespace} backs up on a schedule, with a ttl, into one of " \
        f"Velero's locations ({', '.join(sorted(names))})"


def _backups_required(subjects, platform):
    """Each CloudNativePG Cluster archives its WAL through the Barman Cloud plugin into an ObjectStore of its
    namespace that has a retention policy, and a ScheduledBackup with a schedule takes its base backups;
    Longhorn backs up its volumes on a schedule; Vault on raft is snapshotted on a schedule; Velero backs up the
    namespaces' objects on a schedule."""
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
    yield from _longhorn_backed_up(subjects)
    yield from _vault_snapshotted(subjects)
    yield from _velero_backs_up(subjects)


BACKUPS_REQUIRED_POLICY = Policy(
    "backups-required", "Production backs up every stateful service on a schedule: each CloudNativePG Cluster "
    "archives its WAL through the Barman Cloud plugin into an ObjectStore with a retention policy, and a "
    "ScheduledBackup takes its base backups; Longhorn has a backup target and a recurring backup of its volumes; "
    "Vault on raft has a scheduled snapshot CronJob; Velero backs up the namespaces' objects on a schedule into a "
    "backup storage location, each backup with a ttl.",
    "keep backups on in prod (spec `backups`): Plinth gives every Cluster its ObjectStore, WAL archiving and "
    "ScheduledBackup, Longhorn its backup target and RecurringJob, Vault on raft its snapshot CronJob, Velero "
    "its backup storage location and Schedule (backups.cluster)",
    MANDATORY, _backups_required)
