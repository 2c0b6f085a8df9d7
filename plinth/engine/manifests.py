"""Kubernetes objects to and from YAML text, exactly as PyYAML's safe loader and dumper read and write them.

A render reads megabytes of chart output and writes it again with sorted keys. PyYAML spends most of that time
in Python, building and resolving a node per value. Both directions here work on libyaml's events instead; PyYAML's
own resolver, constructors and representer still decide every scalar. What the shortcut does not cover (explicit
tags, anchors and aliases, merge keys, complex keys, values other than JSON's) goes to PyYAML whole.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import ScalarNode


# libyaml where PyYAML was built with it (CSafeLoader and CSafeDumper exist only then).
class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe loading that reads `=` as the string it is (YAML 1.1's `value` type trips some CRDs)."""


_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_STYLE: dict[str, Any] = {"allow_unicode": True, "width": 120}

_STR, _MAP, _SEQ = "tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_RESOLVER = yaml.resolver.Resolver()
_CONSTRUCTOR = yaml.constructor.SafeConstructor()
_REPRESENTER = yaml.representer.SafeRepresenter()
_SHARED = (str, bool, int, float, type(None))
"""Values PyYAML never writes as an alias, so one object may stand for every equal scalar."""


class _Unsure(Exception):
    """Something the shortcut leaves to PyYAML."""


def load_documents(text: str) -> list[dict]:
    """The mapping documents of a YAML stream (others are dropped), as `yaml.load_all` with the safe loader."""
    loader = _Loader(text)
    try:
        docs = _load(loader)
    except _Unsure:
        docs = list(yaml.load_all(text, Loader=_Loader))
    finally:
        loader.dispose()
    return [doc for doc in docs if isinstance(doc, dict)]


class _OpenMapping:
    """A mapping being read, and its key waiting for a value."""

    __slots__ = ("mapping", "key")

    def __init__(self, mapping: dict):
        self.mapping, self.key = mapping, _NO_KEY


_NO_KEY = object()
_SCALAR, _MAPPING, _SEQUENCE = yaml.ScalarEvent, yaml.MappingStartEvent, yaml.SequenceStartEvent
_NODES = (_SCALAR, _MAPPING, _SEQUENCE)
_ENDS = (yaml.MappingEndEvent, yaml.SequenceEndEvent)


def _load(loader: Any) -> list[Any]:
    docs: list[Any] = []
    known: dict[tuple[str, bool], Any] = {}  # a scalar's value by its text and plainness: names and types repeat
    open_: list[Any] = []  # the lists and _OpenMappings being read, innermost last
    while (event := loader.get_event()) is not None:
        kind = type(event)
        value: Any
        opened: Any  # a list or an _OpenMapping that the next events fill, or None
        if kind in _NODES and (event.anchor is not None or event.tag is not None):
            raise _Unsure
        if kind is _SCALAR:
            value = known.get((event.value, event.implicit[0]), _NO_KEY)
            if value is _NO_KEY:
                value = _scalar(event.value, event.implicit)
                if type(value) in _SHARED:
                    known[event.value, event.implicit[0]] = value
            opened = None
        elif kind is _MAPPING:
            value = {}
            opened = _OpenMapping(value)
        elif kind is _SEQUENCE:
            value = opened = []
        elif kind in _ENDS:
            open_.pop()
            continue
        elif kind is yaml.AliasEvent:
            raise _Unsure
        else:  # stream and document boundaries
            continue
        # The value goes where the stream is: a document, a list's item, a mapping's key or its key's value.
        if not open_:
            docs.append(value)
        elif type(top := open_[-1]) is not _OpenMapping:
            top.append(value)
        elif top.key is _NO_KEY:
            if opened is not None:
                raise _Unsure  # a mapping or a list as a key
            top.key = value
        else:
            top.mapping[top.key] = value
            top.key = _NO_KEY
        if opened is not None:
            open_.append(opened)
    return docs


def _scalar(text: str, implicit: tuple[bool, bool]) -> Any:
    tag = _RESOLVER.resolve(ScalarNode, text, implicit)
    if tag == _STR:
        return text
    build = _Loader.yaml_constructors.get(tag)
    if build is None:  # a merge key `<<`, or a type the safe loader refuses
        raise _Unsure
    return build(_CONSTRUCTOR, ScalarNode(tag, text))


def dump_sorted(doc: Any, first: tuple[str, ...] = ()) -> str:
    """`yaml.safe_dump` of `doc` in block style with every mapping's keys sorted, the top mapping's `first`
    keys ahead of the rest (in that order), unicode kept and lines folded at 120 columns."""
    events: list[Any] = [yaml.StreamStartEvent(), yaml.DocumentStartEvent()]
    try:
        _events(doc, first, events)
    except _Unsure:
        return dump(sorted_mappings(doc, first))
    events += [yaml.DocumentEndEvent(), yaml.StreamEndEvent()]
    return yaml.emit(events, Dumper=_DUMPER, **_STYLE)


def dump(doc: Any) -> str:
    """`yaml.safe_dump` of `doc` in block style, keys in their order, unicode kept, lines folded at 120 columns."""
    return yaml.dump(doc, Dumper=_DUMPER, default_flow_style=False, sort_keys=False, **_STYLE)


_WRITTEN: dict[str, tuple[bool, bool]] = {}
"""A string's implicit flags: written plain only where a plain scalar reads back as this string."""


def _events(value: Any, first: tuple[str, ...], out: list[Any]) -> None:
    if isinstance(value, dict):
        out.append(yaml.MappingStartEvent(None, _MAP, True, flow_style=False))
        items = sorted(value.items())
        if first:
            items = [(k, value[k]) for k in first if k in value] + [(k, v) for k, v in items if k not in first]
        for key, item in items:
            out.append(_string(key) if type(key) is str else _other(key))
            if type(item) is str:
                out.append(_string(item))
            else:
                _events(item, (), out)
        out.append(yaml.MappingEndEvent())
    elif isinstance(value, list):
        out.append(yaml.SequenceStartEvent(None, _SEQ, True, flow_style=False))
        for item in value:
            _events(item, (), out)
        out.append(yaml.SequenceEndEvent())
    else:
        out.append(_string(value) if type(value) is str else _other(value))


def _string(value: str) -> Any:
    flags = _WRITTEN.get(value)
    if flags is None:
        flags = (_RESOLVER.resolve(ScalarNode, value, (True, False)) == _STR, True)
        if len(_WRITTEN) < 100_000:
            _WRITTEN[value] = flags
    return yaml.ScalarEvent(None, _STR, flags, value)


def _other(value: Any) -> Any:
    if type(value) not in _SHARED:  # dates, bytes, subclasses: PyYAML's representer (and its aliases) decides
        raise _Unsure
    node: Any = _REPRESENTER.represent_data(value)
    plain = _RESOLVER.resolve(ScalarNode, node.value, (True, False)) == node.tag
    return yaml.ScalarEvent(None, node.tag, (plain, False), node.value, style=node.style)


def sorted_mappings(value: Any, first: tuple[str, ...] = ()) -> Any:
    """`value` with every mapping's keys in sorted order (the top mapping's `first` keys ahead, in that order)."""
    if isinstance(value, dict):
        items = {k: sorted_mappings(v) for k, v in sorted(value.items())}
        return {**{k: items[k] for k in first if k in items}, **items}
    if isinstance(value, list):
        return [sorted_mappings(v) for v in value]
    return value


HEAD = ("apiVersion", "kind", "metadata")
"""An object's keys written first; every other mapping's keys are in sorted order."""
# Apply order for readers (of a render): cluster-scoped foundations first.
KIND_ORDER = ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "ServiceAccount",
              "Secret", "ConfigMap", "Role", "RoleBinding", "ResourceQuota", "LimitRange", "NetworkPolicy")


def redact(obj: dict) -> dict:
    """A Kubernetes object safe to print: Secret payloads removed and the removal annotated."""
    if obj.get("kind") != "Secret":
        return obj
    payload = sorted(k for k in ("data", "stringData") if k in obj)
    if not payload:
        return obj
    out = {k: v for k, v in obj.items() if k not in payload}
    meta = dict(out.get("metadata", {}))
    meta["annotations"] = {**meta.get("annotations", {}), "plinth.dev/redacted": ",".join(payload)}
    out["metadata"] = meta
    return out


def sort_key(obj: dict) -> str:
    """Prefix that orders documents: kind order, namespace, name (stripped before writing)."""
    kind = obj.get("kind", "")
    rank = KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)
    meta = obj.get("metadata", {})
    return f"{rank:03d}/{kind}/{meta.get('namespace', '')}/{meta.get('name', '')}\x00"


def as_written(obj: dict) -> str:
    """An object as a render writes it: its sort key, then its YAML (Secret payloads removed, `HEAD` first, every
    other key sorted)."""
    return sort_key(obj) + dump_sorted(redact(obj), HEAD)
