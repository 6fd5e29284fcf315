"""One small exception hierarchy; the CLI maps each class to a documented exit code.

Messages say *what* and *where*; hints say what to do. Never put key material,
passphrases or template context into a message or a hint.
"""

from __future__ import annotations

import enum
from typing import Any


class ExitCode(enum.IntEnum):
    """Documented process exit codes (see docs/reference/exit-codes.md)."""

    OK = 0
    INPUT = 2  # usage error or bad input (package, credentials, profile, user list)
    PARTIAL = 3  # a batch in which some users failed
    OUTPUT = 4  # output exists without --force, or cannot be written
    FINDINGS = 5  # `check` found problems in a profile
    INTERRUPTED = 130


class ToolkitError(Exception):
    """Base class: a one-line message plus an optional hint."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    @property
    def exit_code(self) -> ExitCode:
        return exit_code_for(self)


class UsageError(ToolkitError):
    """Options that do not fit together."""


class PackageError(ToolkitError):
    """The Azure package (zip, folder or .ovpn) cannot be used."""


class ProfileError(ToolkitError):
    """The OpenVPN profile cannot be turned into the requested output."""


class CredentialsError(ToolkitError):
    """Certificate, key, PKCS#12 or passphrase problems."""


class PassphraseRequiredError(CredentialsError):
    """A key or PKCS#12 is encrypted and no passphrase source was given."""


class WrongPassphraseError(CredentialsError):
    """The passphrase given does not decrypt the key or PKCS#12."""


class UserListError(ToolkitError):
    """The batch YAML user list is invalid; ``details`` holds one line per problem."""

    def __init__(self, message: str, hint: str | None = None, details: list[str] | None = None):
        super().__init__(message, hint)
        self.details = details or []

    @classmethod
    def from_problems(cls, source: str, problems: list[Any]) -> UserListError:
        lines = [p.render(source) for p in problems]
        count = len(lines)
        return cls(
            f"{source}: {count} problem{'s' if count > 1 else ''} in the user list",
            hint="fix them all, then run again; nothing was written",
            details=lines,
        )


class CAError(ToolkitError):
    """The certificate authority folder or ledger cannot be used."""


class LockedError(CAError):
    """Another process holds the lock (the CA ledger) for longer than we wait."""


class OutputError(ToolkitError):
    """Output exists without --force, or cannot be written."""


class WriteError(OutputError):
    """The output folder cannot be written at all (disk full, read-only, no permission):
    a batch stops at the first one instead of failing every user the same way."""


# The one place that maps errors to exit codes (docs/reference/exit-codes.md); most specific first.
EXIT_CODES: tuple[tuple[type[ToolkitError], ExitCode], ...] = (
    (OutputError, ExitCode.OUTPUT),
    (ToolkitError, ExitCode.INPUT),
)


def exit_code_for(exc: ToolkitError) -> ExitCode:
    return next(code for kind, code in EXIT_CODES if isinstance(exc, kind))
