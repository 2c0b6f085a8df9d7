"""Blueprint + stack → validated PlatformSpec, with errors at file:line:col."""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from plinth.program import stack_secrets
from plinth.spec.errors import Loc, SpecError, SpecInvalid
from plinth.spec.models import PlatformSpec
from plinth.spec.rules import check_rules
from plinth.spec.yamltree import LMap, display_path, merge, read_yaml, to_plain

CONFIG_NAMESPACE = "plinth"
STACK_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$")


def stack_keys() -> dict[str, str]:
    """Every `plinth:<key>` a stack file may hold, and what it is: the secrets are those the services declare
    (plinth.program.stack_secrets)."""
    return {
        "blueprint": "path of the blueprint, relative to the project directory",
        "overrides": "spec overrides merged onto the blueprint",
        **{key: f"secret: {secret.description}" for key, secret in stack_secrets().items()},
        "configures": "this stack is the configure stage of the named stack (its spec, Vault and Harbor contents)",
    }


@dataclass(frozen=True)
class Source:
    """What a spec was built from (for messages and for the plan header)."""

    blueprint: Path
    stack: str | None = None


MAX_EXTENDS = 16
"""Blueprints in one `extends:` chain: real ones use two or three; a bound keeps a hostile chain
from costing a file read and a merge per link without end."""


def load_blueprint_tree(path: Path, _chain: tuple[Path, ...] = ()) -> LMap:
    """Read a blueprint and everything it `extends:`, merged base-first."""
    tree = read_yaml(path)
    name = display_path(path)
    if not isinstance(tree, LMap):
        raise SpecInvalid([SpecError(Loc(name, 1, 1), "", "expected a mapping (the platform spec) at the top level")])
    if "extends" not in tree:
        return tree
    parent, parent_loc = tree.pop("extends"), tree.locs.pop("extends")
    if not isinstance(parent, str) or not parent:
        raise SpecInvalid([SpecError(parent_loc, "extends", "expected the path of a blueprint file")])
    parent_path = (path.parent / parent).resolve()
    if parent_path in _chain or parent_path == path.resolve():
        cycle = " -> ".join(display_path(p) for p in (*_chain, path.resolve(), parent_path))
        raise SpecInvalid([SpecError(parent_loc, "extends", f"blueprints extend each other in a cycle: {cycle}")])
    if parent_path.is_dir():
        raise SpecInvalid([SpecError(parent_loc, "extends", f"{parent!r} is a directory, not a blueprint file")])
    if not parent_path.is_file():
        raise SpecInvalid([SpecError(parent_loc, "extends", f"blueprint {parent!r} not found")])
    if len(_chain) + 1 >= MAX_EXTENDS:
        raise SpecInvalid([SpecError(parent_loc, "extends", f"more than {MAX_EXTENDS} blueprints in one "
                                     "`extends:` chain; merge some of them into one file")])
    base = load_blueprint_tree(parent_path, (*_chain, path.resolve()))
    return merge(base, tree)


def read_stack(project_dir: Path, stack: str) -> tuple[Path, LMap | None]:
    """The blueprint path and overrides a stack file names."""
    blueprint, overrides, errors = read_stack_parts(project_dir, stack)
    if errors or blueprint is None:
        raise SpecInvalid(errors)
    return blueprint, overrides


def read_stack_parts(project_dir: Path, stack: str) -> tuple[Path | None, LMap | None, list[SpecError]]:
    """The blueprint path and overrides a stack file names, and every error of its keys (not raised, so a
    caller can report them together with the spec's)."""
    if not STACK_NAME.match(stack):
        raise SpecInvalid([SpecError(None, "--stack", f"{stack!r} is not a stack name (letters, digits, '-', '_' "
                                     "and '.', not starting with '.'; the file is stacks/Pulumi.<name>.yaml)")])
    path = project_dir / "stacks" / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise SpecInvalid([SpecError(None, "", f"stack {stack!r}: {display_path(path)} not found")])
    doc = read_yaml(path)
    name = display_path(path)
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, LMap):
        raise SpecInvalid([SpecError(Loc(name, 1, 1), "config", "expected a `config:` mapping")])
    errors = []
    known, secrets = stack_keys(), stack_secrets()
    for key in config:
        ns, _, short = str(key).partition(":")
        if ns == CONFIG_NAMESPACE and short not in known:
            allowed = ", ".join(f"{CONFIG_NAMESPACE}:{k}" for k in known)
            errors.append(SpecError(config.locs[key], f"config.{key}", f"unknown key (allowed: {allowed})"))
        elif ns == CONFIG_NAMESPACE and short in secrets:
            errors += _plaintext_secrets(config[key], config.locs[key], f"config.{key}", key,
                                         secrets[short].holds_map)
    configures = config.get(f"{CONFIG_NAMESPACE}:configures")
    if configures is not None:
        if errors:
            raise SpecInvalid(errors)
        return (*_configured_stack(project_dir, stack, config, configures), [])
    blueprint = config.get(f"{CONFIG_NAMESPACE}:blueprint")
    if not isinstance(blueprint, str):
        errors.append(SpecError(config.loc, f"config.{CONFIG_NAMESPACE}:blueprint", "required: the blueprint path"))
    overrides = config.get(f"{CONFIG_NAMESPACE}:overrides")
    if overrides is not None and not isinstance(overrides, LMap):
        loc = config.locs[f"{CONFIG_NAMESPACE}:overrides"]
        errors.append(SpecError(loc, f"config.{CONFIG_NAMESPACE}:overrides", "expected a mapping"))
        overrides = None
    return (project_dir / blueprint if isinstance(blueprint, str) else None), overrides, errors


def _is_ciphertext(value: Any) -> bool:
    """Pulumi's encrypted form of a config value: `{secure: <ciphertext>}` (`v1:...` with a passphrase
    or cloud KMS; the Pulumi Cloud backend writes other ciphertexts, so only the shape is checked)."""
    return isinstance(value, dict) and list(value) == ["secure"] and isinstance(value["secure"], str) \
        and bool(value["secure"])


def _plaintext_secrets(value: Any, loc: Loc | None, path: str, key: str, is_map: bool) -> list[SpecError]:
    """Errors for every plain value of a secret key: a stack file is committed, so a plain secret leaks.

    A map secret may be encrypted whole, or per entry (`pulumi config set --secret --path
    'plinth:alertReceivers.oncall' ...` writes `oncall: {secure: ...}`).
    """
    if _is_ciphertext(value):
        return []
    if is_map and isinstance(value, LMap) and value:
        errors = []
        for name, item in value.items():
            where = value.locs.get(name, loc)
            if _is_ciphertext(item):
                continue
            errors.append(SpecError(where, f"{path}.{name}", _PLAIN.format(
                f"pulumi config set --secret --path '{key}.{name}' VALUE")))
        return errors
    command = f"pulumi config set --secret {key} VALUE" if not is_map else (
        f"pulumi config set --secret --path '{key}.NAME' VALUE")
    return [SpecError(loc, path, _PLAIN.format(command))]


_PLAIN = ("a secret in plain text (anyone who can read this file can read it): set it with `{}`, "
          "which stores it encrypted (`secure: ...`)")


def _configured_stack(project_dir: Path, stack: str, config: LMap, configures: Any) -> tuple[Path, LMap | None]:
    """A configure-stage stack has no spec of its own: it takes the one of the stack it configures."""
    key = f"{CONFIG_NAMESPACE}:configures"
    loc = config.locs[key]
    if f"{CONFIG_NAMESPACE}:blueprint" in config or f"{CONFIG_NAMESPACE}:overrides" in config:
        raise SpecInvalid([SpecError(loc, f"config.{key}", "a configure stack takes its spec from the stack it "
                                     "configures: remove plinth:blueprint and plinth:overrides")])
    if not isinstance(configures, str) or configures == stack:
        raise SpecInvalid([SpecError(loc, f"config.{key}", "expected the name of another stack")])
    target = project_dir / "stacks" / f"Pulumi.{configures}.yaml"
    if target.is_file() and stack_stage(project_dir, configures) != "platform":
        raise SpecInvalid([SpecError(loc, f"config.{key}", f"{configures!r} is itself a configure stack")])
    return read_stack(project_dir, configures)


def stack_stage(project_dir: Path, stack: str) -> str:
    """`configure` for a stack that configures another one, else `platform`."""
    path = project_dir / "stacks" / f"Pulumi.{stack}.yaml"
    doc = read_yaml(path) if STACK_NAME.match(stack) and path.is_file() else None
    config = doc.get("config") if isinstance(doc, dict) else None
    return "configure" if isinstance(config, dict) and f"{CONFIG_NAMESPACE}:configures" in config else "platform"


def load_spec(blueprint: Path, overrides: Any = None) -> PlatformSpec:
    """Merge, validate and rule-check; raises SpecInvalid with every error found."""
    tree = load_blueprint_tree(blueprint)
    if overrides:
        tree = merge(tree, overrides)
    try:
        spec = PlatformSpec.model_validate(to_plain(tree))
    except ValidationError as exc:
        raise SpecInvalid([_schema_error(tree, err) for err in exc.errors()]) from None
    violations = check_rules(spec)
    if violations:
        raise SpecInvalid(
            [SpecError(*locate(tree, v.loc), v.message, rule=v.rule, fix=v.fix) for v in violations]
        )
    return spec


def load_stack_spec(project_dir: Path, stack: str) -> PlatformSpec:
    blueprint, overrides = read_stack(project_dir, stack)
    return load_spec(blueprint, overrides)


# --- mapping pydantic errors back to the YAML ---------------------------------


def locate(tree: Any, loc: tuple) -> tuple[Loc | None, str]:
    """Position and readable path (teams[fraud].quota.gpu) of a pydantic location."""
    node, best, path = tree, getattr(tree, "loc", None), ""
    for part in loc:
        if isinstance(node, dict) and part in node:
            best = node.locs.get(part, best) if isinstance(node, LMap) else best
            path += f".{_printable(part)}" if path else _printable(part)
            node = node[part]
        elif isinstance(node, dict) and node.get("type") == part:
            continue  # the tag pydantic adds inside a discriminated union
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            item = node[part]
            # A sequence read from YAML carries its items' positions in `locs`.
            best = (node.locs[part] if getattr(node, "locs", None) else None) or best  # type: ignore[attr-defined]
            label = item.get("name") if isinstance(item, dict) else None
            path += f"[{_printable(label)}]" if isinstance(label, str) else f"[{part}]"
            node = item
        else:
            path += f"[{part}]" if isinstance(part, int) else (f".{_printable(part)}" if path else _printable(part))
            node = None
    return best, path


def _printable(part: Any) -> str:
    """A key as the path shows it: quoted and escaped when it holds control or line-breaking characters,
    which would otherwise split or rewrite the error line on a terminal."""
    text = str(part)
    return text if text.isprintable() else json.dumps(text)


_EXPECTED = {
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "strict_bool": 'expected true or false, unquoted ("off", "no", "false", 0 and 1 are not booleans here)',
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "dict_type": "expected a mapping",
    "tuple_type": "expected a list",
    "list_type": "expected a list",
}


_NOT_ECHOED = {"pem_certificates"}
"""Errors whose value is never repeated: a CA certificate field given a private key must not print the key."""


def _got(value: Any) -> str:
    if isinstance(value, dict):
        return "got a mapping"
    if isinstance(value, list | tuple):
        return "got a list"
    return f"got {json.dumps(value, default=str)}"


def _schema_error(tree: Any, err: Mapping[str, Any]) -> SpecError:
    kind, loc, ctx = err["type"], tuple(err["loc"]), err.get("ctx") or {}
    if kind == "missing":
        return SpecError(locate(tree, loc[:-1])[0], locate(tree, loc)[1], "required field is missing")
    if kind == "extra_forbidden":
        where, path = locate(tree, loc)
        allowed = _allowed_fields(loc[:-1])
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        message = "unknown field" + (f"; did you mean {hint[0]!r}?" if hint else "")
        if allowed and not hint:
            message += f" (allowed: {', '.join(allowed)})"
        return SpecError(where, path, message)
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        where, path = locate(tree, (*loc, "type"))
        tags = ctx.get("expected_tags", "")
        if kind == "union_tag_not_found":
            return SpecError(locate(tree, loc)[0], path, f"required field is missing (one of {tags})")
        return SpecError(where, path, f"expected one of {tags}, {_got(ctx.get('tag'))}")
    where, path = locate(tree, loc)
    if kind == "literal_error":
        message = f"expected {ctx['expected']}"
    elif kind == "string_pattern_mismatch":
        message = f"expected a string matching {ctx['pattern']}"
    elif kind == "too_short":
        message = f"expected at least {ctx['min_length']} item(s)"
    elif kind == "too_long":  # the size limits of teams and models
        return SpecError(where, path, f"{ctx.get('actual_length')} items, more than the limit of "
                         f"{ctx['max_length']} (a plan's memory grows with each): split the platform")
    elif kind in _EXPECTED:
        message = _EXPECTED[kind]
    elif kind.startswith(("greater_than", "less_than")):
        message = "expected a value " + err["msg"].removeprefix("Input should be ")
    else:
        message = err["msg"][0].lower() + err["msg"][1:]
    if kind in _NOT_ECHOED:
        return SpecError(where, path, f"{message} (the value is not shown: it may hold a key)")
    return SpecError(where, path, f"{message}, {_got(err.get('input'))}")


def _allowed_fields(loc: tuple) -> list[str]:
    """YAML keys allowed at a location (for 'did you mean')."""
    annotation: Any = PlatformSpec
    for part in loc:
        if isinstance(part, int):
            annotation = _item_type(annotation)
            continue
        model = _model_of(annotation, part)
        if model is None:
            return []
        fields = {f.alias or n: f for n, f in model.model_fields.items()}
        annotation = fields[part].annotation if part in fields else model  # else: a union tag
    model = _model_of(annotation, None)
    return sorted(f.alias or n for n, f in model.model_fields.items()) if model else []


def _model_of(annotation: Any, tag: Any) -> type[BaseModel] | None:
    """The model an annotation resolves to; `tag` picks a union variant by its `type`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            if tag is None or "type" not in arg.model_fields:
                return arg
            if tag in typing.get_args(arg.model_fields["type"].annotation):
                return arg
        elif typing.get_origin(arg) in (typing.Union, types.UnionType) or typing.get_args(arg):
            found = _model_of(arg, tag)
            if found:
                return found
    return None


def _item_type(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    return args[0] if args else annotation
