"""Fill a profile's ``<cert>`` and ``<key>`` blocks, whatever Azure's placeholder dialect.

Dialects: ``classic`` (``$CLIENTCERTIFICATE`` / ``$PRIVATEKEY``), ``chain``
(``$CLIENT_CERTIFICATE``, ``$INTERMEDIATE_CERTIFICATE``, ``$ROOT_CERTIFICATE``), ``empty``
blocks (count as placeholders) and ``filled`` (PEM already there).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from toolkit.errors import ProfileError
from toolkit.findings import Edit
from toolkit.profile import Block, Profile

Dialect = Literal["classic", "chain", "empty", "filled"]
PLACEHOLDER = re.compile(r"\$[A-Z][A-Z0-9_]*")
CHAIN_TOKENS = ("$CLIENT_CERTIFICATE", "$INTERMEDIATE_CERTIFICATE", "$ROOT_CERTIFICATE")


def _block_state(block: Block) -> Dialect | None:
    text = "\n".join(block.body)
    if not text.strip():
        return "empty"
    if "-----BEGIN" in text:
        return "filled"
    tokens = PLACEHOLDER.findall(text)
    if any(t in CHAIN_TOKENS for t in tokens):
        return "chain"
    if tokens:
        return "classic"
    return None


def placeholder_dialect(profile: Profile) -> Dialect:
    """How the ``<cert>`` block asks to be filled."""
    block = profile.block("cert")
    if block is None:
        raise ProfileError(f"{profile.source}: no <cert> block", hint="not an Azure P2S profile")
    state = _block_state(block)
    if state is None:
        raise ProfileError(
            f"{profile.source} line {block.line}: <cert> holds neither a placeholder nor PEM",
            hint="download the package again, or put $CLIENTCERTIFICATE back in the block",
        )
    return state


@dataclass(frozen=True)
class CredentialPem:
    """What goes into the blocks: certificate, intermediates, optional root, key (all PEM)."""

    cert_pem: bytes
    key_pem: bytes
    chain: tuple[x509.Certificate, ...] = ()
    root: x509.Certificate | None = None

    def __repr__(self) -> str:
        return "CredentialPem(<hidden>)"


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def fill_credentials(
    profile: Profile, creds: CredentialPem, *, replace: bool = False
) -> list[Edit]:
    """Fill ``<cert>``/``<key>`` in place; return the edits. Refuse filled blocks unless
    ``replace``. Afterwards no ``$`` placeholder may remain anywhere."""
    cert_block = profile.block("cert")
    key_block = profile.block("key")
    if cert_block is None or key_block is None:
        missing = "cert" if cert_block is None else "key"
        raise ProfileError(
            f"{profile.source}: no <{missing}> block to fill",
            hint="not an Azure P2S certificate-authentication profile",
        )
    dialect = placeholder_dialect(profile)
    key_state = _block_state(key_block)
    if key_state is None:
        raise ProfileError(
            f"{profile.source} line {key_block.line}: <key> holds neither a placeholder nor PEM",
            hint="download the package again, or put $PRIVATEKEY back in the block",
        )
    if (dialect == "filled" or key_state == "filled") and not replace:
        raise ProfileError(
            f"{profile.source} line {cert_block.line}: <cert>/<key> already hold credentials",
            hint="pass --replace-credentials to replace them",
        )
    parts = [creds.cert_pem.decode("ascii")]
    parts.extend(_pem(c) for c in creds.chain)
    if dialect == "chain" and creds.root is not None:
        parts.append(_pem(creds.root))
    cert_block.body = "".join(parts).rstrip("\n").split("\n")
    key_block.body = creds.key_pem.decode("ascii").rstrip("\n").split("\n")
    what = {
        "classic": "placeholder $CLIENTCERTIFICATE",
        "chain": "chain placeholders",
        "empty": "empty block",
        "filled": "previous credentials (--replace-credentials)",
    }[dialect]
    contents = "client certificate"
    if creds.chain:
        contents += f" + {len(creds.chain)} intermediate(s)"
    if dialect == "chain" and creds.root is not None:
        contents += " + root"
    edits = [
        Edit(cert_block.line, "<cert>", "filled", f"{what} replaced with the {contents} (PEM)"),
        Edit(
            key_block.line,
            "<key>",
            "filled",
            "placeholder replaced with the private key (PEM"
            + (", encrypted PKCS#8 AES-256)" if b"ENCRYPTED" in creds.key_pem else ")"),
        ),
    ]
    leftover = find_placeholders(profile)
    if leftover:
        line, token = leftover[0]
        raise ProfileError(
            f"{profile.source} line {line}: placeholder {token} would remain in the output",
            hint="this template has a placeholder the toolkit does not know; report it",
        )
    return edits


def find_placeholders(profile: Profile) -> list[tuple[int, str]]:
    """``(line, token)`` for every ``$PLACEHOLDER`` outside comments in the profile.

    Lines are those of the parsed input (items keep them through edits; 0 for added items),
    so an error points at the line the admin sees in Azure's file."""
    found: list[tuple[int, str]] = []
    for item in profile.items:
        for offset, raw in enumerate(item.raw_lines):
            stripped = raw.strip()
            if stripped.startswith(("#", ";")):
                continue
            match = PLACEHOLDER.search(raw)
            if match:
                found.append((item.line + offset if item.line else 0, match.group(0)))
    return found
