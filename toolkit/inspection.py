"""`inspect`: what a package holds and what `generate` would do to it, per target."""

from __future__ import annotations

from typing import Any

from toolkit.contents import ca_certificates
from toolkit.errors import ToolkitError
from toolkit.fill import placeholder_dialect
from toolkit.package import AzurePackage
from toolkit.plan import default_display_name, gateway_id, preview_target
from toolkit.profile import Profile
from toolkit.targets import TARGETS, TargetContext
from toolkit.validation import CertificateSummary


def _arg(profile: Profile, name: str, index: int = 0) -> str | None:
    directive = profile.first(name)
    if directive is None or len(directive.args) <= index:
        return None
    return str(directive.args[index])


def inspect_package(package: AzurePackage, name: str = "user") -> dict[str, Any]:
    """A JSON-able description; never includes the tls-auth key or any other secret."""
    profile = package.profile()
    remote = profile.first("remote")
    ca_info: dict[str, Any] | None = None
    if profile.block("ca") is not None:
        # load_package has checked <ca> (toolkit/contents.py): at least one certificate parses
        certs = ca_certificates(profile)
        summaries = [CertificateSummary.of(c) for c in certs]
        ca_info = {
            "subject": summaries[0].subject,
            "not_after": summaries[0].not_after.isoformat(),
            "fingerprint_sha256": summaries[0].fingerprint_sha256,
            "certificates": len(certs),
            "all": [
                {"subject": s.subject, "not_after": s.not_after.isoformat()} for s in summaries
            ],
        }
    ctx = TargetContext(
        name=name,
        display_name=default_display_name(name, package),
        gateway_id=gateway_id(profile),
    )
    targets: dict[str, Any] = {}
    for target_name, target in TARGETS.items():
        try:
            _, edits, warnings = preview_target(package, target, ctx)
            targets[target_name] = {
                "ok": True,
                "edits": [e.to_json() for e in edits],
                "warnings": [w.to_json() for w in warnings],
            }
        except ToolkitError as exc:
            targets[target_name] = {"ok": False, "error": str(exc)}
    settings = package.vpn_settings
    return {
        "source": package.source,
        "kind": package.kind,
        "profile_entry": package.profile_entry,
        "profile_sha256": package.profile_sha256,
        "gateway": {
            "host": str(remote.args[0]) if remote and remote.args else None,
            "port": str(remote.args[1])
            if remote and len(remote.args) > 1
            else _arg(profile, "port"),
            "proto": _arg(profile, "proto"),
            "verify_x509_name": _arg(profile, "verify-x509-name"),
            "cipher": _arg(profile, "cipher"),
            "data_ciphers": _arg(profile, "data-ciphers"),
            "auth": _arg(profile, "auth"),
            "tls_version_min": _arg(profile, "tls-version-min"),
            "key_direction": _arg(profile, "key-direction"),
        },
        "ca": ca_info,
        "tls_auth_present": profile.block("tls-auth") is not None,
        "placeholder_dialect": placeholder_dialect(profile),
        "vpn_settings": None
        if settings is None
        else {
            "server": settings.server,
            "vpn_type": settings.vpn_type,
            "routes": list(settings.routes),
        },
        "targets": targets,
    }
