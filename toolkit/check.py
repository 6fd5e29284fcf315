"""`check`: lint a finished profile (ours or hand-made) for one client."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

from toolkit.contents import content_problems
from toolkit.credentials import load_certificates, load_private_key
from toolkit.errors import CredentialsError, PassphraseRequiredError
from toolkit.fill import find_placeholders
from toolkit.findings import Finding
from toolkit.passphrase import PassphraseSource
from toolkit.profile import Profile
from toolkit.targets import get_targets
from toolkit.validation import UsableKey, validate_certificate


@dataclass(frozen=True)
class CheckResult:
    source: str
    target: str
    findings: list[Finding]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def clean(self) -> bool:
        return not self.errors


def check_profile(
    profile: Profile,
    target: str,
    *,
    passphrase: PassphraseSource | None = None,
    warn_days: int = 30,
    now: dt.datetime | None = None,
    extra: list[Finding] | None = None,
) -> CheckResult:
    (chosen,) = get_targets([target])
    findings: list[Finding] = list(extra or [])
    for line, token in find_placeholders(profile):
        findings.append(
            Finding(
                "error",
                "placeholder",
                f"line {line}: placeholder {token} was never filled",
                hint="fill it with ovpn-toolkit generate",
                line=line,
            )
        )
    findings.extend(problem.finding() for problem in content_problems(profile))
    for name in ("ca", "tls-auth"):
        if profile.block(name) is None and profile.first(name) is None:
            findings.append(Finding("error", "missing-block", f"no <{name}> block"))
    cert_block = profile.block("cert")
    key_block = profile.block("key")
    if cert_block is None and profile.first("cert") is None:
        findings.append(Finding("error", "missing-block", "no <cert> block"))
    if key_block is None and profile.first("key") is None:
        findings.append(Finding("error", "missing-block", "no <key> block"))
    if cert_block is not None and "-----BEGIN CERTIFICATE" in cert_block.content:
        try:
            certs = load_certificates(cert_block.content.encode(), f"<cert> line {cert_block.line}")
        except CredentialsError as exc:
            findings.append(Finding("error", "bad-certificate", exc.message, line=cert_block.line))
            certs = []
        key: UsableKey | None = None
        if certs and key_block is not None and "PRIVATE KEY-----" in key_block.content:
            try:
                key = load_private_key(
                    key_block.content.encode(),
                    f"<key> line {key_block.line}",
                    passphrase or PassphraseSource(),
                )
            except CredentialsError as exc:
                level: Literal["error", "warning"] = (
                    "warning" if isinstance(exc, PassphraseRequiredError) else "error"
                )
                findings.append(
                    Finding(
                        level,
                        "key-unreadable",
                        exc.message
                        + ("; the key match was not checked" if level == "warning" else ""),
                        hint=exc.hint,
                        line=key_block.line,
                    )
                )
        if certs:
            findings.extend(
                validate_certificate(
                    certs[0],
                    key,
                    chain=[c for c in certs[1:] if c.issuer != c.subject],
                    cert_source=f"<cert> line {cert_block.line}",
                    key_source=f"<key> line {key_block.line if key_block else 0}",
                    targets=[target],
                    warn_days=warn_days,
                    now=now,
                )
            )
    findings.extend(chosen.lint(profile))
    findings.sort(key=lambda f: (f.level != "error", f.line or 0))
    return CheckResult(profile.source, chosen.name, findings)
