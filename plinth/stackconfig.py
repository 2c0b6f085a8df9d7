"""The spec and secrets of the stack the real engine is running (`pulumi up`, `pulumi preview`)."""

from __future__ import annotations

from pathlib import Path

import pulumi

from plinth.context import StackSecrets
from plinth.program import needed_secrets
from plinth.provenance import Provenance
from plinth.spec.errors import SpecInvalid
from plinth.spec.load import CONFIG_NAMESPACE, load_spec, load_stack_spec, read_stack, read_stack_parts, stack_stage
from plinth.spec.models import PlatformSpec
from plinth.spec.yamltree import read_yaml, to_plain


def spec_from_pulumi_config(config: pulumi.Config, project_dir: Path) -> PlatformSpec:
    """Blueprint + overrides from stack config; errors end the run with file:line messages, no traceback.

    A configure stack (`plinth:configures: <stack>`) takes the spec of the stack it configures.
    """
    configures = config.get("configures")
    try:
        if configures:
            return load_stack_spec(project_dir, configures)
        blueprint = config.require("blueprint")
        overrides = config.get_object("overrides")
        # Prefer the stack file's own tree (same values) so errors point at its lines.
        stack_file = project_dir / "stacks" / f"Pulumi.{pulumi.get_stack()}.yaml"
        if stack_file.is_file():
            located_blueprint, located = read_stack(project_dir, pulumi.get_stack())
            if to_plain(located) == overrides and located_blueprint == project_dir / blueprint:
                overrides = located
        return load_spec(project_dir / blueprint, overrides)
    except SpecInvalid as exc:
        raise pulumi.RunError(f"the platform spec is invalid:\n{exc}") from None


def provenance_from_pulumi_config(config: pulumi.Config, project_dir: Path) -> Provenance:
    """The files the stack's spec came from: the blueprint chain and the stack file (of the stack it
    configures, for a configure stack)."""
    stack = config.get("configures") or pulumi.get_stack()
    stack_file = project_dir / "stacks" / f"Pulumi.{stack}.yaml"
    blueprint = project_dir / (config.get("blueprint") or "")
    if stack_file.is_file():
        blueprint, _ = read_stack(project_dir, stack)
    return Provenance.of(blueprint, stack_file if stack_file.is_file() else None)


def stage_from_pulumi_config(config: pulumi.Config) -> str:
    return "configure" if config.get("configures") else "platform"


def required_secrets(spec: PlatformSpec, stage: str = "platform") -> tuple[str, ...]:
    """The StackSecrets fields this spec needs: a deployment without one of them must not start."""
    return tuple(secret.field for secret in needed_secrets(spec, stage))


def secrets_from_pulumi_config(config: pulumi.Config, spec: PlatformSpec, stage: str = "platform") -> StackSecrets:
    """Every secret the spec needs, required (a missing one names its `pulumi config set --secret` key)."""
    found = {}
    for secret in needed_secrets(spec, stage):
        require = config.require_secret_object if secret.holds_map else config.require_secret
        found[secret.field] = require(secret.key)
    return StackSecrets(**found)


def check_stack(project_dir: Path, stack: str) -> tuple[PlatformSpec, list[str]]:
    """A stack's spec, validated with every error of its file and of its spec at once, and the
    `pulumi config set --secret` commands of the secrets the spec needs that the stack file does not hold."""
    blueprint, overrides, errors = read_stack_parts(project_dir, stack)
    spec = None
    if blueprint is not None:
        try:
            spec = load_spec(blueprint, overrides)
        except SpecInvalid as exc:
            errors = [*errors, *exc.errors]
    if errors or spec is None:
        raise SpecInvalid(errors)
    config = read_yaml(project_dir / "stacks" / f"Pulumi.{stack}.yaml")["config"]
    held = {str(key).partition(":")[2] for key in config if str(key).startswith(f"{CONFIG_NAMESPACE}:")}
    commands = []
    for secret in needed_secrets(spec, stack_stage(project_dir, stack)):
        key, what, set_secret = secret.key, secret.description, f"pulumi config set --secret -s {stack}"
        if key in held:
            continue
        if secret.entries:  # one entry per name the spec gives (e.g. each Alertmanager receiver)
            commands += [f"{set_secret} --path '{CONFIG_NAMESPACE}:{key}.{entry}' VALUE   # {what}"
                         for entry in secret.entries(spec)]
        else:
            commands.append(f"{set_secret} {CONFIG_NAMESPACE}:{key} VALUE   # {what}")
    return spec, commands
