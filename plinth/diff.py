"""What a change does, read like `terraform plan`: resource by resource, field by field.

One engine for `plinth diff`, the canary edits and the real-engine checks. Resources are matched by
what they are in the platform (`Resource.key`), never by stack; list items by their name where they
have one; embedded JSON (the ledger's spec record, dashboards) diffs by field and other multi-line
text by line. A change Kubernetes cannot make in place is a replacement, marked `+-` with its reason
(the fields the Kubernetes provider replaces on). Secret data is never shown.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from plinth.plan import SECRET, Plan, Resource, object_name, plural, resource_key, short_type


class FieldChange(NamedTuple):
    path: str
    """e.g. spec.rules[0].backendRefs[fraud-scorer-canary].weight (list items by name where they have one)."""
    old: Any
    """None where the field is added."""
    new: Any
    """None where the field is removed."""


@dataclass(frozen=True)
class Change:
    kind: str
    """added | removed | changed | replaced"""
    resource: Resource
    fields: tuple[FieldChange, ...] = ()
    reasons: tuple[str, ...] = ()
    """For a replacement: the fields that cannot change in place."""


# --- what Kubernetes replaces --------------------------------------------------

_STATEFULSET = ("spec.podManagementPolicy", "spec.revisionHistoryLimit", "spec.selector", "spec.serviceName",
                "spec.volumeClaimTemplates")
REPLACED_ON: dict[str, tuple[str, ...]] = {
    "apps/v1:Deployment": ("spec.selector",),
    "apps/v1:StatefulSet": _STATEFULSET,
    "batch/v1:Job": ("spec.selector", "spec.template"),
    "core/v1:PersistentVolumeClaim": ("spec",),
    "core/v1:ResourceQuota": ("spec.scopes",),
    "core/v1:Secret": ("type", "data", "stringData"),
    "core/v1:Service": ("spec.clusterIP", "spec.type"),
    "rbac.authorization.k8s.io/v1:RoleBinding": ("roleRef",),
    "rbac.authorization.k8s.io/v1:ClusterRoleBinding": ("roleRef",),
    "storage.k8s.io/v1:StorageClass": ("parameters", "provisioner"),
    "helm.sh/v3:Release": ("name", "namespace"),
}
"""Fields a change of which replaces the object, by `group/version:Kind` of the Kubernetes provider's type
token. Every other Kubernetes object is replaced on a change of metadata.name or metadata.namespace.
(ConfigMaps update in place: the provider runs with enable_config_map_mutable; Secrets do not.)"""
_RENAMED = ("metadata.name", "metadata.namespace")


def replaced_on(resource: Resource) -> tuple[str, ...]:
    if not resource.type.startswith("kubernetes:"):
        return ()
    token = resource.type.removeprefix("kubernetes:")
    own = REPLACED_ON.get(token, ())
    return own if token == "helm.sh/v3:Release" else _RENAMED + own


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith((prefix + ".", prefix + "["))


def replacement_reasons(resource: Resource, fields: tuple[FieldChange, ...]) -> tuple[str, ...]:
    immutable = replaced_on(resource)
    return tuple(dict.fromkeys(f"{prefix} cannot change in place" for f in fields for prefix in immutable
                               if _under(f.path, prefix)))


# --- comparing ------------------------------------------------------------------


def diff_plans(old: Plan, new: Plan) -> list[Change]:
    """Resource-by-resource, field-by-field changes from old to new.

    Resources are keyed by type path and name within the platform (Resource.key), never by the
    full URN, so plans of different stacks (or a blueprint and a stack) show only real changes.
    """
    before = {r.key: r for r in old.resources}
    after = {r.key: r for r in new.resources}
    changes = [Change("removed", before[k]) for k in sorted(before.keys() - after.keys())]
    changes += [Change("added", after[k]) for k in sorted(after.keys() - before.keys())]
    for key in sorted(before.keys() & after.keys()):
        fields = tuple(field_changes(before[key].inputs, after[key].inputs, ""))
        if fields:
            reasons = replacement_reasons(after[key], fields)
            changes.append(Change("replaced" if reasons else "changed", after[key], fields, reasons))
    order = {"removed": 0, "replaced": 1, "changed": 2, "added": 3}
    return sorted(changes, key=lambda c: (order[c.kind], c.resource.key))


_MISSING = object()
_ITEM_KEYS = ("name", "key")
"""Fields that name a list item (containers, ports, env, volumes, backendRefs; tolerations by key)."""


def field_changes(old: Any, new: Any, path: str, item_keys: tuple[str, ...] = _ITEM_KEYS) -> Iterator[FieldChange]:
    """Every differing leaf between old and new; a field only on one side is one change of its whole value.
    List items are matched by the first of `item_keys` that names each of them uniquely, else by position."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() | new.keys()):
            yield from field_changes(old.get(key, _MISSING), new.get(key, _MISSING),
                                     f"{path}.{key}" if path else key, item_keys)
    elif isinstance(old, list) and isinstance(new, list):
        name = _item_key(old, new, keys=item_keys)
        if name:
            olds, news = {item[name]: item for item in old}, {item[name]: item for item in new}
            for item in [*olds, *(k for k in news if k not in olds)]:
                yield from field_changes(olds.get(item, _MISSING), news.get(item, _MISSING), f"{path}[{item}]",
                                         item_keys)
        else:
            for index in range(max(len(old), len(new))):
                yield from field_changes(old[index] if index < len(old) else _MISSING,
                                         new[index] if index < len(new) else _MISSING, f"{path}[{index}]", item_keys)
    elif _unstacked(old) != _unstacked(new):
        yield FieldChange(path, None if old is _MISSING else old, None if new is _MISSING else new)


def _item_key(*lists: list, keys: tuple[str, ...] = _ITEM_KEYS) -> str | None:
    """The field naming every item of both lists uniquely, if there is one."""
    for key in keys:
        if (all(isinstance(item, dict) and isinstance(item.get(key), str) for items in lists for item in items)
                and all(len({item[key] for item in items}) == len(items) for items in lists)):
            return key
    return None


def _unstacked(value: Any) -> Any:
    """A value with every URN in it (resource references) keyed like the resources themselves."""
    if isinstance(value, str):
        return resource_key(value)
    if isinstance(value, list):
        return [_unstacked(v) for v in value]
    if isinstance(value, dict):
        return {k: _unstacked(v) for k, v in value.items()}
    return value


# --- presenting -----------------------------------------------------------------

MARKS = {"added": "+", "removed": "-", "changed": "~", "replaced": "+-"}
_COLOURS = {"added": "32", "removed": "31", "changed": "33", "replaced": "35"}
SENSITIVE = "(sensitive value)"


def summary(changes: list[Change]) -> str:
    n = {kind: sum(c.kind == kind for c in changes) for kind in MARKS}
    return (f"{n['added']} to add, {n['changed']} to change, {n['replaced']} to replace, "
            f"{n['removed']} to delete")


def _shown(resource: Resource, change: FieldChange) -> FieldChange:
    """Secret data never leaves the plan: a Secret's data and every secret placeholder read the same."""
    if resource.inputs.get("kind") == "Secret" and change.path.split(".")[0] in ("data", "stringData"):
        return change._replace(old=SENSITIVE if change.old is not None else None,
                               new=SENSITIVE if change.new is not None else None)
    return change


def _value(value: Any) -> str:
    if value is None:
        return "(none)"
    if value == SECRET:
        return SENSITIVE
    return json.dumps(value, sort_keys=True)


def _embedded(value: Any) -> Any:
    """A JSON document held in a string (the ledger's spec record, a dashboard), parsed; else _MISSING."""
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            pass
    return _MISSING


def _detail(change: FieldChange, indent: str) -> list[str]:
    """The lines of one field change: old -> new, or the fields of embedded JSON, or a line diff of text."""
    old, new = change.old, change.new
    inner_old, inner_new = _embedded(old), _embedded(new)
    if inner_old is not _MISSING and inner_new is not _MISSING:
        return [f"{indent}{change.path}:"] + [line for inner in field_changes(inner_old, inner_new, "")
                                               for line in _detail(inner, indent + "    ")]
    if isinstance(old, str) and isinstance(new, str) and ("\n" in old or "\n" in new):
        lines = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=1)
        return [f"{indent}{change.path}:"] + [f"{indent}    {line}" for line in list(lines)[2:]]
    return [f"{indent}{change.path}: {_value(old)} -> {_value(new)}"]


def heading(change: Change) -> str:
    res = change.resource
    text = f"{MARKS[change.kind]} {short_type(res.type)} {object_name(res)}  ({res.name})"
    return text + (f"  [replace: {'; '.join(change.reasons)}]" if change.reasons else "")


def diff_lines(changes: list[Change], colour: bool = False) -> list[str]:
    """Text: one heading per resource, one line per changed field, and the summary."""
    if not changes:
        return ["no changes"]
    lines = []
    for change in changes:
        head = heading(change)
        lines.append(f"\033[{_COLOURS[change.kind]}m{head}\033[0m" if colour else head)
        for field in change.fields:
            lines += _detail(_shown(change.resource, field), "    ")
    return [*lines, summary(changes)]


def diff_json(changes: list[Change]) -> str:
    doc = {"summary": summary(changes), "changes": [{
        "action": change.kind, "type": change.resource.type, "name": change.resource.name,
        "object": object_name(change.resource), "urn": change.resource.urn, "replaceReasons": list(change.reasons),
        "fields": [dict(_shown(change.resource, f)._asdict()) for f in change.fields],
    } for change in changes]}
    return json.dumps(doc, indent=2, sort_keys=True)


def _component(resource: Resource) -> str:
    """The top-level component a resource belongs to, by type (Tenancy, Serving, ...)."""
    return short_type(resource.component_path.split("$", 1)[0])


def _cell(text: str) -> str:
    return "`" + text.replace("|", "\\|").replace("`", "'").replace("\n", " ") + "`" if text else ""


def _below(change: FieldChange) -> list[str]:
    """A long value's diff block: its embedded fields or changed lines; a long single line as - old / + new."""
    detail = _detail(change, "")
    if len(detail) > 1:
        return detail[1:]
    return [f"- {_value(change.old)}", f"+ {_value(change.new)}"]


def diff_markdown(changes: list[Change]) -> str:
    """For a pull request: the summary, then per component a collapsible table of its changes."""
    if not changes:
        return "**No changes.**\n"
    groups: dict[str, list[Change]] = {}
    for change in changes:
        groups.setdefault(_component(change.resource), []).append(change)
    out = [f"**Plan:** {summary(changes)}", ""]
    for component, items in sorted(groups.items()):
        out += [f"<details><summary><code>{component}</code>: {plural(len(items), 'change')}</summary>", "",
                "| | resource | field | before | after |", "|---|---|---|---|---|"]
        below: list[str] = []
        for change in items:
            res = f"{short_type(change.resource.type)} {object_name(change.resource)}"
            rows = [_shown(change.resource, f) for f in change.fields] or [FieldChange("", None, None)]
            for field in rows:
                old = "" if field.old is None else _value(field.old)
                new = "" if field.new is None else _value(field.new)
                if max(len(old), len(new)) > 80 or any("\n" in v for v in (field.old, field.new) if isinstance(v, str)):
                    old, new = "", "(below)"
                    below += [f"`{res}` `{field.path}`:", "", "```diff", *_below(field), "```", ""]
                out.append(f"| {MARKS[change.kind]} | {_cell(res)} | {_cell(field.path)} | {_cell(old)} | "
                           f"{_cell(new)} |")
            if change.reasons:
                out.append(f"| | | _replaced: {'; '.join(change.reasons)}_ | | |")
        out += ["", *below, "</details>", ""]
    return "\n".join(out)


def render(changes: list[Change], fmt: str, colour: bool = False) -> str:
    if fmt == "json":
        return diff_json(changes)
    if fmt == "markdown":
        return diff_markdown(changes)
    return "\n".join(diff_lines(changes, colour))
