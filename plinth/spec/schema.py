"""The JSON Schemas of the platform spec, generated from the models (never hand-written).

`plinth schema` prints two documents (committed in blueprints/, kept current by a test):

- `schema.json`, a complete blueprint. The models' own validators (names, quantities,
  groups, counts, percentages, the Kubernetes version, CIDRs) are written out as JSON
  Schema, so an editor flags field by field what `plinth validate` refuses. Cross-field
  rules (plinth/spec/rules.py, a request above its limit) stay with the validator.
- `overlay.schema.json` (`--overlay`), a file merged onto another: a blueprint with
  `extends:` and a stack's `plinth:overrides`. Every field is optional and may be `~`
  (which deletes the key), items of named lists need only their `name` and may carry
  `$delete: true`, and a target may be patched without restating its `type`.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from plinth.catalog import KUBERNETES_VERSIONS
from plinth.spec import models
from plinth.spec.models import API_VERSION, PlatformSpec

VERSION = API_VERSION.split("/")[-1]
SCHEMA_ID = f"https://plinth.dev/schemas/{VERSION}/platform.json"
OVERLAY_ID = f"https://plinth.dev/schemas/{VERSION}/overlay.json"
NAME_MAX_LENGTH = 40
"""The bound models._DNS_LABEL encodes ({0,38} between two characters), stated so editors say it plainly."""
EXTENSION: dict[str, dict] = {"^x-": {}}
"""`x-` keys are extensions the loader drops at every level: allowed wherever other keys are not."""

# What each validator of plinth.spec.models accepts, as JSON Schema. A validator missing
# here fails generation (see _Generator), so a new one cannot silently weaken the schema.
_BEFORE: dict[Any, dict] = {
    models._dns_label: {"type": "string", "pattern": models._DNS_LABEL.pattern, "maxLength": NAME_MAX_LENGTH},
    # A YAML number is a quantity too (`cpu: 4`); the pattern constrains strings only.
    models._quantity: {"type": ["string", "number"], "pattern": models._QUANTITY.pattern, "minimum": 0},
    models._group: {"type": "string", "pattern": r"\S",
                    "not": {"anyOf": [{"const": "*"}, {"pattern": "^system:"}]}},
    models._non_negative_int: {"type": "integer", "minimum": 0},
    models._positive_int: {"type": "integer", "minimum": 1},
    models._strict_bool: {"type": "boolean"},
    models._kubernetes_version: {"type": "string", "enum": list(KUBERNETES_VERSIONS)},
    # An address or network, IPv4 or IPv6 (host bits set are left to the validator).
    models._cidr: {"type": "string", "pattern": r"^[0-9A-Fa-f.:]+(/[0-9]{1,3})?$"},
    models._host_port: {"type": "string", "pattern": models._HOST_PORT.pattern},
    models._registered_model_name: {"type": "string", "pattern": models._REGISTERED_MODEL_NAME.pattern},
    models._address_range: {"type": "string", "pattern": r"^[0-9A-Fa-f.:]+(/[0-9]{1,3}|-[0-9A-Fa-f.:]+)?$"},
    # https, a host, no user info, query or fragment.
    models._issuer_url: {"type": "string", "pattern": r"^https://[^/?#@\s]+(/[^?#\s]*)?$"},
    models._endpoint_url: {"type": "string", "pattern": r"^https://[^/?#@\s]+(/[^?#\s]*)?$"},
    models._pem_certificates: {"type": "string", "pattern": r"^\s*-----BEGIN CERTIFICATE-----",
                               "not": {"pattern": "PRIVATE KEY"}},
    models._claim_prefix: {"type": "string", "pattern": r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,30}:)?$",
                           "not": {"pattern": "^system:"}},
    # A tag (not latest) or a digest after the last path segment.
    models._pinned_image: {"type": "string", "pattern": r"^\S+(:[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})$",
                           "not": {"pattern": ":latest$"}},
}
_AFTER: dict[Any, dict] = {
    models._percent: {"maximum": 100},
}


class _Generator(GenerateJsonSchema):
    """Pydantic's generator, with the models' plain-function validators spelled out."""

    def function_before_schema(self, schema):
        return self._with(schema, _BEFORE, super().function_before_schema(schema))

    def function_after_schema(self, schema):
        return self._with(schema, _AFTER, super().function_after_schema(schema))

    @staticmethod
    def _with(schema, table: dict, generated: dict) -> dict:
        function = schema["function"]["function"]
        if function in table:
            return {**generated, **copy.deepcopy(table[function])}
        if getattr(function, "__module__", None) == models.__name__ and not _is_model_validator(function):
            raise TypeError(f"plinth.spec.schema: no JSON Schema for validator {function.__name__}; add it to "
                            "_BEFORE or _AFTER")
        return generated


def _is_model_validator(function) -> bool:
    """Model-level validators (`@model_validator`) check several fields: they have no one-field schema."""
    return "." in getattr(function, "__qualname__", "")


def schema() -> dict:
    """The schema of a complete blueprint."""
    doc = PlatformSpec.model_json_schema(by_alias=True, mode="validation", schema_generator=_Generator)
    # Blueprints may extend others; the base's required fields then come from it (see the overlay schema).
    doc["properties"]["extends"] = {"type": "string", "description": "Path of a base blueprint, relative to this file."}
    _objects(doc, _allow_extensions)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **doc}


def overlay_schema() -> dict:
    """The schema of a file merged onto a base: an `extends:` blueprint or a stack's overrides."""
    doc = copy.deepcopy(schema())
    items = _named_item_defs(doc)
    for name, sub in doc["$defs"].items():
        _loosen(sub, named_item=name in items)
    _loosen(doc, named_item=False)
    doc = _any_variant(doc)
    doc["$id"] = OVERLAY_ID
    doc["title"] = "PlatformOverlay"
    doc["description"] = ("A blueprint that `extends:` another, or a stack's `plinth:overrides`: merged onto its "
                          "base, so every field is optional; `~` deletes a key; `{name: x, $delete: true}` removes "
                          "the item x of a named list.")
    return doc


def _objects(node: Any, visit) -> None:
    """Call visit(object schema) for every object schema in the document."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            visit(node)
        for value in node.values():
            _objects(value, visit)
    elif isinstance(node, list):
        for value in node:
            _objects(value, visit)


def _allow_extensions(obj: dict) -> None:
    if obj.get("additionalProperties") is False:
        obj["patternProperties"] = dict(EXTENSION)


def _named_item_defs(doc: dict) -> set[str]:
    """Definitions used as list items that carry a `name`: the lists that merge by name."""
    found: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("items", {}).get("$ref", "") if isinstance(node.get("items"), dict) else ""
            name = ref.removeprefix("#/$defs/")
            if name and "name" in doc["$defs"][name].get("properties", {}):
                found.add(name)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(doc)
    return found


def _loosen(obj: dict, named_item: bool) -> None:
    """Every field optional and nullable; a named item keeps `name` (what it merges by) and may be deleted."""
    if obj.get("type") != "object" or "properties" not in obj:
        return
    obj["properties"] = {key: value if named_item and key == "name" else _nullable(value)
                         for key, value in obj["properties"].items()}
    obj.pop("required", None)
    if named_item:
        obj["required"] = ["name"]
        obj["properties"]["$delete"] = {
            "const": True, "description": "Remove the item of this name from the base (a named list merges by name)."}


def _nullable(prop: dict) -> dict:
    out = {"anyOf": [prop, {"type": "null"}]}
    if "description" in prop:
        out["description"] = prop["description"]  # where editors look for it
    return out


def _any_variant(node: Any) -> Any:
    """oneOf -> anyOf: partial variants (a target without its `type`) may match several at once."""
    if isinstance(node, dict):
        return {("anyOf" if key == "oneOf" and isinstance(value, list) else key): _any_variant(value)
                for key, value in node.items()
                if not (key == "discriminator" and isinstance(value, dict) and "propertyName" in value)}
    if isinstance(node, list):
        return [_any_variant(value) for value in node]
    return node


def schema_json(overlay: bool = False) -> str:
    return json.dumps(overlay_schema() if overlay else schema(), indent=2, sort_keys=True) + "\n"
