"""Editing YAML text in place: a value set, inserted or deleted at a key path, everything else kept.

Every change is spliced in at the positions ruamel's round-trip composer reports, so everything else
(comments, blank lines, quoting, flow style, indentation, `~` vs `null`) stays byte for byte. (A ruamel
load + dump would not: it writes one indentation for the whole file, turns `~`/`null` into empty values
and drops the comment lines after a deleted key.)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

DELETE = object()
"""A change that removes the key."""
NULL = object()
"""A change that sets the key to `~` (the merge rules' deletion of an inherited value)."""


class Refused(ValueError):
    """A request that cannot be carried out (the CLI exits 2 and the file stays as it is)."""


@dataclass(frozen=True)
class Named:
    """The item of a named list (teams, models) with this `name`."""

    name: str


KeyPath = tuple  # of str keys and Named items


def apply(text: str, path: KeyPath, value: Any) -> str:
    """`text` with the value at `path` set (NULL: `~`) or deleted (DELETE); missing parents are created.

    Keys and named items are found in the composed node tree; the change is spliced into the text at
    the node positions, so nothing else changes.
    """
    doc = _Doc(text)
    node = doc.root
    for i, part in enumerate(path):
        rest = path[i + 1:]
        if isinstance(part, Named):
            item = _item(node, part.name) if isinstance(node, SequenceNode) else None
            if item is None:
                if value is DELETE:
                    return text
                if not isinstance(node, SequenceNode):
                    raise Refused(f"expected a list at {_shown(path[:i])}")
                return doc.append(node, {"name": part.name, **_nest(rest, value)})
            node = item
            continue
        if not isinstance(node, MappingNode):
            raise Refused(f"expected a mapping at {_shown(path[:i])}")
        pair = next(((k, v) for k, v in node.value if k.value == part), None)
        if pair is None:
            return text if value is DELETE else doc.insert(node, part, _nest(rest, value))
        key, child = pair
        if not rest:
            return doc.delete(node, key) if value is DELETE else doc.set(node, key, value)
        if not isinstance(child, MappingNode | SequenceNode):  # a null or scalar where the path goes on
            if value is DELETE:
                return text
            return doc.set(node, key, _nest(rest, value))
        node = child
    raise Refused(f"nothing to change at {_shown(path)}")


def _nest(path: KeyPath, value: Any) -> Any:
    """The value to insert where `path` is missing: {a: {b: value}} for (a, b); a named item, a list of it."""
    for part in reversed(path):
        value = [{"name": part.name, **value}] if isinstance(part, Named) else {part: value}
    return value


def _item(seq: SequenceNode, name: str) -> MappingNode | None:
    for item in seq.value:
        if isinstance(item, MappingNode) and any(k.value == "name" and v.value == name for k, v in item.value):
            return item
    return None


def _shown(path: KeyPath) -> str:
    return ".".join(f"[{p.name}]" if isinstance(p, Named) else p for p in path).replace(".[", "[") or "the top"


class _Doc:
    """One YAML text and its composed node tree; each edit returns the new text."""

    def __init__(self, text: str):
        self.text = text
        self.root = YAML(typ="rt").compose(text)
        self.newline = "\r\n" if "\r\n" in text else "\n"
        self.step, self.dash = _indentation(self.root)

    # positions

    def line_start(self, index: int) -> int:
        return self.text.rfind("\n", 0, index) + 1

    def line_end(self, index: int) -> int:
        """Just after the line break ending the line of `index` (its end-of-line comment included)."""
        if index > 0 and self.text[index - 1] == "\n":
            return index
        found = self.text.find("\n", index)
        return len(self.text) if found < 0 else found + 1

    def colon(self, key: Node) -> int:
        return self.text.index(":", key.end_mark.index) + 1

    def end(self, key: Node | None, value: Node) -> int:
        """Where a value's text ends (for a block container, where its last value ends)."""
        if _empty(value):
            return self.colon(key) if key is not None else value.start_mark.index
        if isinstance(value, MappingNode) and not value.flow_style and value.value:
            return self.end(*value.value[-1])
        if isinstance(value, SequenceNode) and not value.flow_style and value.value:
            return self.end(None, value.value[-1])
        return value.end_mark.index

    def splice(self, start: int, end: int, new: str) -> str:
        return self.text[:start] + new.replace("\n", self.newline) + self.text[end:]

    def insert_lines(self, index: int, lines: str) -> str:
        if index == len(self.text) and self.text and not self.text.endswith("\n"):
            lines = "\n" + lines
        return self.splice(index, index, lines)

    # edits

    def set(self, mapping: MappingNode, key: Node, value: Any) -> str:
        old = next(v for k, v in mapping.value if k is key)
        block_old = isinstance(old, MappingNode | SequenceNode) and not old.flow_style
        if not mapping.flow_style and (block_old or not _flat(value)):
            # A block value, or one that needs block lines: the key's lines are rewritten.
            start, end = key.start_mark.index, self.line_end(self.end(key, old))
            pair = _block_pair(self.text[key.start_mark.index:key.end_mark.index], value,
                               key.start_mark.column, self.step, self.dash)
            return self.splice(start, end, pair[key.start_mark.column:])
        if _empty(old):
            return self.splice(self.colon(key), self.colon(key), " " + _flow(value))
        return self.splice(old.start_mark.index, old.end_mark.index, _flow(value, old))

    def insert(self, mapping: MappingNode, key: str, value: Any) -> str:
        if mapping.flow_style:
            return self._flow_insert(mapping, f"{key}: {_flow(value)}")
        last_key, last = mapping.value[-1]
        column = mapping.value[0][0].start_mark.column
        return self.insert_lines(self.line_end(self.end(last_key, last)),
                                 _block_pair(key, value, column, self.step, self.dash))

    def append(self, seq: SequenceNode, item: Any) -> str:
        if seq.flow_style or not seq.value:
            return self._flow_insert(seq, _flow(item))
        dash, column = seq.start_mark.column, seq.value[0].start_mark.column
        return self.insert_lines(self.line_end(self.end(None, seq.value[-1])),
                                 _block_item(item, dash, column, self.step, self.dash))

    def delete(self, mapping: MappingNode, key: Node) -> str:
        pairs = mapping.value
        index = next(i for i, (k, _) in enumerate(pairs) if k is key)
        if mapping.flow_style:
            if index > 0:  # from the end of the value before: the comma goes with it
                return self.splice(self.end(*pairs[index - 1]), self.end(*pairs[index]), "")
            if len(pairs) > 1:
                return self.splice(key.start_mark.index, pairs[1][0].start_mark.index, "")
            return self.splice(key.start_mark.index, self.end(*pairs[0]), "")
        start = key.start_mark.index
        if not self.text[self.line_start(start):start].strip():  # the key's lines, up to its value's end
            return self.splice(self.line_start(start), self.line_end(self.end(*pairs[index])), "")
        # The first key of a list item (`- key: ...`): the next key moves up onto the dash's line.
        if len(pairs) == 1:
            raise Refused(f"cannot remove {key.value!r}: it is the only key of its list item")
        return self.splice(start, pairs[1][0].start_mark.index, "")

    def _flow_insert(self, node: Node, entry: str) -> str:
        if node.value:
            last = node.value[-1]
            at = self.end(*last) if isinstance(last, tuple) else self.end(None, last)
            return self.splice(at, at, ", " + entry)
        at = node.end_mark.index - 1  # before the closing bracket
        return self.splice(at, at, entry)


def _empty(node: Node) -> bool:
    """A value written as nothing at all (`key:`): its marks point at the next token, not at it."""
    # A composed scalar always has its tag resolved.
    return isinstance(node, ScalarNode) and node.tag.endswith(":null") and node.value == ""  # type: ignore[union-attr]


def _indentation(root: Node) -> tuple[int, int]:
    """(mapping indent, dash offset of a block list under its key) as the file writes them; default 2, 2."""
    step = dash = None
    stack = [root]
    while stack and (step is None or dash is None):
        node = stack.pop(0)
        if isinstance(node, MappingNode) and not node.flow_style:
            for key, value in node.value:
                if isinstance(value, MappingNode) and not value.flow_style and value.value and step is None:
                    step = value.value[0][0].start_mark.column - key.start_mark.column
                if isinstance(value, SequenceNode) and not value.flow_style and value.value and dash is None:
                    dash = value.start_mark.column - key.start_mark.column
                stack.append(value)
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)
    return step if step and step > 0 else 2, dash if dash is not None and dash >= 0 else 2


# --- writing new YAML ---------------------------------------------------------------

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def _scalar(value: Any, old: Node | None = None) -> str:
    if value is NULL or value is None:
        return "~"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value)
    style = old.style if isinstance(old, ScalarNode) else None
    if style == "'" and "'" not in text and text.isprintable():
        return f"'{text}'"
    if style != '"' and _PLAIN.match(text) and text.lower() not in _RESERVED:
        return text
    return json.dumps(text)  # a JSON string is a YAML double-quoted scalar


def _flat(value: Any) -> bool:
    """A value written on its key's line: a scalar, or a mapping of scalars (in flow style, `{a: 1}`)."""
    if isinstance(value, dict):
        return all(not isinstance(v, dict | list) for v in value.values())
    return not isinstance(value, list)


def _flow(value: Any, old: Node | None = None) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _scalar(value, old)


def _block_pair(key: str, value: Any, column: int, step: int, dash: int) -> str:
    pad = " " * column
    if _flat(value):
        return f"{pad}{key}: {_flow(value)}\n"
    if isinstance(value, list):
        return f"{pad}{key}:\n" + "".join(_block_item(item, column + dash, column + dash + 2, step, dash)
                                          for item in value)
    return f"{pad}{key}:\n" + "".join(_block_pair(k, v, column + step, step, dash) for k, v in value.items())


def _block_item(item: Any, dash: int, column: int, step: int, dash_offset: int) -> str:
    if not isinstance(item, dict):
        return f"{' ' * dash}- {_flow(item)}\n"
    lines = "".join(_block_pair(k, v, column, step, dash_offset) for k, v in item.items())
    return " " * dash + "-" + " " * (column - dash - 1) + lines[column:]
