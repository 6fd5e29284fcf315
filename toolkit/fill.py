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
from toolkit.profile import Blank, Block, Comment, Directive, Profile

Dialect = Literal["classic", "chain", "empty", "filled"]
PLACEHOLDER = re.compile(r"\$[A-Z][A-Z0-9_]*")
CHAIN_TOKENS = ("$CLIENT_CERTIFICATE", "$INTERMEDIATE_CERTIFICATE", "$ROOT_CERTIFICATE")
CLASSIC_TOKENS = ("$CLIENTCERTIFICATE", "$PRIVATEKEY")
AZURE_TOKENS = frozenset((*CHAIN_TOKENS, *CLASSIC_TOKENS))
# any template variable: $NAME, ${name}, __NAME__ (other tools' templates)
TEMPLATE_VARIABLE = re.compile(
    r"\$\{[A-Za-z_][A-Za-z0-9_.-]*\}|\$[A-Za-z_][A-Za-z0-9_]*|__[A-Za-z][A-Za-z0-9_]*__"
)
# PEM armour lines around a placeholder: -----BEGIN CERTIFICATE----- / -----END ...-----
_ARMOUR = re.compile(r"^\s*-----(BEGIN|END) [A-Z0-9 ]+-----\s*$")
# Microsoft's documentation writes "$INTERMEDIATE_CERTIFICATE (optional)"
_ANNOTATION = re.compile(r"\((?:optional|if any)\)", re.IGNORECASE)
FOREIGN_MESSAGE = "template variable {token} is not an Azure placeholder"
FOREIGN_HINT = (
    "this file is another tool's template: fill it with that tool first, or use the "
    "vpnconfig.ovpn from the Azure VPN client package"
)


def _block_state(block: Block) -> Dialect | None:
    """What a ``<cert>``/``<key>`` block holds. Placeholders count bare or wrapped in PEM
    armour (``-----BEGIN CERTIFICATE-----`` / ``$CLIENTCERTIFICATE`` / ``-----END ...``)."""
    text = "\n".join(block.body)
    if not text.strip():
        return "empty"
    inner = [
        _ANNOTATION.sub("", line).strip()
        for line in block.body
        if line.strip() and not _ARMOUR.match(line)
    ]
    tokens = PLACEHOLDER.findall(text)
    if not inner and "-----BEGIN" in text:
        return "empty"  # armour with nothing inside
    if tokens and all(t in AZURE_TOKENS for t in inner):
        return "chain" if any(t in CHAIN_TOKENS for t in tokens) else "classic"
    if "-----BEGIN" in text and not TEMPLATE_VARIABLE.search(text):
        return "filled"
    return None


def placeholder_dialect(profile: Profile) -> Dialect:
    """How the ``<cert>`` block asks to be filled."""
    return _dialect(profile, None)


def _dialect(profile: Profile, variables: list[tuple[int, str]] | None) -> Dialect:
    """:func:`placeholder_dialect`; ``variables``: :func:`_variables` of the profile, if made."""
    block = profile.block("cert")
    if block is None:
        raise ProfileError(f"{profile.source}: no <cert> block", hint="not an Azure P2S profile")
    _raise_for_foreign(profile, variables)
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


@dataclass(frozen=True)
class FillCheck:
    """What :func:`fill_credentials` checks in a profile before filling it, found once by
    :func:`check_fill` (``plan`` does it once per package and target, not per user).

    ``remaining``: the template variables the fill leaves in place (all but those of the two
    bodies it replaces), in line order; None when they cannot be told apart (an added block)."""

    dialect: Dialect
    key_state: Dialect
    remaining: tuple[tuple[int, str], ...] | None


def _blocks_to_fill(profile: Profile) -> tuple[Block, Block]:
    """The first ``<cert>`` and the first ``<key>`` block (one pass over the items)."""
    cert_block: Block | None = None
    key_block: Block | None = None
    for item in profile.items:
        if isinstance(item, Block):
            if cert_block is None and item.name == "cert":
                cert_block = item
            elif key_block is None and item.name == "key":
                key_block = item
            if cert_block is not None and key_block is not None:
                break
    if cert_block is None or key_block is None:
        missing = "cert" if cert_block is None else "key"
        raise ProfileError(
            f"{profile.source}: no <{missing}> block to fill",
            hint="not an Azure P2S certificate-authentication profile",
        )
    return cert_block, key_block


def check_fill(profile: Profile) -> FillCheck:
    """The checks :func:`fill_credentials` makes before filling (the same errors, in the same
    order): both blocks there, no foreign template variable, each block a known state."""
    cert_block, key_block = _blocks_to_fill(profile)
    variables = _variables(profile)
    dialect = _dialect(profile, variables)
    key_state = _block_state(key_block)
    if key_state is None:
        raise ProfileError(
            f"{profile.source} line {key_block.line}: <key> holds neither a placeholder nor PEM",
            hint="download the package again, or put $PRIVATEKEY back in the block",
        )
    remaining = None
    if cert_block.line and key_block.line:
        bodies = {
            line
            for block in (cert_block, key_block)
            for line in range(block.line + 1, block.line + 1 + len(block.body))
        }
        remaining = tuple((line, t) for line, t in variables if line not in bodies)
    return FillCheck(dialect, key_state, remaining)


def _has_variable(lines: list[str]) -> bool:
    text = "\n".join(lines)
    return "$" in text or "__" in text


def fill_credentials(
    profile: Profile,
    creds: CredentialPem,
    *,
    replace: bool = False,
    checked: FillCheck | None = None,
) -> list[Edit]:
    """Fill ``<cert>``/``<key>`` in place; return the edits. Refuse filled blocks unless
    ``replace``. Afterwards no ``$`` placeholder may remain anywhere.

    ``checked``: :func:`check_fill` of this same profile, or of one it differs from only by
    lines without a ``$`` or ``__`` (then those checks are not made again)."""
    cert_block, key_block = _blocks_to_fill(profile)
    if checked is None:
        checked = check_fill(profile)
    dialect, key_state = checked.dialect, checked.key_state
    if (dialect == "filled" or key_state == "filled") and not replace:
        raise ProfileError(
            f"{profile.source} line {cert_block.line}: <cert>/<key> already hold credentials",
            hint="pass --replace-credentials to replace them",
        )
    parts = [creds.cert_pem.decode("ascii")]
    parts.extend(_pem(c) for c in creds.chain)
    if dialect == "chain" and creds.root is not None:
        parts.append(_pem(creds.root))
    # new blocks in their place, the old ones untouched (a profile may share its items with
    # the package's prepared one: Profile.share)
    cert_body = "".join(parts).rstrip("\n").split("\n")
    key_body = creds.key_pem.decode("ascii").rstrip("\n").split("\n")
    old_cert, old_key = cert_block, key_block
    cert_block = Block(
        old_cert.line, old_cert.name, cert_body, old_cert.open_raw, old_cert.close_raw
    )
    key_block = Block(old_key.line, old_key.name, key_body, old_key.open_raw, old_key.close_raw)
    profile.replace(old_cert, cert_block)
    profile.replace(old_key, key_block)
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
    if checked.remaining is None or _has_variable(cert_block.body) or _has_variable(key_block.body):
        leftover = find_placeholders(profile)
    else:  # the new bodies hold no variable: what remains is what the check found
        leftover = list(checked.remaining)
    if leftover:
        line, token = leftover[0]
        raise ProfileError(
            f"{profile.source} line {line}: placeholder {token} would remain in the output",
            hint="this template has a placeholder the toolkit does not know; report it",
        )
    return edits


def _raise_for_foreign(profile: Profile, variables: list[tuple[int, str]] | None = None) -> None:
    foreign = foreign_placeholders(profile, variables)
    if foreign:
        line, token = foreign[0]
        raise ProfileError(
            f"{profile.source} line {line}: {FOREIGN_MESSAGE.format(token=token)}", FOREIGN_HINT
        )


def _line_variables(raw: str) -> tuple[str, ...]:
    """The template variables of one line, or () for a comment line."""
    if raw.strip().startswith(("#", ";")):
        return ()
    return tuple(match.group(0) for match in TEMPLATE_VARIABLE.finditer(raw))


# the variables of lines seen before: a package's lines recur for every user and target
_LINE_CACHE: dict[str, tuple[str, ...]] = {}
_LINE_CACHE_MAX = 4096


def _variables(profile: Profile) -> list[tuple[int, str]]:
    """``(line, token)`` for every template variable outside comments, in line order.

    A variable needs a ``$`` or ``__``: lines without either (nearly all, PEM included) are
    skipped without the regular expression; the others' results are remembered by text."""
    found: list[tuple[int, str]] = []
    for item in profile.items:
        if isinstance(item, Block):
            text = "\n".join(item.body)
            if "$" not in text and "__" not in text:  # only the tags can hold one
                if "$" in item.open_raw or "__" in item.open_raw:
                    _add(found, item.line, item.open_raw)
                if "$" in item.close_raw or "__" in item.close_raw:
                    _add(found, item.line + len(item.body) + 1 if item.line else 0, item.close_raw)
                continue
        kind = type(item)
        if kind is Directive or kind is Comment or kind is Blank:  # one line
            raw: str = item.raw  # type: ignore[attr-defined]
            if "$" in raw or "__" in raw:
                _add(found, item.line, raw)
            continue
        for offset, raw in enumerate(item.raw_lines):
            if "$" in raw or "__" in raw:
                _add(found, item.line + offset if item.line else 0, raw)
    return found


def _add(found: list[tuple[int, str]], line: int, raw: str) -> None:
    tokens = _LINE_CACHE.get(raw)
    if tokens is None:
        tokens = _line_variables(raw)
        if len(_LINE_CACHE) >= _LINE_CACHE_MAX:
            _LINE_CACHE.clear()
        _LINE_CACHE[raw] = tokens
    found.extend((line, token) for token in tokens)


def foreign_placeholders(
    profile: Profile, variables: list[tuple[int, str]] | None = None
) -> list[tuple[int, str]]:
    """Template variables that are not Azure's placeholders (or sit outside <cert>/<key>);
    ``variables``: :func:`_variables` of the profile, when the caller has it."""
    found = _variables(profile) if variables is None else variables
    if not found:
        return []
    allowed: set[int] = set()
    for name in ("cert", "key"):
        for block in profile.blocks(name):
            allowed.update(range(block.line, block.line + len(block.raw_lines)))
    return [
        (line, token)
        for line, token in found
        if token not in AZURE_TOKENS or (line and line not in allowed)
    ]


def find_placeholders(profile: Profile) -> list[tuple[int, str]]:
    """``(line, token)`` for every placeholder or template variable outside comments.

    Lines are those of the parsed input (items keep them through edits; 0 for added items),
    so an error points at the line the admin sees in Azure's file."""
    return _variables(profile)
