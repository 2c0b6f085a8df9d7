"""YAML documents that remember where every value came from, and their merge.

A document is read into `LMap` / `LSeq` (plain dict / list subclasses) whose
`locs` give the position of each key or item. Merging builds new containers
and carries the positions of whichever file wrote the value, so an error in
the merged spec still points at the right file and line.

Merge rules (blueprint `extends:` and stack overrides use the same ones):
- maps deep-merge key by key;
- lists whose items are all maps with a string `name` merge by name (new names are
  appended; an item `{name: x, $delete: true}` removes x);
- any other value (scalars, plain lists) is replaced;
- a key set to null (`~`) is deleted.
Keys starting with `x-` are extensions: kept out of the spec, ignored.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.reader import ReaderError

from plinth.spec.errors import Loc, SpecError, SpecInvalid

DELETE = "$delete"


class LMap(dict):
    """A mapping with the position of the mapping and of each key."""

    def __init__(self, *args: Any, loc: Loc | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.loc = loc
        self.locs: dict[Any, Loc] = {}


class LSeq(list):
    """A sequence with the position of the sequence and of each item."""

    def __init__(self, *args: Any, loc: Loc | None = None):
        super().__init__(*args)
        self.loc = loc
        self.locs: list[Loc | None] = []


def display_path(path: Path) -> str:
    """Paths relative to the working directory when possible, as users typed them."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def read_yaml(path: Path) -> Any:
    """Read one YAML file into located containers; YAML errors become SpecInvalid."""
    name = display_path(path)
    text = _read_text(path, name)
    fast = _read_fast(text, name)
    if fast is not _UNSURE:
        return fast
    try:
        _check_shape(text, name)
        yaml = YAML(typ="rt")
        yaml.Constructor = _Constructor
        raw = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Loc(name, mark.line + 1, mark.column + 1) if mark else None
        problem = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        raise SpecInvalid([SpecError(loc, "", f"invalid YAML: {problem}")]) from None
    except ReaderError as exc:  # a character YAML does not allow (NUL, most control characters)
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - text.rfind("\n", 0, exc.position)
        raise SpecInvalid([SpecError(Loc(name, line, col), "", f"invalid YAML: character #x{exc.character:04x} is "
                                     f"not allowed ({exc.reason})")]) from None
    except (YAMLError, ValueError, TypeError, KeyError, IndexError) as exc:  # unlocated: no node to point at
        raise SpecInvalid([SpecError(None, "", f"{name}: invalid YAML: {exc}")]) from None
    return _locate(raw, name, Loc(name, 1, 1))


class _Constructor(RoundTripConstructor):
    """Values YAML parses but cannot build (`2001-13-14` read as a date, `!!int abc`) fail at their node."""

    def construct_non_recursive_object(self, node: Any, tag: str | None = None) -> Any:
        try:
            return super().construct_non_recursive_object(node, tag)
        except YAMLError:
            raise
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise ConstructorError(None, None, f"cannot read this value: {exc}", node.start_mark) from None


_CLoader = getattr(yaml, "CSafeLoader", None)
"""libyaml's loader where PyYAML was built with it."""

# Bounds that hold for ANY input: a spec is small, so a hostile or broken file is refused
# before it can cost memory or time (documented in the README).
MAX_BYTES = 1 << 20
MAX_NODES = 100_000
MAX_DEPTH = 64
MAX_DIGITS = 100
"""Of a plain integer: no spec value comes near it, and Python refuses to convert integers of
more than 4,300 digits to text at all (a YAML `gpu: 999...9` would end in a ValueError)."""
_INTEGER = re.compile(r"^[-+]?(0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+|[0-9][0-9_]*)$")


def _read_text(path: Path, name: str) -> str:
    """The file's text: a regular file of at most MAX_BYTES (no FIFOs, devices or directories)."""
    data = read_input(path, name)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecInvalid([SpecError(None, "", f"{name}: not UTF-8: {exc}")]) from None


def read_input(path: Path, name: str, limit: int = MAX_BYTES, what: str = "a spec file", field: str = "") -> bytes:
    """The bytes of an input file, read like a spec file: a regular file of at most `limit` bytes.

    Opened without blocking and checked on the open descriptor, so a FIFO (which would block the open
    or the read forever), a device (/dev/zero never ends) or a directory is refused, also when a symlink
    or a swap after a check leads there. Raises SpecInvalid naming the file (and `field`).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except FileNotFoundError:
        raise SpecInvalid([SpecError(None, field, f"{name}: file not found")]) from None
    except OSError as exc:
        raise SpecInvalid([SpecError(None, field, f"{name}: cannot read: {exc.strerror or exc}")]) from None
    with os.fdopen(fd, "rb") as stream:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SpecInvalid([SpecError(None, field, f"{name}: not a regular file")])
        try:
            data = stream.read(limit + 1)
        except OSError as exc:
            raise SpecInvalid([SpecError(None, field, f"{name}: cannot read: {exc.strerror or exc}")]) from None
    if len(data) > limit:
        raise SpecInvalid([SpecError(None, field, f"{name}: larger than the {limit // 1024} KiB limit for {what}")])
    return data


def _check_shape(text: str, name: str) -> None:
    """Refuse aliases and oversized or too deeply nested documents from the event stream, before building anything.

    Aliases (`*name`, also behind `<<:` merge keys) are refused outright: each one can expand
    to a copy of a whole subtree, so a few hundred bytes can demand gigabytes ("billion
    laughs"). Repeat the value, or share it with `extends:`.
    """
    if _CLoader is not None:
        try:
            return _check_events(yaml.parse(text, Loader=_CLoader), name)  # C: ~10x faster, the same events
        except yaml.YAMLError:
            pass  # ruamel reads some YAML 1.2 that libyaml (1.1) does not; where neither does, its error is located
    _check_events(YAML(typ="rt").parse(text), name)


def _check_events(events: Iterator[Any], name: str) -> None:
    for _ in _checked(events, name):
        pass


def _checked(events: Iterator[Any], name: str) -> Iterator[Any]:
    """The events, each passed on once it is within the bounds `_check_shape` names."""
    depth = nodes = 0
    for event in events:
        kind = type(event).__name__
        mark = event.start_mark
        if kind == "AliasEvent":
            raise SpecInvalid([SpecError(Loc(name, mark.line + 1, mark.column + 1), "",
                                         "YAML aliases (*name) are not accepted: an alias can expand without bound; "
                                         "repeat the value or share it with `extends:`")])
        if kind in ("MappingStartEvent", "SequenceStartEvent"):
            depth += 1
            if depth > MAX_DEPTH:
                raise SpecInvalid([SpecError(Loc(name, mark.line + 1, mark.column + 1), "",
                                             f"nested deeper than the limit of {MAX_DEPTH} levels")])
        elif kind in ("MappingEndEvent", "SequenceEndEvent"):
            depth -= 1
        if kind == "ScalarEvent" and not event.style and len(event.value) > MAX_DIGITS \
                and _INTEGER.match(event.value):
            raise SpecInvalid([SpecError(Loc(name, mark.line + 1, mark.column + 1), "",
                                         f"a number of more than {MAX_DIGITS} digits (quote it if it is text)")])
        if kind in ("ScalarEvent", "MappingStartEvent", "SequenceStartEvent"):
            nodes += 1
            if nodes > MAX_NODES:
                raise SpecInvalid([SpecError(Loc(name, mark.line + 1, mark.column + 1), "",
                                             f"more than the limit of {MAX_NODES} values in one file")])
        yield event


_UNSURE = object()
"""`_read_fast`'s answer where only the round-trip reader can say what the file holds."""
_RT = YAML(typ="rt")
_BUILT_TAGS = ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def _read_fast(text: str, name: str) -> Any:
    """The located document built straight from libyaml's events: the same values and positions as the
    round-trip reader (YAML 1.2: `yes` and `on` stay text), about ten times faster on large specs.

    Only for the plain case; anything else (no libyaml, a parse error, explicit tags, a `%YAML`
    directive, several documents, complex or repeated keys, merge keys, dates) is `_UNSURE` and
    goes to the round-trip reader, which also locates every error.
    """
    if _CLoader is None:
        return _UNSURE
    try:
        events = _checked(yaml.parse(text, Loader=_CLoader), name)
        if not isinstance(next(events), yaml.StreamStartEvent):
            return _UNSURE
        start = next(events)
        if not isinstance(start, yaml.DocumentStartEvent) or start.version or start.tags:
            return _UNSURE
        doc = _build(events, next(events), name, Loc(name, 1, 1))
        if not isinstance(next(events), yaml.DocumentEndEvent) or not isinstance(next(events), yaml.StreamEndEvent):
            return _UNSURE
    except (yaml.YAMLError, _Unsure, StopIteration):
        return _UNSURE
    return doc


class _Unsure(Exception):
    """Raised inside `_build` for what it leaves to the round-trip reader."""


def _build(events: Iterator[Any], event: Any, name: str, loc: Loc) -> Any:
    if getattr(event, "tag", None) is not None:
        raise _Unsure
    if isinstance(event, yaml.ScalarEvent):
        return _scalar(event)
    if isinstance(event, yaml.SequenceStartEvent):
        seq = LSeq(loc=loc)
        while not isinstance(item := next(events), yaml.SequenceEndEvent):
            item_loc = _event_loc(item, name)
            seq.append(_build(events, item, name, item_loc))
            seq.locs.append(item_loc)
        _reject_duplicate_names(seq)
        return seq
    if isinstance(event, yaml.MappingStartEvent):
        out, keys = LMap(loc=loc), set()
        while not isinstance(key := next(events), yaml.MappingEndEvent):
            if not isinstance(key, yaml.ScalarEvent) or key.tag is not None:
                raise _Unsure
            value = _scalar(key)
            if value in keys or value == "<<" and not key.style:
                raise _Unsure  # the round-trip reader names a repeated key; `<<` merges
            keys.add(value)
            key_loc = _event_loc(key, name)
            item = _build(events, next(events), name, key_loc)
            if not (isinstance(value, str) and value.startswith("x-")):
                out[value] = item
                out.locs[value] = key_loc
        return out
    raise _Unsure  # an alias: `_checked` refuses those first


def _event_loc(event: Any, name: str) -> Loc:
    return Loc(name, event.start_mark.line + 1, event.start_mark.column + 1)


def _scalar(event: Any) -> Any:
    """A scalar as the round-trip reader makes it: quoted and block scalars are text, plain ones resolved."""
    if event.style:
        return event.value
    tag = _RT.resolver.resolve(ScalarNode, event.value, (True, False))
    if tag == "tag:yaml.org,2002:str":
        return event.value
    if tag == "tag:yaml.org,2002:null":
        return None
    if tag not in _BUILT_TAGS:
        raise _Unsure  # dates and YAML's other types
    try:
        value = _RT.constructor.construct_object(ScalarNode(tag, event.value), deep=True)
    except (YAMLError, ValueError, TypeError, KeyError, IndexError):
        raise _Unsure from None
    return value if type(value) is bool else (int(value) if isinstance(value, int) else float(value))


def read_extends(path: Path) -> str | None:
    """The `extends:` of an already-loaded blueprint, without building the document (for its provenance)."""
    text = _read_text(path, display_path(path))
    try:
        root = yaml.compose(text, Loader=_CLoader or yaml.SafeLoader)
    except yaml.YAMLError:
        root = None
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == "extends" and isinstance(value, yaml.ScalarNode):
                return value.value
        return None
    doc = read_yaml(path)  # what libyaml cannot read, ruamel can
    return doc.get("extends") if isinstance(doc, dict) else None


def _locate(node: Any, name: str, loc: Loc) -> Any:
    if isinstance(node, CommentedMap):
        out = LMap(loc=loc)
        for key, value in node.items():
            key_loc = _position(node.lc.key(key), name, loc)
            if isinstance(key, str) and key.startswith("x-"):
                continue
            out[key] = _locate(value, name, key_loc)
            out.locs[key] = key_loc
        return out
    if isinstance(node, CommentedSeq):
        seq = LSeq(loc=loc)
        for index, value in enumerate(node):
            item_loc = _position(node.lc.item(index), name, loc)
            seq.append(_locate(value, name, item_loc))
            seq.locs.append(item_loc)
        _reject_duplicate_names(seq)
        return seq
    if hasattr(node, "value") and type(node).__module__.startswith("ruamel"):
        return node.value  # tagged / formatted scalars
    if isinstance(node, str):
        return str(node)
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def _position(pos: tuple[int, int] | None, name: str, around: Loc) -> Loc:
    """A key's or item's position; a container built by a tag (`!!str [a]`) has none: its own then."""
    return Loc(name, pos[0] + 1, pos[1] + 1) if pos else around


def _reject_duplicate_names(seq: LSeq) -> None:
    """Named lists merge by name, so one list naming an item twice is ambiguous."""
    if not _is_named_list(seq):
        return
    first: dict[Any, Loc | None] = {}
    for item, loc in zip(seq, seq.locs):
        key = item["name"]
        if key in first:
            where = first[key]
            raise SpecInvalid([SpecError(loc, "", f"duplicate name {key!r} in this list "
                                         f"(first at line {where.line if where else '?'})")])
        first[key] = loc


def _is_named_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(i, dict) and isinstance(i.get("name"), str) for i in value)


def merge(base: Any, over: Any) -> Any:
    """Merge `over` onto `base` by the rules in this module's docstring."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = LMap(loc=getattr(base, "loc", None))
        for key, value in base.items():
            out[key] = value
            if isinstance(base, LMap) and key in base.locs:
                out.locs[key] = base.locs[key]
        for key, value in over.items():
            key_loc = over.locs.get(key) if isinstance(over, LMap) else None
            if value is None:
                out.pop(key, None)
                out.locs.pop(key, None)
                continue
            out[key] = merge(out[key], value) if key in out else _strip_directives(value)
            if key_loc:
                out.locs[key] = key_loc
        return out
    if _is_named_list(base) and _is_named_list(over):
        return _merge_named(base, over)
    return _strip_directives(over)


def _merge_named(base: list, over: list) -> LSeq:
    items: dict[Any, tuple[Any, Loc | None]] = {}
    for index, item in enumerate(base):
        items[item["name"]] = (item, _item_loc(base, index))
    for index, item in enumerate(over):
        key = item["name"]
        if DELETE in item:
            where = _item_loc(over, index)
            if item[DELETE] is not True:
                raise SpecInvalid([SpecError(where, DELETE, f"{DELETE} takes only true (it removes the item "
                                             f"named {key!r}), got {item[DELETE]!r}")])
            if key not in items:
                known = ", ".join(sorted(map(str, items))) or "none"
                raise SpecInvalid([SpecError(where, DELETE, f"there is no item named {key!r} to delete "
                                             f"(items here: {known})")])
            items.pop(key)
            continue
        merged = merge(items[key][0], item) if key in items else _strip_directives(item)
        items[key] = (merged, _item_loc(over, index))
    out = LSeq(loc=getattr(over, "loc", None))
    for item, loc in items.values():
        out.append(item)
        out.locs.append(loc)
    return out


def _item_loc(seq: list, index: int) -> Loc | None:
    return seq.locs[index] if isinstance(seq, LSeq) and index < len(seq.locs) else None


def _strip_directives(value: Any) -> Any:
    """A value that lands without a base must not carry merge directives either."""
    if isinstance(value, dict):
        out = LMap(loc=getattr(value, "loc", None))
        locs = getattr(value, "locs", {})
        for key, item in value.items():
            if key != DELETE:
                out[key] = _strip_directives(item)
                if key in locs:
                    out.locs[key] = locs[key]
        return out
    if isinstance(value, list):
        seq = LSeq(loc=getattr(value, "loc", None))
        for item, loc in zip(value, getattr(value, "locs", [None] * len(value))):
            if not (isinstance(item, dict) and item.get(DELETE) is True):
                seq.append(_strip_directives(item))
                seq.locs.append(loc)
        return seq
    return value


def to_plain(value: Any) -> Any:
    """Located containers to plain dict/list (for pydantic and for comparisons)."""
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    return value
