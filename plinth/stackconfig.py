"""The spec of the stack the real engine is running (`pulumi up`, `pulumi preview`)."""

from __future__ import annotations

from pathlib import Path

import pulumi

from plinth.spec.errors import SpecInvalid
from plinth.spec.load import load_spec, read_stack
from plinth.spec.models import PlatformSpec
from plinth.spec.yamltree import to_plain


def spec_from_pulumi_config(config: pulumi.Config, project_dir: Path) -> PlatformSpec:
    """Blueprint + overrides from stack config; errors end the run with file:line messages, no traceback."""
    blueprint = config.require("blueprint")
    overrides = config.get_object("overrides")
    try:
        # Prefer the stack file's own tree (same values) so errors point at its lines.
        stack_file = project_dir / "stacks" / f"Pulumi.{pulumi.get_stack()}.yaml"
        if stack_file.is_file():
            located_blueprint, located = read_stack(project_dir, pulumi.get_stack())
            if to_plain(located) == overrides and located_blueprint == project_dir / blueprint:
                overrides = located
        return load_spec(project_dir / blueprint, overrides)
    except SpecInvalid as exc:
        raise pulumi.RunError(f"the platform spec is invalid:\n{exc}") from None
