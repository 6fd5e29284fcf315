"""OpenVPN Connect on iOS (the OpenVPN 3 core): one inline ``.ovpn`` within the core's limits."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from toolkit.errors import ProfileError
from toolkit.findings import Edit, Finding
from toolkit.output import PlannedFile
from toolkit.profile import Comment, Directive, Profile, tokenize
from toolkit.targets.base import (
    Target,
    TargetContext,
    file_references,
    lint_directives,
    remove_directives,
)
from toolkit.targets.ios.options import IOS_UNFIXABLE, ios_fatal_reason

MAX_LINE_BYTES = 512
MAX_PROFILE_BYTES = 262144
META_PREFIXES = ("OVPN_ACCESS_SERVER_PROFILE=", "OVPN_ACCESS_SERVER_FRIENDLY_NAME=")


def _unfixable(profile: Profile) -> list[tuple[Directive, str]]:
    found: list[tuple[Directive, str]] = []
    for d in profile.directives():
        if d.name in IOS_UNFIXABLE:
            found.append((d, f"'{d.name}' is not supported by OpenVPN Connect"))
        elif d.name == "dev" and d.args and d.args[0].startswith("tap"):
            found.append((d, "TAP mode is not supported by OpenVPN Connect"))
        elif d.name == "mode" and d.args and d.args[0] != "p2p":
            found.append((d, f"'mode {d.args[0]}' is not supported by OpenVPN Connect"))
        elif d.name == "key-method" and d.args and d.args[0] != "2":
            found.append((d, "only key-method 2 is supported by OpenVPN Connect"))
    for d in file_references(profile):
        found.append((d, f"'{d.name}' names a file; iOS imports need everything inline"))
    return found


def _quoted_verify_name(profile: Profile) -> list[Directive]:
    """verify-x509-name lines written with quotes (OpenVPN Connect before 3.10.3 keeps them)."""
    return [d for d in profile.directives("verify-x509-name") if "'" in d.raw or '"' in d.raw]


def bare_directive(d: Directive) -> str | None:
    """``d`` written without quotes, or None when its arguments need them (spaces, quotes,
    a leading ``#``): the one rule adapt applies and lint checks."""
    raw = " ".join([d.name, *d.args])
    try:
        same = tokenize(raw) == [d.name, *d.args]
    except ValueError:
        same = False
    return raw if same and "'" not in raw and '"' not in raw else None


def _size_problems(data: bytes, origins: list[int] | None = None) -> list[tuple[int, str]]:
    """Size and line-length problems; ``origins`` maps output lines to the input's lines."""
    problems: list[tuple[int, str]] = []
    if len(data) > MAX_PROFILE_BYTES:
        problems.append(
            (
                0,
                f"profile is {len(data)} bytes, over OpenVPN Connect's "
                f"{MAX_PROFILE_BYTES}-byte limit",
            )
        )
    for number, line in enumerate(data.split(b"\n"), 1):
        if len(line) > MAX_LINE_BYTES:
            if origins and number <= len(origins):
                number = origins[number - 1]
            problems.append(
                (
                    number,
                    f"line {number} is {len(line)} bytes, over OpenVPN "
                    f"Connect's {MAX_LINE_BYTES}-byte line limit",
                )
            )
    return problems


_WINDOW = MAX_LINE_BYTES // 2


def _within_limits(data: bytes) -> bool:
    """No problem for :func:`_size_problems` (the common case, found without a line loop).

    When every aligned window of 256 bytes holds a newline, no line can reach 512 bytes (a
    run of 511 bytes covers a whole window); only otherwise are the lines measured."""
    if len(data) > MAX_PROFILE_BYTES:
        return False
    find = data.find
    if all(find(b"\n", start, start + _WINDOW) >= 0 for start in range(0, len(data), _WINDOW)):
        return True
    return max(map(len, data.split(b"\n"))) <= MAX_LINE_BYTES


def _raise_for_size(profile: Profile, data: bytes | None = None) -> None:
    """ProfileError when OpenVPN Connect would refuse the profile for its size or a line;
    ``data``: the profile's bytes, when the caller has them."""
    data = profile.to_bytes() if data is None else data
    if _within_limits(data):
        return
    # report lines of Azure's file (the output is not written when this fails)
    origins = [
        item.line + offset if item.line else 0
        for item in profile.items
        for offset in range(len(item.raw_lines))
    ]
    problems = _size_problems(data, origins)
    if problems:
        raise ProfileError(
            f"{profile.source}: {problems[0][1]}",
            hint="OpenVPN Connect refuses such profiles (ERR_PROFILE_LINE_TOO_LONG); "
            "shorten the line in the package profile",
        )


class IOSTarget(Target):
    name = "ios"
    title = "OpenVPN Connect (iOS)"
    platform = "iPhone"
    # without <key>, OpenVPN Connect asks for an identity from its keychain (external PKI)
    missing_key: ClassVar[Literal["error", "warning"] | None] = "warning"
    file_label = "iphone"
    splits_adapt = True  # only the name header depends on the user

    def adapt(self, profile: Profile, ctx: TargetContext) -> tuple[list[Edit], list[Finding]]:
        return self.adapt_in_two(profile, ctx)

    def adapt_package(self, profile: Profile) -> tuple[list[Edit], list[Finding]]:
        unfixable = _unfixable(profile)
        if unfixable:
            d, why = unfixable[0]
            raise ProfileError(
                f"{profile.source} line {d.line}: {why}",
                hint="OpenVPN Connect cannot use this profile; fix the package profile",
            )
        if profile.first("client") is None:
            raise ProfileError(
                f"{profile.source}: no 'client' directive",
                hint="OpenVPN Connect needs a client profile; this looks like a server config",
            )
        edits = remove_directives(profile, ios_fatal_reason)
        for d in _quoted_verify_name(profile):
            bare = bare_directive(d)
            if bare is None:
                raise ProfileError(
                    f"{profile.source} line {d.line}: the verify-x509-name value cannot be "
                    "written without quotes, which OpenVPN Connect before 3.10.3 needs",
                    hint="use the gateway's name as Azure writes it (<guid>.vpn.azure.com)",
                )
            new = Directive(d.line, d.name, d.args, bare)
            profile.replace(d, new)
            edits.append(
                Edit(
                    d.line,
                    d.name,
                    "changed",
                    "quotes removed: OpenVPN Connect cores before 3.10.3 keep them as part of "
                    "the name and fail with 'VERIFY FAIL -- verify-x509-name failed'",
                )
            )
        # the name shown in the app
        for item in list(profile.items):
            if isinstance(item, Comment) and item.raw.lstrip("#; ").startswith(META_PREFIXES):
                profile.remove(item)
                edits.append(
                    Edit(
                        item.line,
                        "# OVPN_ACCESS_SERVER_PROFILE",
                        "removed",
                        "replaced by the display name below",
                    )
                )
            elif (
                isinstance(item, Directive)
                and item.name == "setenv"
                and item.args
                and item.args[0] == "FRIENDLY_NAME"
            ):
                profile.remove(item)
                edits.append(
                    Edit(
                        item.line,
                        "setenv FRIENDLY_NAME",
                        "removed",
                        "replaced by the display name below",
                    )
                )
        return edits, []

    def adapt_user(self, profile: Profile, ctx: TargetContext) -> tuple[list[Edit], list[Finding]]:
        """The name OpenVPN Connect shows, added on top; then the size limits."""
        edits: list[Edit] = []
        header = [
            Comment(0, f"# OVPN_ACCESS_SERVER_PROFILE={ctx.display_name}"),
            Directive.new("setenv", "FRIENDLY_NAME", ctx.display_name),
        ]
        if profile.items:
            profile.insert_before(profile.items[0], *header)
        else:
            profile.items.extend(header)
        edits.append(
            Edit(
                0,
                "# OVPN_ACCESS_SERVER_PROFILE",
                "added",
                f"the profile's name in OpenVPN Connect: {ctx.display_name!r}",
            )
        )
        edits.append(
            Edit(0, "setenv FRIENDLY_NAME", "added", "the friendly name OpenVPN Connect shows")
        )
        _raise_for_size(profile)  # here too, so `inspect` reports it before any credentials
        return edits, []

    def render(self, profile: Profile, ctx: TargetContext) -> list[PlannedFile]:
        data = profile.to_bytes()
        _raise_for_size(profile, data)
        return [PlannedFile(f"{self.name}/{self.file_stem(ctx)}.ovpn", data)]

    def next_step(self, file_to_send: Path) -> str:
        return (
            f"iPhone: send {file_to_send}; the user opens it with OpenVPN Connect, taps ADD "
            "(docs/how-to/ios.md)"
        )

    def lint(self, profile: Profile) -> list[Finding]:
        findings = lint_directives(profile, ios_fatal_reason)
        findings += [
            Finding("error", "unsupported", f"line {d.line}: {why}", line=d.line)
            for d, why in _unfixable(profile)
        ]
        if profile.first("client") is None:
            findings.append(Finding("error", "no-client", "no 'client' directive"))
        findings += [
            Finding(
                "error",
                "quoted-verify-x509-name",
                f"line {d.line}: verify-x509-name is quoted; OpenVPN Connect before 3.10.3 "
                "fails with 'VERIFY FAIL -- verify-x509-name failed'",
                hint="write the name without quotes",
                line=d.line,
            )
            for d in _quoted_verify_name(profile)
        ]
        findings += [
            Finding("error", "size-limit", message, line=line or None)
            for line, message in _size_problems(profile.to_bytes())
        ]
        return findings
