"""Plinth's Pulumi program: load the stack's spec, build the platform."""

from pathlib import Path

import pulumi

from plinth.program import StackSecrets, build_platform
from plinth.stackconfig import spec_from_pulumi_config

config = pulumi.Config("plinth")
spec = spec_from_pulumi_config(config, project_dir=Path(__file__).resolve().parent.parent)
build_platform(spec, StackSecrets(mirror_password=config.get_secret("mirrorPassword")))
