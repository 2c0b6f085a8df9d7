"""`plinth report`: a compliance report derived from the plan, never from a second description.

Sections: provenance (files, hashes, commit, spec hash), target and data at rest, the access
matrix (group x scope x role x permissions, from the Roles and bindings actually planned), network
exposure (Gateway listeners and routes, the allows of every default-deny namespace), the inventory
of images and charts, secrets (names and sources only), policy results, and what changed since a
previous report (`--since OLD.json`). `report.json` is the data; `report.md` reads on its own.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from plinth.diff import field_changes
from plinth.governance.check import Result
from plinth.plan import Plan, write_output
from plinth.provenance import Provenance
from plinth.spec.models import PlatformSpec
from plinth.vocabulary import (
    MODEL_LABEL,
    MODEL_URI_ANNOTATION,
    REGISTERED_MODEL_LABEL,
    REGISTERED_VERSION_LABEL,
    SECRET_SOURCE,
)

FORMAT = "plinth.dev/compliance-report/v1"
SECTIONS = ("access", "exposure", "data", "protection", "protectionOther", "protectionCluster", "protectionAlerts",
            "models", "inventory", "secrets", "policies")
WAL_RPO = "5 minutes"
"""A WAL-archived database's recovery point: CloudNativePG switches a WAL segment at the latest after its
`archive_timeout` (5 minutes by default) and the archiver uploads it; a busier database fills segments sooner."""


def _objects(plan: Plan, *kinds: str) -> list[dict]:
    return [r.inputs for r in plan.resources
            if r.custom and r.type.startswith("kubernetes:") and r.type.rsplit(":", 1)[-1] in kinds]


def _name(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta.get("name", "")


def access_matrix(plan: Plan) -> list[dict]:
    """One row per (group, scope, role): what each identity-provider group may do where."""
    roles: dict[tuple, list] = {("Role", _name(r)): r.get("rules") or [] for r in _objects(plan, "Role")}
    roles |= {("ClusterRole", _name(r)): r.get("rules") or [] for r in _objects(plan, "ClusterRole")}
    rows = []
    for binding in _objects(plan, "RoleBinding", "ClusterRoleBinding"):
        meta, ref = binding.get("metadata") or {}, binding.get("roleRef") or {}
        scope = meta.get("namespace") or "cluster"
        key = (ref.get("kind"), f"{scope}/{ref.get('name')}" if ref.get("kind") == "Role" else ref.get("name"))
        rules = roles.get(key)
        for subject in binding.get("subjects") or []:
            rows.append({
                "subject": f"{subject.get('kind')} {subject.get('name')}",
                "scope": scope,
                "role": ref.get("name"),
                "permissions": _permissions(rules) if rules is not None else ["(role not created by Plinth)"],
            })
    return sorted(rows, key=lambda r: (r["subject"], r["scope"], r["role"]))


def _permissions(rules: list[dict]) -> list[str]:
    """`verbs on group/resources`, merged per verb set."""
    by_verbs: dict[str, list[str]] = {}
    for rule in rules:
        verbs = ",".join(sorted(rule.get("verbs") or []))
        for group in rule.get("apiGroups") or [""]:
            for resource in rule.get("resources") or rule.get("nonResourceURLs") or []:
                by_verbs.setdefault(verbs, []).append(f"{group}/{resource}" if group else resource)
    return [f"{verbs} on {', '.join(sorted(set(res)))}" for verbs, res in sorted(by_verbs.items())]


def exposure(plan: Plan) -> dict:
    listeners = [{"gateway": _name(g), "listener": item.get("name"), "hostname": item.get("hostname"),
                  "protocol": item.get("protocol"), "port": item.get("port")}
                 for g in _objects(plan, "Gateway") for item in (g.get("spec") or {}).get("listeners") or []]
    routes = [{"route": _name(r), "hostnames": (r.get("spec") or {}).get("hostnames") or [],
               "backends": sorted({f"{b.get('name')}:{b.get('port')}" for rule in (r.get("spec") or {}).get("rules")
                                   or [] for b in rule.get("backendRefs") or []})}
              for r in _objects(plan, "HTTPRoute")]
    services = [{"service": _name(s), "type": (s.get("spec") or {}).get("type", "ClusterIP")}
                for s in _objects(plan, "Service")]
    allows: dict[str, list[str]] = {}
    for policy in _objects(plan, "NetworkPolicy", "CiliumNetworkPolicy"):
        meta = policy.get("metadata") or {}
        allows.setdefault(meta.get("namespace", ""), []).append(meta.get("name", ""))
    return {"listeners": listeners, "routes": sorted(routes, key=lambda r: r["route"]), "services": services,
            "namespace_policies": {ns: sorted(names) for ns, names in sorted(allows.items())}}


def data_at_rest(plan: Plan, spec: PlatformSpec) -> dict:
    volumes = [{"claim": _name(c), "size": ((c.get("spec") or {}).get("resources") or {}).get("requests", {})
                .get("storage"), "storageClass": (c.get("spec") or {}).get("storageClassName") or "(default)"}
               for c in _objects(plan, "PersistentVolumeClaim")]
    databases = [{"cluster": _name(c), "instances": (c.get("spec") or {}).get("instances"),
                  "size": ((c.get("spec") or {}).get("storage") or {}).get("size")} for c in _objects(plan, "Cluster")]
    target = spec.target
    # Only the existing target has a context.
    return {"target": {"type": target.type, **({"context": target.context}  # type: ignore[union-attr]
                                                if getattr(target, "context", None)
                                                else {})},
            "environment": spec.metadata.environment,
            "volumes": volumes, "databases": databases,
            "releases": sorted(r.inputs.get("name", "") for r in plan.resources
                               if r.type.endswith("helm.sh/v3:Release"))}


def data_protection(plan: Plan) -> list[dict]:
    """Each database and how it is backed up, from the planned Cluster, its WAL archiver's ObjectStore and its
    ScheduledBackup: where, the base backup schedule, the retention and the resulting recovery point."""
    stores = {_name(o): o.get("spec") or {} for o in _objects(plan, "ObjectStore")}
    schedules = {}
    for backup in _objects(plan, "ScheduledBackup"):
        spec = backup.get("spec") or {}
        namespace = (backup.get("metadata") or {}).get("namespace")
        schedules[f"{namespace}/{(spec.get('cluster') or {}).get('name')}"] = spec.get("schedule")
    rows = []
    for cluster in _objects(plan, "Cluster"):
        name, meta = _name(cluster), cluster.get("metadata") or {}
        archivers = [p for p in (cluster.get("spec") or {}).get("plugins") or [] if p.get("isWALArchiver")]
        objects = [(p.get("parameters") or {}).get("barmanObjectName") for p in archivers]
        store = next((stores[f"{meta.get('namespace')}/{o}"] for o in objects
                      if f"{meta.get('namespace')}/{o}" in stores), None)
        where = store and f"{(store.get('configuration') or {}).get('destinationPath')}/{meta.get('name')}"
        rows.append({"cluster": name, "where": where, "schedule": schedules.get(name),
                     "retention": store and store.get("retentionPolicy"),
                     "rpo": f"{WAL_RPO} (WAL archived continuously)" if store else "no backup"})
    return sorted(rows, key=lambda r: r["cluster"])


def volume_and_vault_backups(plan: Plan) -> list[dict]:
    """Longhorn's recurring volume backups (where: the release's backup target) and Vault's raft snapshot jobs
    (where: their volume): the schedule (5 fields, UTC) and how many are kept."""
    target = next((((r.inputs.get("values") or {}).get("defaultBackupStore") or {}).get("backupTarget")
                   for r in plan.resources if r.type.endswith("helm.sh/v3:Release")
                   and r.inputs.get("name") == "longhorn"), None)
    rows = []
    for job in _objects(plan, "RecurringJob"):
        spec = job.get("spec") or {}
        if spec.get("task") in ("backup", "backup-force-create"):
            rows.append({"what": f"Longhorn volumes, group {', '.join(spec.get('groups') or [])} ({_name(job)})",
                         "where": target, "schedule": spec.get("cron"), "retention": f"{spec.get('retain')} backups"})
    for cron in _objects(plan, "CronJob"):
        pod = ((((cron.get("spec") or {}).get("jobTemplate") or {}).get("spec") or {}).get("template") or {}) \
            .get("spec") or {}
        for container in pod.get("containers") or []:
            if "raft snapshot save" not in " ".join(container.get("command") or []):
                continue
            env = {e.get("name"): e.get("value") for e in container.get("env") or []}
            claims = [v["persistentVolumeClaim"]["claimName"] for v in pod.get("volumes") or []
                      if v.get("persistentVolumeClaim")]
            namespace = (cron.get("metadata") or {}).get("namespace")
            rows.append({"what": f"Vault raft snapshot ({_name(cron)})",
                         "where": ", ".join(f"volume {namespace}/{c}" for c in claims) or None,
                         "schedule": (cron.get("spec") or {}).get("schedule"),
                         "retention": f"{env['RETAIN']} snapshots" if env.get("RETAIN") else None})
    return sorted(rows, key=lambda r: r["what"])


def schedule_interval(cron: str | None) -> str:
    """The longest gap between two runs of a 5-field cron, for the common shapes (else said in words)."""
    fields = (cron or "").split()
    if len(fields) != 5:
        return "no schedule"
    minute, hour, day, month, weekday = fields
    if minute.isdigit() and hour.isdigit() and day == month == "*":
        return "24 hours" if weekday == "*" else "7 days" if weekday.isdigit() else "the gap between two runs"
    if minute.isdigit() and hour == "*" and day == month == weekday == "*":
        return "1 hour"
    return "the gap between two runs"


def cluster_backups(plan: Plan) -> list[dict]:
    """Velero's Schedules: which namespaces, where (the BackupStorageLocation of that name), the schedule
    (5 fields, UTC), how long each backup is kept (its ttl) and the recovery point: the schedule's interval
    (objects changed since the last backup are lost)."""
    locations = {(location.get("metadata") or {}).get("name"): {**(location.get("spec") or {}).get("objectStorage", {}),
                                   "provider": (location.get("spec") or {}).get("provider")}
                 for location in (r.inputs for r in plan.resources
                                  if r.type == "kubernetes:velero.io/v1:BackupStorageLocation")}
    schemes = {"aws": "s3", "gcp": "gs"}
    rows = []
    for schedule in (r.inputs for r in plan.resources if r.type == "kubernetes:velero.io/v1:Schedule"):
        spec = schedule.get("spec") or {}
        template = spec.get("template") or {}
        location = locations.get(template.get("storageLocation") or "default")
        provider = str(location.get("provider")) if location else ""
        where = location and f"{schemes.get(provider, provider)}://{location.get('bucket')}/" \
            f"{location.get('prefix') or ''}"
        namespaces = ", ".join(template.get("includedNamespaces") or ["*"])
        rows.append({"what": f"Velero: namespaces {'all' if namespaces == '*' else namespaces}"
                             f"{' and cluster-scoped objects' if template.get('includeClusterResources') else ''} "
                             f"({_name(schedule)})",
                     "where": where, "schedule": spec.get("schedule"), "retention": template.get("ttl"),
                     "rpo": schedule_interval(spec.get("schedule"))})
    return sorted(rows, key=lambda r: r["what"])


def backup_alerts(plan: Plan) -> list[dict]:
    """The alerts watching the backups (modules/backups/alerts.py: the PrometheusRule groups `plinth-backups-*`):
    each alert, its rule, its severity and when it fires (its summary, templates unexpanded)."""
    rows = []
    for rule in _objects(plan, "PrometheusRule"):
        for group in (rule.get("spec") or {}).get("groups") or []:
            if not str(group.get("name", "")).startswith("plinth-backups-"):
                continue
            rows += [{"name": r["alert"], "rule": _name(rule), "severity": (r.get("labels") or {}).get("severity"),
                      "summary": (r.get("annotations") or {}).get("summary")}
                     for r in group.get("rules") or [] if "alert" in r]
    return sorted(rows, key=lambda r: r["name"])


def served_models(plan: Plan) -> list[dict]:
    """One row per served track (a Deployment labelled with its model): the version it runs and where its files
    come from: a registered MLflow version (its models:/ URI; `plinth lineage` traces it to its run and data),
    a Triton model repository, or a Bento image. Offline: the run is known online only."""
    rows = []
    for deployment in _objects(plan, "Deployment"):
        meta = deployment.get("metadata") or {}
        labels, notes = meta.get("labels") or {}, meta.get("annotations") or {}
        if MODEL_LABEL not in labels:
            continue
        container = ((((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")
                     or [{}])[0]
        repository = next((a.split("=", 1)[1] for a in container.get("args") or []
                           if isinstance(a, str) and a.startswith("--model-repository=")), None)
        registered = labels.get(REGISTERED_MODEL_LABEL)
        rows.append({
            "name": _name(deployment),
            "model": labels[MODEL_LABEL],
            "track": labels.get("plinth.dev/track", ""),
            "version": labels.get(REGISTERED_VERSION_LABEL) or labels.get("app.kubernetes.io/version", ""),
            "registered": registered,
            "source": notes.get(MODEL_URI_ANNOTATION) if registered else (repository or container.get("image")),
        })
    return sorted(rows, key=lambda r: r["name"])


def secrets(plan: Plan) -> list[dict]:
    # The payload itself is a secret of the plan (keys included): names and sources only.
    return sorted(({"secret": _name(s), "type": s.get("type", "Opaque"),
                    "source": ((s.get("metadata") or {}).get("annotations") or {}).get(SECRET_SOURCE, "(unknown)")}
                   for s in _objects(plan, "Secret")), key=lambda s: s["secret"])


def build_report(plan: Plan, spec: PlatformSpec, provenance: Provenance | None, results: list[Result],
                 inventory) -> dict:
    from plinth.modules.governance import spec_hash

    return {
        "format": FORMAT,
        "platform": spec.metadata.name,
        "environment": spec.metadata.environment,
        "source": plan.source,
        "provenance": {"spec_sha256": spec_hash(spec), **(provenance.as_dict() if provenance else {})},
        "data": data_at_rest(plan, spec),
        "protection": data_protection(plan),
        "protectionOther": volume_and_vault_backups(plan),
        "protectionCluster": cluster_backups(plan),
        "protectionAlerts": backup_alerts(plan),
        "models": served_models(plan),
        "access": access_matrix(plan),
        "exposure": exposure(plan),
        "inventory": {"images": [{"image": i.source, "mirror": i.target} for i in inventory.images],
                      "charts": [{"chart": c.name, "version": c.version, "repository": c.repository}
                                 for c in inventory.charts]},
        "secrets": secrets(plan),
        "policies": [{"policy": r.policy.name, "level": r.level, "violations": len(r.violations),
                      "result": "pass" if not r.violations else ("fail" if r.failed else "warn")} for r in results],
    }


ITEM_KEYS = ("policy", "secret", "route", "listener", "cluster", "chart", "image", "namespace", "name", "key")
"""What names an item of a report's lists (a policy, a secret, a route...): changes are matched by it."""


def changes_since(old: dict, new: dict) -> dict:
    """What differs per section between two reports, item by item (plinth.diff's engine): a field of a named item
    (`policies[no-wildcard-rbac].result`) from -> to; items of a list without a name (the access matrix's rows)
    added or removed whole."""
    out: dict[str, Any] = {}
    if old.get("provenance", {}).get("spec_sha256") != new["provenance"]["spec_sha256"]:
        out["spec"] = {"from": old.get("provenance", {}).get("spec_sha256"), "to": new["provenance"]["spec_sha256"]}
    for section in SECTIONS:
        changes = list(_section_changes(old.get(section), new.get(section), section))
        if changes:
            out[section] = [{"path": path, "from": before, "to": after} for path, before, after in changes]
    return out


def _section_changes(old: Any, new: Any, section: str) -> Iterator[tuple[str, Any, Any]]:
    if isinstance(old, list) and isinstance(new, list) and _unnamed(old, new):
        before, after = ({json.dumps(item, sort_keys=True): item for item in items} for items in (old, new))
        yield from ((section, before[k], None) for k in sorted(before.keys() - after.keys()))
        yield from ((section, None, after[k]) for k in sorted(after.keys() - before.keys()))
        return
    yield from field_changes(_as_sets(old), _as_sets(new), section, ITEM_KEYS)


def _as_sets(value: Any) -> Any:
    """Lists of distinct names (a namespace's policies) as sets, so one inserted name is one change, not a shift
    of every name after it."""
    if isinstance(value, dict):
        return {k: _as_sets(v) for k, v in value.items()}
    if isinstance(value, list):
        if all(isinstance(v, str) for v in value) and len(set(value)) == len(value):
            return {v: "present" for v in value}
        return [_as_sets(v) for v in value]
    return value


def _unnamed(*lists: list) -> bool:
    """No key of ITEM_KEYS names every item: rows compared whole (by position they would shift)."""
    return not any(all(isinstance(item, dict) and isinstance(item.get(key), str) for items in lists for item in items)
                   and all(len({item[key] for item in items}) == len(items) for items in lists)
                   for key in ITEM_KEYS)


def write_report(report: dict, out: Path, since: dict | None = None) -> list[Path]:
    if since is not None:
        report = {**report, "changes": changes_since(since, report)}
    return [write_output(out, "report.json", json.dumps(report, indent=2, sort_keys=True) + "\n"),
            write_output(out, "report.md", markdown(report))]


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        text = "<br>".join(value) if isinstance(value, list) else ("" if value is None else str(value))
        return text.replace("|", "\\|") or "—"
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows] if rows else lines + [
        "| " + " | ".join(["(none)"] + [""] * (len(headers) - 1)) + " |"]


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~])")


def _md_value(value: Any) -> str:
    """One side of a change: `(none)` where the item or field is absent on that side."""
    return "(none)" if value is None else _md(json.dumps(value, sort_keys=True))


def _md(value: Any) -> str:
    """Text as literal Markdown: HTML and Markdown punctuation escaped, line breaks and controls made spaces."""
    text = html.escape(str(value), quote=False)
    text = "".join(c if c.isprintable() else " " for c in text)
    return _MD_SPECIAL.sub(r"\\\1", text)


def markdown(report: dict) -> str:
    prov, data, exp = report["provenance"], report["data"], report["exposure"]
    failed = [p for p in report["policies"] if p["result"] == "fail"]
    lines = [
        f"# Compliance report: {report['platform']} ({report['environment']})", "",
        f"Derived from the plan of `{report['source']}` by `plinth report`; every table below is what the "
        "program declares, not a description of it.", "",
        "## Summary", "",
        f"- Policies: {sum(p['result'] == 'pass' for p in report['policies'])} of {len(report['policies'])} pass"
        + (f"; **{len(failed)} mandatory failing**: {', '.join(p['policy'] for p in failed)}" if failed else ""),
        f"- Access: {len(report['access'])} grants to identity-provider groups; no wildcard rules "
        "(policy `no-wildcard-rbac`)",
        f"- Exposure: {len(exp['listeners'])} Gateway listener(s), {len(exp['routes'])} route(s); "
        f"Services: {', '.join(sorted({s['type'] for s in exp['services']})) or 'none'}",
        f"- Inventory: {len(report['inventory']['images'])} images, {len(report['inventory']['charts'])} charts; "
        f"secrets: {len(report['secrets'])}, payloads from stack secrets only", "",
        "## Provenance", "",
        f"- Spec hash (sha256 of the validated spec): `{prov['spec_sha256']}`",
        f"- Commit: `{prov.get('commit') or 'not in a git checkout'}`", "",
        *_table(["file", "sha256"], [[f["path"], f"`{f['sha256']}`"] for f in prov.get("files", [])]), "",
        "## Target and data at rest", "",
        f"- Target: {data['target']['type']}" + (f", context `{data['target']['context']}`"
                                                 if data["target"].get("context") else ""),
        f"- Releases: {', '.join(data['releases']) or 'none'}", "",
        *_table(["volume claim", "size", "storage class"],
                [[v["claim"], v["size"], v["storageClass"]] for v in data["volumes"]]), "",
        *_table(["database (CloudNativePG)", "instances", "size per instance"],
                [[d["cluster"], d["instances"], d["size"]] for d in data["databases"]]), "",
        "## Data protection", "",
        "What is backed up, where, the base backup schedule (CloudNativePG's six fields, seconds first), how long "
        "backups are kept and the recovery point objective that results:", "",
        *_table(["database", "where", "schedule", "retention", "RPO"],
                [[d["cluster"], d["where"], d["schedule"], d["retention"], d["rpo"]]
                 for d in report.get("protection", [])]), "",
        "Volumes and Vault (Longhorn's recurring backup; Vault's raft snapshot, schedules in five fields, UTC):", "",
        *_table(["what", "where", "schedule", "kept"],
                [[d["what"], d["where"], d["schedule"], d["retention"]]
                 for d in report.get("protectionOther", [])]), "",
        "Namespaces (Velero: their objects, and the cluster-scoped ones, schedule in five fields, UTC; volume "
        "data is in the backups above, not in these):", "",
        *_table(["what", "where", "schedule", "kept", "RPO"],
                [[d["what"], d["where"], d["schedule"], d["retention"], d["rpo"]]
                 for d in report.get("protectionCluster", [])]), "",
        "Alerts watching these backups (with monitoring; stale means older than the schedule's longest gap plus 3 "
        "hours):", "",
        *_table(["alert", "rule", "severity", "summary"],
                [[a["name"], a["rule"], a["severity"], a["summary"]] for a in report.get("protectionAlerts", [])]), "",
        "## Served models and where they come from", "",
        "Each served track, the version it runs and its source; a registered version is traced to its run, "
        "params, metrics and datasets by `plinth lineage` (online):", "",
        *_table(["deployment", "track", "version", "registered model", "source"],
                [[m["name"], m["track"], m["version"], m["registered"] or "(not registered)", m["source"]]
                 for m in report.get("models", [])]), "",
        "## Access matrix", "",
        *_table(["subject", "scope", "role", "permissions"],
                [[a["subject"], a["scope"], a["role"], a["permissions"]] for a in report["access"]]), "",
        "## Network exposure", "",
        *_table(["gateway", "listener", "hostname", "protocol", "port"],
                [[x["gateway"], x["listener"], x["hostname"], x["protocol"], x["port"]] for x in exp["listeners"]]),
        "",
        *_table(["route", "hostnames", "backends"],
                [[r["route"], r["hostnames"], r["backends"]] for r in exp["routes"]]),
        "",
        "Every namespace below is default-deny; these are its policies:", "",
        *_table(["namespace", "network policies"], [[ns, names] for ns, names in exp["namespace_policies"].items()]),
        "",
        "## Inventory", "",
        *_table(["image", "mirror"], [[i["image"], i["mirror"]] for i in report["inventory"]["images"]]), "",
        *_table(["chart", "version", "repository"],
                [[c["chart"], c["version"], c["repository"]] for c in report["inventory"]["charts"]]), "",
        "## Secrets (names and sources only)", "",
        *_table(["secret", "type", "source"], [[s["secret"], s["type"], s["source"]] for s in report["secrets"]]), "",
        "## Policies", "",
        *_table(["policy", "level", "result", "violations"],
                [[p["policy"], p["level"], p["result"], p["violations"]] for p in report["policies"]]), "",
    ]
    if "changes" in report:
        lines += ["## Changes since the previous report", ""]
        if not report["changes"]:
            lines += ["No changes.", ""]
        for section, change in report["changes"].items():
            # What came from the previous report is any text: escaped, so it reads as written.
            if section == "spec":
                lines += [f"- spec: {_md(change['from'])} → {_md(change['to'])}"]
                continue
            lines += [f"- {_md(section)}: {len(change)} change{'s' if len(change) != 1 else ''}"]
            lines += [f"  - {_md(c['path'])}: {_md_value(c['from'])} → {_md_value(c['to'])}" for c in change]
        lines += [""]
    return "\n".join(lines)
