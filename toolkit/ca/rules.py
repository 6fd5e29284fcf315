"""The small input rules of the CA: common names, e-mail addresses, validity, key types."""

from __future__ import annotations

import difflib
import re
import unicodedata

from toolkit.ca.keys import KEY_TYPES, KeyType
from toolkit.errors import UsageError

MAX_DAYS = 36500
MAX_CN = 64  # X.509 upper bound for a common name
_EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def check_email(email: str, what: str = "e-mail address") -> str:
    """``email`` unchanged when it can be a certificate's CN (ASCII), else a UsageError; an
    address with accents gets a suggestion (``josé.garcía@contoso.com`` -> ``jose.garcia@...``)."""
    if not _EMAIL_RE.match(email):
        outside = [c for c in dict.fromkeys(email) if not c.isascii()]
        suggestion = (
            unicodedata.normalize("NFKD", email).encode("ascii", "ignore").decode("ascii").lower()
        )
        if outside and _EMAIL_RE.match(suggestion):
            raise UsageError(
                f"{what} {email!r} has letters outside A-Z "
                f"({', '.join(repr(c) for c in outside)}); it becomes the certificate's CN, "
                "which must be ASCII",
                hint=f"use {suggestion!r}; the person's real name, accents included, goes in "
                "the display name",
            )
        raise UsageError(
            f"{what} {email!r} is not valid",
            hint="give an ASCII address like alice@contoso.com; it becomes the certificate's CN",
        )
    if len(email) > MAX_CN:
        raise UsageError(
            f"e-mail address {email!r} is longer than {MAX_CN} characters (the CN limit)",
            hint="use a shorter address, or leave --email out to use the name as CN",
        )
    return email


_AZURE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._()-]{0,89}$")


def check_azure_name(value: str | None, what: str) -> str | None:
    """A gateway or resource-group name as Azure allows them (letters, digits, ``._-()``)."""
    if value is None:
        return None
    if not _AZURE_NAME.match(value) or value.endswith("."):
        raise UsageError(
            f"{what} {value[:100]!r} is not an Azure resource name",
            hint="use the name as the portal shows it: letters, digits, '.', '_', '-', "
            "'(' and ')', at most 90 characters",
        )
    return value


def check_cn(cn: str) -> str:
    if not cn.strip() or len(cn) > MAX_CN:
        raise UsageError(
            f"common name {cn[:80]!r} must have 1 to {MAX_CN} characters",
            hint='e.g. --cn "Contoso P2S Root"',
        )
    if any(unicodedata.category(c).startswith("C") for c in cn):
        raise UsageError("common name holds control characters", hint="use one line of text")
    return cn


def check_days(days: int) -> int:
    if not 1 <= days <= MAX_DAYS:
        raise UsageError(
            f"validity of {days} days is out of range", hint=f"use 1 to {MAX_DAYS} days"
        )
    return days


def check_key_type(key_type: str) -> KeyType:
    if key_type not in KEY_TYPES:
        close = difflib.get_close_matches(key_type, KEY_TYPES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UsageError(
            f"key type {key_type!r} is not supported",
            hint=hint + "use one of " + ", ".join(KEY_TYPES) + " (Azure documents RSA only)",
        )
    return key_type
