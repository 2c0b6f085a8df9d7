"""Plinth's Pulumi program: load the stack's spec and secrets, build the platform."""

from pathlib import Path

import pulumi

from plinth.program import build_platform
from plinth.stackconfig import secrets_from_pulumi_config, spec_from_pulumi_config

config = pulumi.Config("plinth")
spec = spec_from_pulumi_config(config, project_dir=Path(__file__).resolve().parent.parent)
build_platform(spec, secrets_from_pulumi_config(config, spec))
