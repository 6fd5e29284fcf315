"""Names that become files, bundles, certificate names and identifiers: the one name check.

A user's name is a file name, a Tunnelblick bundle name and a CA certificate name at once, so
one rule (:func:`check_name`) serves every command; names never escape OUTPUT.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import unicodedata

from toolkit.errors import UsageError
from toolkit.targets.tunnelblick.options import TUNNELBLICK_FORBIDDEN

MAX_NAME = 64
MAX_DISPLAY_NAME = 100
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]*$"  # also published in the users.yaml JSON Schema
_NAME = re.compile(NAME_PATTERN)
_WINDOWS_RESERVED = {
    "con",
    "prn",
    "aux",
    "nul",
    *(f"com{i}" for i in range(10)),
    *(f"lpt{i}" for i in range(10)),
}
NAME_HINT = (
    "use 1-64 letters A-Z, digits, '.', '_', '-' or '@', starting with a letter or digit "
    "(e.g. alice or alice@contoso.com)"
)
DISPLAY_NAME_NOTE = "the person's real name, accents and spaces included, goes in the display name"


def suggest_name(text: str) -> str:
    """A file name for free text such as a person's name: accents dropped, lower case,
    spaces to '.' (``José García`` -> ``jose.garcia``); passes :func:`check_name`."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    dotted = re.sub(r"\s+", ".", ascii_text.strip().lower())
    return sanitize_name(dotted)


def _outside_ascii(name: str) -> str:
    """The characters of ``name`` a file name may not hold, in order, each once."""
    seen: list[str] = []
    for c in name:
        if not (c.isascii() and (c.isalnum() or c in "._-@")) and c not in seen:
            seen.append(c)
    return ", ".join(repr(c) for c in seen)


def check_name(name: str, what: str = "--name") -> str:
    """``name`` unchanged if it is a safe file and .tblk bundle name, else a UsageError whose
    hint suggests one (the same wording in every command: ``generate --name``, the batch's
    ``name:``, ``ca issue --name``)."""
    problem = None
    if not name:
        problem = "is empty"
    elif len(name) > MAX_NAME:
        problem = f"is longer than {MAX_NAME} characters"
    elif not TUNNELBLICK_FORBIDDEN.isdisjoint(name) or (
        # printable: no control, format, private-use or unassigned character (category C)
        not name.isprintable() and any(unicodedata.category(c).startswith("C") for c in name)
    ):
        bad = next(
            c for c in name if c in TUNNELBLICK_FORBIDDEN or unicodedata.category(c).startswith("C")
        )
        problem = f"contains {bad!r}, which is not allowed in file or Tunnelblick names"
    elif ".." in name or name.endswith("."):
        problem = "contains '..' or ends with '.'"
    elif not _NAME.match(name):
        bad = _outside_ascii(name)
        problem = (
            "is used as a file name and may hold only the letters A-Z, digits, '.', '_', '-' "
            "and '@', starting with a letter or digit"
        ) + (f" (not {bad})" if bad else "")
    elif name.split(".")[0].lower() in _WINDOWS_RESERVED:
        problem = "is a reserved device name on Windows"
    if problem:
        suggestion = suggest_name(name) if name.strip() else ""
        if suggestion and suggestion != name and _is_valid(suggestion):
            hint = (
                f"use {suggestion!r} as the {_short(what)} (letters A-Z, digits, '.', '_', '-', "
                f"'@'); {DISPLAY_NAME_NOTE}"
            )
        else:
            hint = NAME_HINT
        raise UsageError(f"{what} {name!r} {problem}", hint=hint)
    return name


def _is_valid(name: str) -> bool:
    try:
        check_name(name)
    except UsageError:
        return False
    return True


def _short(what: str) -> str:
    """``users.yaml line 3: name`` -> ``name``: the option or key the hint talks about."""
    return what.rsplit(": ", 1)[-1]


def sanitize_name(text: str) -> str:
    """A safe name derived from free text such as a certificate CN (may still need checking)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    cleaned = re.sub(r"[^A-Za-z0-9._@-]+", "-", ascii_text).strip(".-_")
    cleaned = re.sub(r"\.{2,}", ".", cleaned).lstrip("@.-_")  # check_name: starts alphanumeric
    cleaned = cleaned[:MAX_NAME].rstrip(".-")
    if cleaned.split(".")[0].lower() in _WINDOWS_RESERVED:
        cleaned = f"user-{cleaned}"[:MAX_NAME].rstrip(".-")
    return cleaned or "user"


def fold(name: str) -> str:
    """The form two names collide in (case-insensitive file systems, sanitising)."""
    return sanitize_name(name).casefold()


def check_display_name(text: str, what: str = "--display-name") -> str:
    if not text.strip():
        raise UsageError(f"{what} is empty", hint="give a human-readable profile name")
    if len(text) > MAX_DISPLAY_NAME or (
        not text.isprintable() and any(unicodedata.category(c).startswith("C") for c in text)
    ):
        raise UsageError(
            f"{what} {text[:40]!r} is too long or holds control characters",
            hint=f"use one line of at most {MAX_DISPLAY_NAME} characters",
        )
    return text


def bundle_identifier(gateway_id: str, name: str) -> str:
    """CFBundleIdentifier stable per gateway and user (only ``A-Z a-z 0-9 . -``)."""

    def slug(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9-]+", "-", text).strip("-")[:40] or "x"

    digest = hashlib.sha256(f"{gateway_id}\0{name}".encode()).hexdigest()[:8]
    return f"net.ovpn-toolkit.{slug(gateway_id)}.{slug(name)}-{digest}"


def bundle_version(issued: dt.datetime) -> str:
    """CFBundleVersion from the certificate's not-before: a newer certificate is a newer version,
    the same inputs always give the same version (idempotent re-runs)."""
    return issued.astimezone(dt.UTC).strftime("%Y%m%d.%H%M%S")
