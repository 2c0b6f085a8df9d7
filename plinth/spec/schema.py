"""The JSON Schema of the platform spec, generated from the models (never hand-written)."""

from __future__ import annotations

import json

from plinth.spec.models import API_VERSION, PlatformSpec

SCHEMA_ID = f"https://plinth.dev/schemas/{API_VERSION.split('/')[-1]}/platform.json"


def schema() -> dict:
    doc = PlatformSpec.model_json_schema(by_alias=True, mode="validation")
    # Blueprints may extend others and carry `x-` extension keys.
    doc["properties"]["extends"] = {"type": "string", "description": "Path of a base blueprint, relative to this file."}
    doc["patternProperties"] = {"^x-": {}}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **doc}


def schema_json() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"
