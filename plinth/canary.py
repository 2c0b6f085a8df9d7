"""The canary workflow: move one served model's canary and shadow releases by editing a spec file in place.

`plinth canary set | promote | abort | shadow` change one model's `canary` / `shadow` / `stable` in ONE
file: the blueprint named, or with `--stack` the stack file's `plinth:overrides` (never the shared
blueprint). A model the file inherits (from the stack's blueprint, or from the blueprint's `extends:`
parent) gets a minimal entry `{name: <model>, ...}` in the file, which merges onto the inherited model by
name (the list-merge rule), and a release the file inherits is removed with `~`.

The file is edited as text (plinth/spec/yamledit.py), so everything else in it stays byte for byte. The
new text is validated like `plinth validate` before anything is written, then written atomically.
"""

from __future__ import annotations

import fcntl
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

from plinth.spec.errors import SpecError, SpecInvalid
from plinth.spec.load import load_blueprint_tree, load_spec, read_stack, stack_stage
from plinth.spec.models import Model, PlatformSpec
from plinth.spec.yamledit import DELETE, NULL, KeyPath, Named, Refused, apply
from plinth.spec.yamltree import display_path, read_input, read_yaml, to_plain

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
        model = current_model(target, model_ref)
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


def current_model(target: Target, ref: str) -> Model:
    """The model `ref` as the target's file has it now (before an edit)."""
    return find_model(_spec(target, target.path), ref)


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
