"""Plinth's Pulumi program: load the stack's spec and secrets, build the stack's stage of the platform."""

from pathlib import Path

import pulumi

from plinth.program import STAGES
from plinth.stackconfig import (
    provenance_from_pulumi_config,
    secrets_from_pulumi_config,
    spec_from_pulumi_config,
    stage_from_pulumi_config,
)

PROJECT = Path(__file__).resolve().parent.parent
config = pulumi.Config("plinth")
spec = spec_from_pulumi_config(config, project_dir=PROJECT)
stage = stage_from_pulumi_config(config)
STAGES[stage](spec, secrets_from_pulumi_config(config, spec, stage), provenance_from_pulumi_config(config, PROJECT))
