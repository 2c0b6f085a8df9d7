"""The canary workflow: move one served model's canary and shadow releases by editing a spec file in place.

`plinth canary set | promote | abort | shadow` change one model's `canary` / `shadow` / `stable` in ONE
file: the blueprint named, or with `--stack` the stack file's `plinth:overrides` (never the shared
blueprint). A model the file inherits (from the stack's blueprint, or from the blueprint's `extends:`
parent) gets a minimal entry `{name: <model>, ...}` in the file, which merges onto the inherited model by
name (the list-merge rule), and a release the file inherits is removed with `~`.

The file is edited as text: every change is spliced in at the positions ruamel's round-trip composer
reports, so everything else (comments, blank lines, quoting, flow style, indentation, `~` vs `null`)
stays byte for byte. (A ruamel load + dump would not: it writes one indentation for the whole file,
turns `~`/`null` into empty values and drops the comment lines after a deleted key.) The new text is
validated like `plinth validate` before anything is written, then written atomically.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from plinth.spec.errors import SpecError, SpecInvalid
from plinth.spec.load import load_blueprint_tree, load_spec, read_stack, stack_stage
from plinth.spec.models import Model, PlatformSpec
from plinth.spec.yamltree import display_path, read_input, read_yaml, to_plain

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
Change = tuple[KeyPath, Any]
"""(path inside the model's entry, new value / NULL / DELETE)."""


# --- what to edit --------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The file an edit writes, and how the spec is built from it."""

    path: Path
    stack: str | None
    """None: `path` is a blueprint."""
    blueprint: Path
    """The blueprint the spec starts from: the stack's, or `path` itself."""

    @property
    def root(self) -> KeyPath:
        """Where the spec (or overlay) starts inside the file."""
        return ("config", "plinth:overrides") if self.stack else ()

    @property
    def name(self) -> str:
        return display_path(self.path)


def target(project: Path | None, blueprint: Path | None, stack: str | None) -> Target:
    """The file `plinth canary` edits: the blueprint given, or the stack file of `--stack` (never both)."""
    if blueprint and stack:
        raise _bad_input("give a blueprint or --stack, not both")
    if stack is not None:
        assert project is not None
        path = project / "stacks" / f"Pulumi.{stack}.yaml"
        blueprint, _ = read_stack(project, stack)  # the stack file's own checks
        if stack_stage(project, stack) == "configure":
            raise _bad_input(f"{display_path(path)}: not changed: a configure stack takes its spec from the stack "
                             "it configures: edit that stack")
        return Target(path, stack, blueprint)
    if blueprint is None:
        raise _bad_input("give the blueprint to edit, or --stack NAME to edit that stack's overrides")
    return Target(blueprint, None, blueprint)


def _spec(target: Target, file: Path) -> PlatformSpec:
    """The spec with `file` standing for the target file (merged, validated and rule-checked)."""
    if target.stack:
        config = read_yaml(file).get("config") or {}
        return load_spec(target.blueprint, config.get("plinth:overrides"))
    return load_spec(file)


def _inherited_tree(target: Target) -> Any:
    """The merged tree the target file's content merges onto: the stack's blueprint, the blueprint's
    `extends:` parent, or None for a blueprint that extends nothing."""
    if target.stack:
        return to_plain(load_blueprint_tree(target.blueprint))
    parent = read_yaml(target.path).get("extends")
    return to_plain(load_blueprint_tree(target.path.parent / parent)) if isinstance(parent, str) else None


def _bad_input(message: str) -> SpecInvalid:
    return SpecInvalid([SpecError(None, "", message)])


# --- the edits -----------------------------------------------------------------

Edit = Callable[[Model, "dict | None"], list[Change]]
"""(the model as the spec has it, the model the file inherits or None) -> the changes to the file's entry."""


def set_weight(weight: int) -> Edit:
    def edit(model: Model, inherited: dict | None) -> list[Change]:
        if not 0 <= weight <= 100:
            raise Refused(f"--weight {weight}: expected a percentage from 0 to 100")
        if model.canary is None:
            raise Refused(f"model {model.name!r} has no canary to set the weight of: add `canary: {{version: ...}}` "
                          "to the model first")
        return [] if model.canary.weight == weight else [(("canary", "weight"), weight)]
    return edit


def promote(model: Model, inherited: dict | None) -> list[Change]:
    """The canary's version becomes stable's; the canary is removed. Stable keeps its replicas (and autoscaling):
    the canary was sized for its share of the traffic, stable for all of it."""
    if model.canary is None:
        raise Refused(f"nothing to promote: model {model.name!r} has no canary")
    return [(("stable", "version"), model.canary.version), _remove("canary", inherited)]


def abort(model: Model, inherited: dict | None) -> list[Change]:
    if model.canary is None:
        raise Refused(f"nothing to abort: model {model.name!r} has no canary")
    return [_remove("canary", inherited)]


def shadow(version: str | None, off: bool) -> Edit:
    def edit(model: Model, inherited: dict | None) -> list[Change]:
        if off == (version is not None):
            raise Refused("give either --version V (run a shadow of version V) or --off (remove the shadow)")
        if off:
            if model.shadow is None:
                raise Refused(f"model {model.name!r} has no shadow to turn off")
            return [_remove("shadow", inherited)]
        return [] if model.shadow and model.shadow.version == version else [(("shadow", "version"), version)]
    return edit


def _remove(release: str, inherited: dict | None) -> Change:
    """Deleting the key would let an inherited release merge back in: that one is removed with `~`."""
    return ((release,), NULL if inherited and inherited.get(release) is not None else DELETE)


# --- one request, start to end ---------------------------------------------------


def edited_text(target: Target, model_ref: str, edit: Edit) -> tuple[str, str]:
    """(old text, new text) of the target file; the new text is validated, nothing is written.

    Raises SpecInvalid naming the file for a bad request or a result that would not validate.
    """
    try:
        old = read_text(target)
        model = find_model(_spec(target, target.path), model_ref)
        inherited = _named(_inherited_tree(target), ("serving", "models", Named(model.name)))
        changes = edit(model, inherited)
        entry = (*target.root, "serving", "models", Named(model.name))
        new = old
        for path, value in changes:
            new = apply(new, (*entry, *path), value)
    except Refused as exc:
        raise _refused(target, str(exc)) from None
    except SpecInvalid as exc:
        raise _refused(target, "the spec is invalid as it stands", exc.errors) from None
    if new != old:
        validate_text(target, new)
    return old, new


def read_text(target: Target) -> str:
    """The target file's text as it is (no newline translation), read like a spec file."""
    try:
        text = read_input(target.path, target.name).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(f"not UTF-8: {exc}") from None
    if re.search(r"\r(?!\n)", text):
        # YAML reads a lone CR as a line break; the text edits here split lines at LF only.
        raise Refused("its lines end with a lone CR: convert them to LF (or CRLF) line ends first")
    return text


LOCK_WAIT = 30.0
"""Seconds an edit waits for another edit of the same file to finish before it gives up."""


@contextmanager
def locked(target: Target, wait: float = LOCK_WAIT) -> Iterator[None]:
    """Hold an exclusive lock on the target file from the read to the write: concurrent edits run one
    after the other, each reading what the one before wrote. The lock is on the file itself (no lock
    file left behind); an edit replaces the file, so a waiter that got the lock of a replaced file locks
    the new one."""
    path, deadline = target.path.resolve(), time.monotonic() + wait
    while True:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            yield  # nothing to lock (missing, unreadable): the read reports it
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if time.monotonic() > deadline:
                raise _refused(target, f"another edit of the file has been running for {wait:g}s; "
                                       "try again when it is done") from None
            time.sleep(0.05)
            continue
        mine, now = os.fstat(fd), _stat(path)
        if now and (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino):
            break
        os.close(fd)  # replaced while this edit waited: lock the new file
    try:
        yield
    finally:
        os.close(fd)


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def find_model(spec: PlatformSpec, ref: str) -> Model:
    """A model by `name`, or `team/name` (names are unique in a spec: named lists merge by name)."""
    team, _, name = ref.rpartition("/")
    for model in spec.serving.models:
        if model.name == name:
            if team and model.team != team:
                raise Refused(f"model {name!r} belongs to team {model.team!r}, not {team!r}")
            return model
    known = ", ".join(sorted(m.name for m in spec.serving.models)) or "none"
    raise Refused(f"no model named {name!r} in serving.models (models: {known})")


def validate_text(target: Target, text: str) -> None:
    """Load the spec with `text` in place of the target file, exactly as `plinth validate` does.

    The text goes to a temporary file beside the target, so `extends:` resolves the same; errors name
    the target file.
    """
    try:
        tmp = _temp_beside(target.path, text)
    except OSError as exc:
        raise _refused(target, f"cannot write beside it: {exc.strerror or exc}") from None
    try:
        _spec(target, tmp)
    except SpecInvalid as exc:
        errors = [replace(e, loc=replace(e.loc, file=target.name)) if e.loc and e.loc.file == display_path(tmp)
                  else e for e in exc.errors]
        raise _refused(target, "the edit would make the spec invalid", errors) from None
    finally:
        tmp.unlink(missing_ok=True)


def write(target: Target, text: str, old: str) -> None:
    """Replace the file atomically (a temporary file beside it, then os.replace), keeping its mode, unless
    it no longer holds `old` (changed by something that does not take the lock, e.g. an editor): then
    nothing is written (exit 2)."""
    real = target.path.resolve()
    try:
        mode = stat.S_IMODE(real.stat().st_mode)
        tmp = _temp_beside(real, text)
    except OSError as exc:
        raise _refused(target, f"cannot write beside it: {exc.strerror or exc}") from None
    try:
        os.chmod(tmp, mode)
        if read_input(real, target.name) != old.encode("utf-8"):
            raise _refused(target, "it changed since it was read (another edit?); run the command again")
        os.replace(tmp, real)
    except OSError as exc:
        raise _refused(target, f"cannot write it: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _temp_beside(path: Path, text: str) -> Path:
    # Beside the path as given (a symlink's own directory): `extends:` resolves from there, as `validate` does.
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as stream:
        stream.write(text)
    return Path(name)


def _refused(target: Target, why: str, errors: Sequence[SpecError] = ()) -> SpecInvalid:
    return SpecInvalid([SpecError(None, "", f"{target.name}: not changed: {why}"), *errors])


def _named(tree: Any, path: KeyPath) -> dict | None:
    """The plain value at `path` of a merged tree, or None."""
    for part in path:
        if isinstance(part, Named) and isinstance(tree, list):
            tree = next((i for i in tree if isinstance(i, dict) and i.get("name") == part.name), None)
        elif isinstance(part, str) and isinstance(tree, dict):
            tree = tree.get(part)
        else:
            return None
    return tree if isinstance(tree, dict) else None


# --- editing YAML text in place ----------------------------------------------------


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
