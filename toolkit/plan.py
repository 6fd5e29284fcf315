"""Plan one user's outputs: the one way from inputs to files, for `generate` and `batch` alike.

:func:`plan_from_inputs` loads the credentials and calls :func:`plan_user`, which validates
them, adapts the package's profile per target, fills it and adds the install guide. Pure:
returns a :class:`UserPlan` (files as bytes, edits, warnings); ``toolkit.output`` puts it on
disk. Nothing is written unless every target planned successfully.
"""

from __future__ import annotations

import datetime as dt
import re
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from cryptography import x509

from toolkit.credentials import ClientCredentials, load_credentials
from toolkit.errors import ToolkitError
from toolkit.fill import CredentialPem, FillCheck, check_fill, fill_credentials
from toolkit.findings import Edit, Finding
from toolkit.guide import GUIDE_TEMPLATE, check_contact, render_guide
from toolkit.names import check_display_name, check_name, sanitize_name
from toolkit.output import PlannedFile
from toolkit.package import AzurePackage
from toolkit.passphrase import PassphraseSource
from toolkit.profile import Profile
from toolkit.targets import Target, TargetContext, TargetPlan, get_targets
from toolkit.validation import (
    CertificateSummary,
    chains_to,
    raise_for_errors,
    validate_credentials,
)

if TYPE_CHECKING:  # imported when a target signs: most plans sign nothing
    from toolkit.signing import ProfileSigner


@dataclass(frozen=True)
class CredentialInputs:
    """Where one user's credentials come from: ``pfx``, or ``cert`` (+ ``key``), + ``chain``."""

    cert: Path | None = None
    key: Path | None = None
    pfx: Path | None = None
    chain: tuple[Path, ...] = ()
    passphrase: PassphraseSource = field(default_factory=PassphraseSource)
    # files the caller already read (credentials.read_input), so they are not read twice
    contents: Mapping[Path, bytes] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class UserRequest:
    """What to make for one user. ``name`` defaults to one derived from the certificate CN;
    ``key_passphrase`` (when given) encrypts the key inside the profiles."""

    name: str | None = None
    display_name: str | None = None
    targets: tuple[str, ...] = ()
    disable_dco: bool = False
    replace_credentials: bool = False
    warn_days: int = 30
    key_passphrase: PassphraseSource | bytes | None = field(default=None, repr=False)
    guide: bool = False
    # the PKCS#12 password of the ios-keychain and ikev2 identities (None: generated per target)
    pkcs12_passphrase: PassphraseSource | bytes | None = field(default=None, repr=False)
    embed_pkcs12_password: bool = False
    signer: ProfileSigner | None = field(default=None, repr=False)
    contact: str | None = None  # the administrator, named in the guide


@dataclass
class UserPlan:
    name: str
    display_name: str
    certificate: CertificateSummary
    targets: list[TargetPlan]
    warnings: list[Finding] = field(default_factory=list)
    guide: PlannedFile | None = None

    @property
    def files(self) -> list[PlannedFile]:
        """Every file to write under ``OUTPUT/<name>/``: the targets' and the guide."""
        files = [f for plan in self.targets for f in plan.files]
        return [*files, self.guide] if self.guide else files

    def send(self) -> list[dict[str, str]]:
        """What the administrator sends, per platform: the targets' files, and the guide."""
        return send_list(self.name, self.targets, self.guide)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "display_name": self.display_name,
            "certificate": self.certificate.to_json(),
            "targets": [
                {
                    "target": plan.target,
                    "platform": plan.platform,
                    "send": f"{self.name}/{plan.deliverable.path}",
                    "files": [
                        {
                            "path": f"{self.name}/{f.path}",
                            "sha256": f.sha256,
                            "mode": f"{f.mode:04o}",
                            "bytes": f.size,
                        }
                        for f in plan.files
                    ],
                    "edits": [e.to_json() for e in plan.edits],
                }
                for plan in self.targets
            ],
            "guide": None if self.guide is None else f"{self.name}/{self.guide.path}",
            "send": self.send(),
            "warnings": [w.to_json() for w in self.warnings],
        }


def send_list(
    name: str, targets: Sequence[TargetPlan], guide: PlannedFile | None
) -> list[dict[str, str]]:
    """``[{target, platform, path}]``: the files to send per target (paths under OUTPUT; one for
    most targets, the identity and the profile for ios-keychain), then the guide (platform
    ``all``); the manifest and ``--json`` list exactly these."""
    send = [
        {"target": t.target, "platform": t.platform, "path": f"{name}/{d.path}"}
        for t in targets
        for d in t.deliverables
    ]
    if guide is not None:
        send.append({"target": "guide", "platform": "all", "path": f"{name}/{guide.path}"})
    return send


def openvpn_log(profile: Profile) -> str | None:
    """The file OpenVPN 2.x writes its messages to when the profile says so (Azure: ``log``)."""
    for directive in profile.directives():
        if directive.name in ("log", "log-append") and directive.args:
            return PurePath(directive.args[0]).name
    return None


def gateway_id(profile: Profile) -> str:
    """The gateway's identity: the GUID from verify-x509-name, else the first remote host."""
    verify = profile.first("verify-x509-name")
    if verify is not None and verify.args:
        return verify.args[0].split(".")[0]
    remote = profile.first("remote")
    if remote is not None and remote.args:
        return remote.args[0]
    return "gateway"


def gateway_host(profile: Profile) -> str:
    """The first remote host, as users see it in their client."""
    remote = profile.first("remote")
    return remote.args[0] if remote is not None and remote.args else "the Azure VPN gateway"


_VPN_SERVER_GUID = re.compile(r"^azuregateway-([0-9a-fA-F-]{36})-", re.IGNORECASE)


def package_gateway_id(package: AzurePackage) -> str:
    """:func:`gateway_id` of the package's profile; for a package with only ``Generic/``, the
    same GUID taken from ``VpnServer`` (``azuregateway-<guid>-<hex>.vpn.azure.com``)."""
    if package.has_profile:
        return gateway_id(package.profile())
    server = package.vpn_settings.server if package.vpn_settings else None
    if server:
        match = _VPN_SERVER_GUID.match(server)
        return match.group(1).lower() if match else server
    return "gateway"


def package_gateway_host(package: AzurePackage) -> str:
    if package.has_profile:
        return gateway_host(package.profile())
    server = package.vpn_settings.server if package.vpn_settings else None
    return server or "the Azure VPN gateway"


def _resolve(source: PassphraseSource | bytes | None, what: str) -> bytes | None:
    if isinstance(source, PassphraseSource):
        return source.resolve(what, ask=False)
    return source


def gateway_label(package: AzurePackage) -> str:
    """A short human name for the gateway: the zip's or folder's name (Azure names the zip
    after the gateway), else 'Azure VPN'."""
    stem = (
        PurePath(package.source).stem if package.kind != "folder" else PurePath(package.source).name
    )
    if package.kind == "ovpn" and stem.lower() == "vpnconfig":
        return "Azure VPN"
    return stem or "Azure VPN"


def default_display_name(name: str, package: AzurePackage) -> str:
    return f"{name} ({_facts(package).label})"


def preview_target(
    package: AzurePackage, target: Target, ctx: TargetContext
) -> tuple[Profile, list[Edit], list[Finding]]:
    """What a target does to the package's profile, before credentials (used by inspect)."""
    target.check_package(package)
    profile = package.profile() if target.uses_profile else Profile.parse("", package.source)
    edits, warnings = target.adapt(profile, ctx)
    return profile, edits, warnings


@dataclass(frozen=True)
class _Prepared:
    """A target's part of planning that is the same for every user of a package: the profile
    after :meth:`Target.adapt_package` (cloned per user), its edits and warnings, and the
    checks :func:`fill_credentials` makes before filling."""

    profile: Profile
    edits: tuple[Edit, ...]
    warnings: tuple[Finding, ...]
    fill: FillCheck


class _PackageFacts:
    """What planning derives from a package alone, made once per package object."""

    def __init__(self, package: AzurePackage) -> None:
        self.gateway_id = package_gateway_id(package)
        self.gateway_host = package_gateway_host(package)
        self.label = gateway_label(package)
        # by target name; None: that target is planned from scratch for every user
        self.targets: dict[str, _Prepared | None] = {}

    def prepared(self, package: AzurePackage, target: Target) -> _Prepared | None:
        if target.name not in self.targets:
            self.targets[target.name] = _prepare(package, target)
        return self.targets[target.name]


# per package (weakly: a package dropped by the caller takes its facts along)
_FACTS: weakref.WeakKeyDictionary[AzurePackage, _PackageFacts] = weakref.WeakKeyDictionary()


def _facts(package: AzurePackage) -> _PackageFacts:
    facts = _FACTS.get(package)
    if facts is None:
        facts = _FACTS[package] = _PackageFacts(package)
    return facts


def _prepare(package: AzurePackage, target: Target) -> _Prepared | None:
    """The package's part of ``target``'s adapt and the fill checks, or None when the target
    does not split its adapt or either part fails (every user then gets the error from
    planning from scratch, in the order it always came)."""
    if not target.splits_adapt:
        return None
    try:
        profile = package.profile()
        edits, warnings = target.adapt_package(profile)
        fill = check_fill(profile)
    except ToolkitError:
        return None
    return _Prepared(profile, tuple(edits), tuple(warnings), fill)


def _adapt_and_fill(
    package: AzurePackage,
    facts: _PackageFacts,
    target: Target,
    ctx: TargetContext,
    pem: CredentialPem,
    replace: bool,
) -> tuple[Profile, list[Edit], list[Finding]]:
    """One target's profile for one user, adapted and filled, with its edits and warnings:
    from the package's prepared part when there is one, else from scratch. Both give the same
    profile, edits, warnings and errors (tests/test_planning_speedups.py)."""
    prepared = facts.prepared(package, target)
    if prepared is not None:
        profile = prepared.profile.share()  # adapt_user adds items, the fill replaces two
        kept = set(map(id, profile.items))
        edits, warnings = target.adapt_user(profile, ctx)
        added = [item for item in profile.items if id(item) not in kept]
        if len(profile.items) - len(added) == len(kept) and not any(
            "$" in raw or "__" in raw for item in added for raw in item.raw_lines
        ):
            filled = fill_credentials(profile, pem, replace=replace, checked=prepared.fill)
            return (
                profile,
                [*filled, *prepared.edits, *edits],
                [*prepared.warnings, *warnings],
            )
    # from scratch: targets that do not split their adapt, or a user's part that adds a
    # template variable (the fill's checks must then see it)
    profile = package.profile()
    edits, warnings = target.adapt(profile, ctx)
    return profile, fill_credentials(profile, pem, replace=replace) + edits, warnings


def prepare_package(package: AzurePackage, targets: tuple[str, ...], *, guide: bool = True) -> None:
    """Make now what planning derives from ``package`` alone for ``targets``, and compile their
    templates (a batch does it before it forks its workers, which then start with it). Errors
    are left for planning to report, user by user."""
    from toolkit.templating import preload

    try:
        facts = _facts(package)
        chosen = get_targets(targets)
    except ToolkitError:
        return
    for target in chosen:
        if target.uses_profile:
            facts.prepared(package, target)
    preload(*(name for target in chosen for name in target.templates))
    if guide:
        preload(GUIDE_TEMPLATE)


def default_name(creds: ClientCredentials) -> str:
    """The file and bundle name when none is given: from the certificate's CN."""
    return sanitize_name(creds.summary.common_name or creds.certificate.subject.rfc4514_string())


def plan_from_inputs(
    package: AzurePackage,
    inputs: CredentialInputs,
    request: UserRequest,
    *,
    roots: Sequence[x509.Certificate] = (),
    now: dt.datetime | None = None,
) -> UserPlan:
    """Load the credentials named by ``inputs``, then :func:`plan_user`."""
    creds = load_credentials(
        cert=inputs.cert,
        key=inputs.key,
        pfx=inputs.pfx,
        chain=inputs.chain,
        passphrase=inputs.passphrase,
        contents=inputs.contents,
    )
    return plan_user(package, creds, request, roots=roots, now=now)


def plan_user(
    package: AzurePackage,
    creds: ClientCredentials,
    request: UserRequest,
    *,
    roots: Sequence[x509.Certificate] = (),
    now: dt.datetime | None = None,
) -> UserPlan:
    """Validate everything and build every file for one user; raise on the first error."""
    facts = _facts(package)
    name = check_name(request.name or default_name(creds))
    display = check_display_name(request.display_name or f"{name} ({facts.label})")
    contact = check_contact(request.contact) if request.contact is not None else None
    targets = get_targets(request.targets)
    findings = validate_credentials(
        creds,
        roots=roots,
        targets=[t.name for t in targets],
        warn_days=request.warn_days,
        now=now,
    )
    raise_for_errors(findings)
    warnings = list(findings)
    for target in targets:
        target.check_package(package)  # before any work: a clear error for a missing part
    root = chains_to(creds.certificate, creds.chain, roots) if roots else None
    key_passphrase = _resolve(request.key_passphrase, "the profile key")
    pkcs12_passphrase = _resolve(request.pkcs12_passphrase, "the PKCS#12 identity")
    key_pem = creds.protected_key_pem(key_passphrase) if key_passphrase else creds.key_pem
    pem = CredentialPem(creds.cert_pem, key_pem, creds.chain, root)
    ctx = TargetContext(
        name=name,
        display_name=display,
        gateway_id=facts.gateway_id,
        credentials=creds,
        disable_dco=request.disable_dco,
        key_passphrase=key_passphrase,
        pkcs12_password=pkcs12_passphrase,
        embed_pkcs12_password=request.embed_pkcs12_password,
        vpn_settings=package.vpn_settings,
        signer=request.signer,
    )
    plans: list[TargetPlan] = []
    profiles: list[Profile] = []
    for target in targets:
        if target.uses_profile:
            profile, edits, target_warnings = _adapt_and_fill(
                package, facts, target, ctx, pem, request.replace_credentials
            )
            profiles.append(profile)
        else:
            profile = Profile.parse("", package.source)
            profiles.append(profile)
            edits, target_warnings = target.adapt(profile, ctx)
        edits.sort(key=lambda e: e.line)
        plans.append(target.plan(profile, ctx, edits, target_warnings))
        warnings.extend(target_warnings)
    summary = creds.summary
    guide = None
    if request.guide:
        guide = render_guide(
            name=name,
            display_name=display,
            gateway=facts.gateway_host,
            certificate=summary,
            deliverables={plan.target: plan.deliverables for plan in plans},
            key_protected=key_passphrase is not None,
            contact=contact,
            ikev2_password=not request.embed_pkcs12_password,
            openvpn_log=next(
                (
                    openvpn_log(p)
                    for t, p in zip(targets, profiles, strict=True)
                    if t.name == "openvpn"
                ),
                None,
            ),
        )
    return UserPlan(name, display, summary, plans, warnings, guide)
