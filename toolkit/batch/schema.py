"""The JSON Schema (draft-07) of the batch user list, generated from the user list's tables."""

from __future__ import annotations

from typing import Any

from toolkit.batch.identity import SIGN_KEYS
from toolkit.batch.userlist import CA_KEYS, DEFAULT_KEYS, TOP_KEYS, USER_KEYS
from toolkit.ca.keys import KEY_TYPES
from toolkit.names import MAX_NAME, NAME_PATTERN
from toolkit.targets import TARGETS


def _schema_for(kind: str, description: str) -> dict[str, Any]:
    path_list = {"type": "array", "items": {"type": "string"}}
    kinds: dict[str, dict[str, Any]] = {
        "str": {"type": "string", "minLength": 1},
        "path": {"type": "string", "minLength": 1},
        "paths": {"oneOf": [{"type": "string"}, path_list]},
        "targets": {
            "oneOf": [
                {"type": "string", "enum": list(TARGETS)},
                {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "enum": list(TARGETS)},
                },
            ]
        },
        "int": {"type": "integer", "minimum": 1, "maximum": 36500},
        "bool": {"type": "boolean"},
        "key_type": {"type": "string", "enum": list(KEY_TYPES)},
    }
    return {**kinds[kind], "description": description}


def _object(keys: dict[str, tuple[str, str]], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": required,
        "properties": {k: _schema_for(kind, desc) for k, (kind, desc) in keys.items()},
    }


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft-07, what editors support) of the user list (yaml-language-server)."""
    user = _object(USER_KEYS, ["name"])
    user["properties"]["name"]["pattern"] = NAME_PATTERN
    user["properties"]["name"]["maxLength"] = MAX_NAME
    top = _object(
        {k: v for k, v in TOP_KEYS.items() if k not in ("ca", "defaults", "users", "sign")},
        ["package", "users"],
    )
    top["properties"]["ca"] = {**_object(CA_KEYS, ["dir"]), "description": TOP_KEYS["ca"][1]}
    defaults = _object(DEFAULT_KEYS, [])
    defaults["properties"]["warn_days"]["minimum"] = 0
    top["properties"]["defaults"] = {**defaults, "description": TOP_KEYS["defaults"][1]}
    top["properties"]["sign"] = {
        **_object(SIGN_KEYS, list(SIGN_KEYS)),
        "description": TOP_KEYS["sign"][1],
    }
    top["properties"]["users"] = {
        "type": "array",
        "minItems": 1,
        "items": user,
        "description": TOP_KEYS["users"][1],
    }
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "https://ovpn-toolkit.invalid/schemas/users.schema.json",
        "title": "ovpn-toolkit batch user list",
        **top,
    }
