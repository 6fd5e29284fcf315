"""The interface every output target implements: adapt the profile, render files, lint."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from toolkit.findings import Edit, Finding
from toolkit.options import FILE_OPTIONS
from toolkit.profile import Directive, Profile

FILE_MODE = 0o600


@dataclass(frozen=True)
class TargetContext:
    """What a target needs besides the profile."""

    name: str
    display_name: str
    gateway_id: str
    bundle_version: str = "1"
    disable_dco: bool = False
    key_passphrase: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class PlannedFile:
    """A file to write, relative to ``OUTPUT/<name>/``."""

    path: str
    data: bytes = field(repr=False)
    mode: int = FILE_MODE


@dataclass
class TargetPlan:
    target: str
    folder: str  # the folder (relative to OUTPUT/<name>) that this target owns
    files: list[PlannedFile]
    edits: list[Edit]
    warnings: list[Finding]


class Target(abc.ABC):
    name: ClassVar[str]
    title: ClassVar[str]

    @abc.abstractmethod
    def adapt(self, profile: Profile, ctx: TargetContext) -> tuple[list[Edit], list[Finding]]:
        """Edit ``profile`` in place for this client; return edits and warnings.

        Raises ProfileError when the profile cannot work in this client at all."""

    @abc.abstractmethod
    def render(self, profile: Profile, ctx: TargetContext) -> list[PlannedFile]:
        """The files for an adapted profile with credentials filled."""

    @abc.abstractmethod
    def lint(self, profile: Profile) -> list[Finding]:
        """Problems of a finished profile for this client (used by ``check``)."""

    def plan(
        self, profile: Profile, ctx: TargetContext, edits: list[Edit], warnings: list[Finding]
    ) -> TargetPlan:
        return TargetPlan(self.name, self.name, self.render(profile, ctx), edits, warnings)


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
