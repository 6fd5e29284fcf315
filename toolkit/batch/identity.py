"""The user list's keys for PKCS#12 identities and signed profiles (``pkcs12_passphrase_*``,
``embed_pkcs12_password``, ``sign:``), read with the user list's validator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from toolkit.batch.userlist import _Validator

SIGN_KEYS: dict[str, tuple[str, str]] = {
    "cert": ("path", "The signing certificate (PEM, intermediates after it)."),
    "key": ("path", "Its private key (PEM, unencrypted)."),
}
PKCS12_KEYS: dict[str, tuple[str, str]] = {
    "pkcs12_passphrase_env": (
        "str",
        "Password of the PKCS#12 identity (ios-keychain, ikev2) from this environment variable "
        "(default: a random one per target, in its own 0600 file).",
    ),
    "pkcs12_passphrase_file": (
        "path",
        "Like pkcs12_passphrase_env, reading the password from a file.",
    ),
    "embed_pkcs12_password": (
        "bool",
        "Put the identity's password into the ikev2 profile (installs without typing it).",
    ),
}


@dataclass(frozen=True)
class SignSettings:
    cert: Path
    key: Path


def identity_defaults(
    v: _Validator, top: dict[str, yaml.Node], defaults: dict[str, yaml.Node]
) -> dict[str, Any]:
    """The PKCS#12 keys of ``defaults:``, for users that set none of their own."""
    user_defaults: dict[str, Any] = {}
    if "pkcs12_passphrase_env" in defaults:
        user_defaults["pkcs12_passphrase_env"] = v.string(
            defaults["pkcs12_passphrase_env"], "pkcs12_passphrase_env"
        )
    if "pkcs12_passphrase_file" in defaults:
        user_defaults["pkcs12_passphrase_file"] = v.path(
            defaults["pkcs12_passphrase_file"], "pkcs12_passphrase_file"
        )
    if "pkcs12_passphrase_env" in defaults and "pkcs12_passphrase_file" in defaults:
        v.problem(
            top["defaults"],
            "defaults: give pkcs12_passphrase_env or pkcs12_passphrase_file, not both",
        )
    if "embed_pkcs12_password" in defaults:
        user_defaults["embed_pkcs12_password"] = v.boolean(
            defaults["embed_pkcs12_password"], "embed_pkcs12_password"
        )
    user_defaults = {k: value for k, value in user_defaults.items() if value is not None}
    return user_defaults


def sign_settings(v: _Validator, top: dict[str, yaml.Node]) -> SignSettings | None:
    """The top-level ``sign: {cert, key}``."""
    sign = None
    if "sign" in top:
        sign_map = v.mapping(top["sign"], SIGN_KEYS, "sign")
        for required in SIGN_KEYS:
            if required not in sign_map and isinstance(top["sign"], yaml.MappingNode):
                v.problem(top["sign"], f"sign: missing required key '{required}'")
        sign_cert = v.path(sign_map["cert"], "cert") if "cert" in sign_map else None
        sign_key = v.path(sign_map["key"], "key") if "key" in sign_map else None
        if sign_cert is not None and sign_key is not None:
            sign = SignSettings(sign_cert, sign_key)
    return sign
