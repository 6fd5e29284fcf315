"""Is what the package's profile holds real? The one place that says so, for every command.

``load_package`` (generate, batch, inspect) raises on the first problem; ``check`` reports
them all as findings. Each problem names its line in the file the administrator has:

- ``<ca>`` holds at least one parseable X.509 certificate;
- ``<tls-auth>``/``<tls-crypt>`` is an OpenVPN static key (its markers and 2048 bits of hex);
- every ``remote`` host is a DNS name or an IP address, and a ``verify-x509-name`` checked
  as a ``name``/``name-prefix`` is a DNS name (no ``<...>``, ``$``, ``*``, spaces).

A profile copied from a documentation page or a blog post fails here: its bodies are
shortened (``MIID...``), replaced by prose or by the ellipses ``……`` of Microsoft's example.
"""

from __future__ import annotations

import ipaddress
import re
import warnings
from dataclasses import dataclass

from cryptography import x509

from toolkit.findings import Finding
from toolkit.profile import Block, Profile

COPIED_HINT = (
    "download the package again from the portal: a profile copied from a web page holds "
    "shortened placeholders"
)
STATIC_KEY_BEGIN = "-----BEGIN OpenVPN Static key V1-----"
STATIC_KEY_END = "-----END OpenVPN Static key V1-----"
STATIC_KEY_HEX_DIGITS = 512  # 2048 bits
_PEM_CERT = re.compile(
    r"-----BEGIN (?:X509 |TRUSTED )?CERTIFICATE-----(.*?)-----END (?:X509 |TRUSTED )?"
    r"CERTIFICATE-----",
    re.DOTALL,
)
_HEX_LINE = re.compile(r"^[0-9A-Fa-f]+$")
_DNS_LABEL = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")
_ELLIPSES = ("...", "\u2026")  # ASCII and Unicode ellipsis
NAME_TYPES = ("name", "name-prefix")


@dataclass(frozen=True)
class ContentProblem:
    """One thing wrong with the profile's content: where, what, and a stable code."""

    line: int
    code: str
    message: str

    def finding(self) -> Finding:
        return Finding(
            "error", self.code, f"line {self.line}: {self.message}", COPIED_HINT, self.line
        )


def _load_certificate(pem: str) -> x509.Certificate | None:
    """One PEM certificate, or None when it does not parse (or breaks RFC 5280)."""
    pem = pem.replace("X509 CERTIFICATE", "CERTIFICATE").replace(
        "TRUSTED CERTIFICATE", "CERTIFICATE"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return x509.load_pem_x509_certificate(pem.encode("ascii"))
        except (ValueError, UnicodeEncodeError, x509.InvalidVersion, Warning):
            return None


def _shortened(text: str) -> bool:
    return any(mark in text for mark in _ELLIPSES)


def _ca_problems(block: Block) -> list[ContentProblem]:
    text = block.content
    found = list(_PEM_CERT.finditer(text))
    if not found:
        why = "a shortened placeholder" if _shortened(text) else "no PEM certificate"
        return [ContentProblem(block.line, "bad-ca", f"<ca> holds {why}, not a certificate")]
    problems: list[ContentProblem] = []
    good = 0
    for match in found:
        line = block.line + 1 + text.count("\n", 0, match.start())
        if _load_certificate(match.group(0)) is None:
            why = "is shortened" if _shortened(match.group(1)) else "cannot be parsed"
            problems.append(
                ContentProblem(line, "bad-ca", f"the certificate in <ca> {why} (not X.509 PEM)")
            )
            continue
        good += 1
    return [] if good and not problems else problems


def _static_key_problems(block: Block) -> list[ContentProblem]:
    where = f"<{block.name}>"
    lines = [raw.strip() for raw in block.body]
    if STATIC_KEY_BEGIN not in lines or STATIC_KEY_END not in lines:
        why = "a shortened placeholder" if _shortened(block.content) else "no static key markers"
        return [
            ContentProblem(
                block.line,
                "bad-static-key",
                f"{where} holds {why}, not an OpenVPN static key ('{STATIC_KEY_BEGIN}')",
            )
        ]
    start, end = lines.index(STATIC_KEY_BEGIN), lines.index(STATIC_KEY_END)
    digits = 0
    for offset in range(start + 1, max(start + 1, end)):
        text = lines[offset]
        if not text:
            continue
        if not _HEX_LINE.fullmatch(text):
            why = "is shortened" if _shortened(text) else "is not hex"
            return [
                ContentProblem(
                    block.line + 1 + offset,
                    "bad-static-key",
                    f"{where}: the static key {why}",
                )
            ]
        digits += len(text)
    if end < start or digits != STATIC_KEY_HEX_DIGITS:
        return [
            ContentProblem(
                block.line,
                "bad-static-key",
                f"{where}: the static key has {digits * 4} bits, not 2048 "
                "(16 lines of 32 hex digits)",
            )
        ]
    return []


def dns_name_problem(value: str) -> str | None:
    """Why ``value`` is not a DNS name (None when it is one)."""
    if not value:
        return "is empty"
    if "<" in value or ">" in value:
        return f"holds a placeholder ({value!r})"
    if "$" in value or "{" in value:
        return f"holds a template variable ({value!r})"
    if "*" in value:
        return f"is a wildcard ({value!r}), not the gateway's name"
    if any(c.isspace() for c in value):
        return f"holds spaces ({value!r})"
    if _shortened(value):
        return f"is shortened ({value!r})"
    name = value[:-1] if value.endswith(".") else value
    if len(name) > 253 or not all(_DNS_LABEL.fullmatch(label) for label in name.split(".")):
        return f"is not a DNS name ({value!r})"
    return None


def host_problem(value: str) -> str | None:
    """Why ``value`` is neither an IP address nor a DNS name (None when it is one)."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return dns_name_problem(value)
    return None


def content_problems(profile: Profile) -> list[ContentProblem]:
    """Every content problem of the profile, in line order."""
    problems: list[ContentProblem] = []
    for block in profile.blocks():
        if block.name == "ca":
            problems += _ca_problems(block)
        elif block.name in ("tls-auth", "tls-crypt"):
            problems += _static_key_problems(block)
    for directive in profile.directives("remote"):
        if directive.args:
            why = host_problem(directive.args[0])
            if why:
                problems.append(
                    ContentProblem(directive.line, "bad-remote", f"the remote host {why}")
                )
    for directive in profile.directives("verify-x509-name"):
        kind = directive.args[1] if len(directive.args) > 1 else "subject"
        if directive.args and kind in NAME_TYPES:
            why = dns_name_problem(directive.args[0])
            if why:
                problems.append(
                    ContentProblem(
                        directive.line, "bad-verify-name", f"the verify-x509-name value {why}"
                    )
                )
    problems.sort(key=lambda p: p.line)
    return problems


def ca_certificates(profile: Profile) -> list[x509.Certificate]:
    """The certificates in ``<ca>`` that parse (for ``inspect``)."""
    block = profile.block("ca")
    if block is None:
        return []
    certs: list[x509.Certificate] = []
    for match in _PEM_CERT.finditer(block.content):
        cert = _load_certificate(match.group(0))
        if cert is not None:
            certs.append(cert)
    return certs
