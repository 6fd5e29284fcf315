"""Where a passphrase comes from: an environment variable, a file, or a hidden prompt.

Never from the command line (shell history, ``ps``). The value is returned as bytes and
never appears in any message. The core never reads the process environment itself: the CLI
hands in the mapping to look variables up in (``environ``), and the terminal prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.errors import CredentialsError

Prompt = Callable[[str], str]


@dataclass(frozen=True)
class PassphraseSource:
    """At most one of ``env``/``file``; ``prompt`` is the CLI's hidden prompt, if interactive;
    ``environ`` is where ``env`` is looked up (the CLI passes the process environment)."""

    env: str | None = None
    file: Path | None = None
    prompt: Prompt | None = None
    environ: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __repr__(self) -> str:  # never show a prompt callable's closure or a value
        return f"PassphraseSource(env={self.env!r}, file={self.file!r})"

    @property
    def given(self) -> bool:
        return bool(self.env or self.file)

    def describe(self) -> str:
        if self.env:
            return f"environment variable {self.env}"
        if self.file:
            return f"passphrase file {self.file}"
        return "the prompt"

    def resolve(self, what: str, *, ask: bool = True) -> bytes | None:
        """The passphrase for ``what`` (a file name, for the prompt), or None when none given."""
        if self.env and self.file:
            raise CredentialsError(
                "both a passphrase variable and a passphrase file were given",
                hint="use only one of --passphrase-env and --passphrase-file",
            )
        if self.env:
            value = self.environ.get(self.env)
            if value is None:
                raise CredentialsError(
                    f"{what}: environment variable {self.env} is not set",
                    hint=f"export {self.env} before running, or use --passphrase-file",
                )
            if not value:
                raise CredentialsError(
                    f"{what}: environment variable {self.env} is empty",
                    hint=f"put the passphrase in {self.env}, or use --passphrase-file",
                )
            return value.encode("utf-8")
        if self.file:
            try:
                raw = self.file.read_bytes()
            except OSError as exc:
                raise CredentialsError(
                    f"{self.file}: cannot read the passphrase file ({exc.strerror})",
                    hint="check the path and its permissions",
                ) from exc
            value_bytes = raw[:-1] if raw.endswith(b"\n") else raw
            value_bytes = value_bytes[:-1] if value_bytes.endswith(b"\r") else value_bytes
            if not value_bytes:
                raise CredentialsError(
                    f"{self.file}: the passphrase file is empty",
                    hint="write the passphrase on its first line",
                )
            return value_bytes
        if self.prompt is not None and ask:
            return self.prompt(f"Passphrase for {what}").encode("utf-8")
        return None
