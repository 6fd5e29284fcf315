"""The interface every output target implements: adapt the profile, render files, lint, and
say what the administrator sends and what the user does next."""

from __future__ import annotations

import abc
import hashlib
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from toolkit.credentials import ClientCredentials
from toolkit.findings import Edit, Finding
from toolkit.output import PlannedFile
from toolkit.package import AzurePackage, VpnSettings
from toolkit.profile import Directive, Profile

if TYPE_CHECKING:  # imported when a target signs
    from toolkit.signing import ProfileSigner

# Options that name a file instead of an inline block.
FILE_OPTIONS = frozenset(
    {
        "ca",
        "cert",
        "key",
        "tls-auth",
        "tls-crypt",
        "tls-crypt-v2",
        "extra-certs",
        "pkcs12",
        "crl-verify",
        "auth-user-pass",
        "http-proxy-user-pass",
        "dh",
    }
)


@dataclass(frozen=True)
class TargetContext:
    """What a target needs besides the profile. ``credentials`` is None only when previewing
    (``inspect``), before any credentials are loaded."""

    name: str
    display_name: str
    gateway_id: str
    credentials: ClientCredentials | None = field(default=None, repr=False)
    disable_dco: bool = False
    key_passphrase: bytes | None = field(default=None, repr=False)
    # the PKCS#12 password the administrator chose (None: the target generates one)
    pkcs12_password: bytes | None = field(default=None, repr=False)
    embed_pkcs12_password: bool = False
    vpn_settings: VpnSettings | None = None
    # signs .mobileconfig outputs (CMS, content embedded) when given
    signer: ProfileSigner | None = field(default=None, repr=False)


@dataclass
class TargetPlan:
    """One target's outputs: files (under the folder named like the target), edits, warnings;
    ``deliverables`` are the files the administrator sends for this target, in the order the
    user opens them (ios-keychain: the identity, then the profile)."""

    target: str
    files: list[PlannedFile]
    edits: list[Edit]
    warnings: list[Finding]
    deliverables: tuple[PlannedFile, ...]
    platform: str = ""

    @property
    def deliverable(self) -> PlannedFile:
        """The first file to send (the only one for most targets)."""
        return self.deliverables[0]

    @property
    def folder(self) -> str:
        return self.target


class Target(abc.ABC):
    name: ClassVar[str]
    title: ClassVar[str]
    platform: ClassVar[str]  # who uses it, for the next-step line: "Mac", "iPhone", ...
    # False for targets built from Generic/VpnSettings.xml, not from Azure's OpenVPN profile:
    # they get an empty profile in adapt/render and their outputs are not .ovpn files
    uses_profile: ClassVar[bool] = True
    # how `check` reports a profile without <key>: an error, a warning (the client can take
    # the identity from elsewhere), or nothing (keyless by design)
    missing_key: ClassVar[Literal["error", "warning"] | None] = "error"
    # the platform in the file names ("alice-iphone.ovpn"): no two files of a user differ
    # only by their folder, so a file taken out of its folder still says what it is for
    file_label: ClassVar[str]

    def file_stem(self, ctx: TargetContext) -> str:
        """The user's files for this target are named ``<name>-<file_label>``."""
        return f"{ctx.name}-{self.file_label}"

    def check_package(self, package: AzurePackage) -> None:
        """PackageError when the package lacks what this target is made from."""
        if self.uses_profile:
            package.require_profile(self.name)

    # True when adapt is adapt_package (the package's profile alone) then adapt_user: planning
    # does the first once per package and the second per user (see plan._prepared)
    splits_adapt: ClassVar[bool] = False
    # our jinja2 templates its render uses (compiled before a batch forks its workers)
    templates: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def adapt(self, profile: Profile, ctx: TargetContext) -> tuple[list[Edit], list[Finding]]:
        """Edit ``profile`` in place for this client; return edits and warnings.

        Raises ProfileError when the profile cannot work in this client at all."""

    def adapt_package(self, profile: Profile) -> tuple[list[Edit], list[Finding]]:
        """For a target with ``splits_adapt``: what :meth:`adapt` does that depends on the
        package's profile alone (no user, no option), in place."""
        raise NotImplementedError

    def adapt_user(self, profile: Profile, ctx: TargetContext) -> tuple[list[Edit], list[Finding]]:
        """For a target with ``splits_adapt``: the rest of :meth:`adapt`, for one user. It may
        only add items (planning checks that, and that they hold no template variable)."""
        return [], []

    def adapt_in_two(
        self, profile: Profile, ctx: TargetContext
    ) -> tuple[list[Edit], list[Finding]]:
        """:meth:`adapt` of a target with ``splits_adapt``: the package's part, then the user's."""
        edits, warnings = self.adapt_package(profile)
        user_edits, user_warnings = self.adapt_user(profile, ctx)
        return [*edits, *user_edits], [*warnings, *user_warnings]

    @abc.abstractmethod
    def render(self, profile: Profile, ctx: TargetContext) -> list[PlannedFile]:
        """The files for an adapted profile with credentials filled; the first is the one to
        send (see :meth:`plan`)."""

    @abc.abstractmethod
    def lint(self, profile: Profile) -> list[Finding]:
        """Problems of a finished profile for this client (used by ``check``)."""

    @abc.abstractmethod
    def next_step(self, file_to_send: Path) -> str:
        """One line for the administrator: what to send and what the user does with it."""

    def deliverables(self, files: list[PlannedFile]) -> tuple[PlannedFile, ...]:
        """The files the administrator sends (by default the first one rendered)."""
        return (files[0],)

    def plan(
        self, profile: Profile, ctx: TargetContext, edits: list[Edit], warnings: list[Finding]
    ) -> TargetPlan:
        files = self.render(profile, ctx)
        return TargetPlan(
            self.name, files, edits, warnings, self.deliverables(files), platform=self.platform
        )


def require_credentials(ctx: TargetContext) -> ClientCredentials:
    if ctx.credentials is None:  # pragma: no cover - plan_user always passes them
        raise ValueError("this target renders from loaded credentials")
    return ctx.credentials


def password_file(stem: str) -> str:
    """Where a generated PKCS#12 password goes: ``<stem>-password.txt`` beside the identity."""
    return f"{stem}-password.txt"


def pkcs12_password(ctx: TargetContext, stem: str) -> tuple[bytes, list[PlannedFile]]:
    """The PKCS#12 password for a target and the files it adds: the administrator's, or a
    generated one (``secrets.token_urlsafe``, 192 bits) in its own 0600 file ``<stem>-password.txt``
    beside the identity, to be sent to the user by another channel than the identity."""
    if ctx.pkcs12_password is not None:
        return ctx.pkcs12_password, []
    password = secrets.token_urlsafe(24).encode("ascii")
    return password, [PlannedFile(password_file(stem), password + b"\n")]


def bundle_identifier(gateway_id: str, name: str) -> str:
    """A reverse-DNS identifier stable per gateway and user (only ``A-Z a-z 0-9 . -``): the
    same user re-issued replaces the installed profile instead of adding a second one."""
    digest = hashlib.sha256(f"{gateway_id}\0{name}".encode()).hexdigest()[:8]
    return f"net.ovpn-toolkit.{_slug(gateway_id)}.{_slug(name)}-{digest}"


_NOT_SLUG = re.compile(r"[^A-Za-z0-9-]+")


def _slug(text: str) -> str:
    return _NOT_SLUG.sub("-", text).strip("-")[:40] or "x"


def stable_uuid(*parts: str) -> str:
    """A UUID derived from ``parts``: the same inputs always give the same payload UUID."""
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4)).upper()


def file_references(profile: Profile) -> list[Directive]:
    """Directives that point at a file instead of an inline block."""
    return [
        d
        for d in profile.directives()
        if d.name in FILE_OPTIONS
        and d.args
        and d.args[0] != "[inline]"
        and not (d.name == "dh" and d.args[0] == "none")
    ]


def remove_directives(profile: Profile, reason_of: Callable[[str], str | None]) -> list[Edit]:
    """Remove every directive for which ``reason_of(name)`` gives a reason; report each."""
    edits: list[Edit] = []
    for directive in list(profile.directives()):
        reason = reason_of(directive.name)
        if reason:
            profile.remove(directive)
            edits.append(Edit(directive.line, directive.name, "removed", reason))
    return edits


def lint_directives(profile: Profile, reason_of: Callable[[str], str | None]) -> list[Finding]:
    """One error finding per directive for which ``reason_of`` gives a reason."""
    return [
        Finding("error", "refused-option", f"line {d.line}: '{d.name}': {reason}", line=d.line)
        for d in profile.directives()
        if (reason := reason_of(d.name))
    ]
