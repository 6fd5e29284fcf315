"""The per-user install guide (``INSTALL.html``): an output of the pipeline like a profile.

Rendered from our own template with values only (never Azure's or a user's text as a
template); it names the files to send and holds no secret.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath

from toolkit.errors import UsageError
from toolkit.output import PlannedFile
from toolkit.templating import render
from toolkit.validation import CertificateSummary

GUIDE_FILE = "INSTALL.html"
GUIDE_TEMPLATE = "install-guide.html.j2"
MAX_CONTACT = 200


def check_contact(text: str, what: str = "--contact") -> str:
    """The administrator contact shown in the guide: one line of at most 200 characters."""
    text = text.strip()
    if (
        not text
        or len(text) > MAX_CONTACT
        or any(unicodedata.category(c).startswith("C") for c in text)
    ):
        raise UsageError(
            f"{what} must be one line of 1 to {MAX_CONTACT} characters",
            hint="e.g. --contact 'IT desk, it@contoso.com, +41 44 000 00 00'",
        )
    return text


def _posix(path: str) -> str:
    """``str(PurePosixPath(path))``; a path without empty or '.' parts is already that."""
    if all(part not in ("", ".") for part in path.split("/")):
        return path
    return str(PurePosixPath(path))


def render_guide(
    *,
    name: str,
    display_name: str,
    gateway: str,
    certificate: CertificateSummary,
    deliverables: Mapping[str, Sequence[PlannedFile]],
    key_protected: bool,
    contact: str | None = None,
    openvpn_log: str | None = None,
    ikev2_password: bool = True,
) -> PlannedFile:
    """The guide for one user; ``deliverables`` maps each target to the files sent for it."""

    def file_of(target: str, index: int = 0) -> str | None:
        planned = deliverables.get(target, ())
        return _posix(planned[index].path) if len(planned) > index else None

    html = render(
        GUIDE_TEMPLATE,
        display_name=display_name,
        name=name,
        gateway=gateway,
        common_name=certificate.common_name or certificate.subject,
        not_after=certificate.not_after.strftime("%Y-%m-%d"),
        thumbprint=certificate.thumbprint_sha1,
        tunnelblick_zip=file_of("tunnelblick"),
        ios_profile=file_of("ios"),
        openvpn_profile=file_of("openvpn"),
        ikev2_profile=file_of("ikev2"),
        keychain_identity=file_of("ios-keychain"),
        keychain_profile=file_of("ios-keychain", 1),
        ikev2_password=ikev2_password,
        key_protected=key_protected,
        contact=contact or "",
        openvpn_log=openvpn_log or "",
    )
    return PlannedFile(GUIDE_FILE, html.encode("utf-8"))
