"""What the core reports besides files: profile edits and warnings."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Edit:
    """One change made to Azure's profile for a target: where, which directive, and why."""

    line: int  # line in Azure's profile (0: added)
    directive: str
    action: Literal["removed", "changed", "added", "filled"]
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        where = f"line {self.line}" if self.line else "new line"
        return f"{where}: {self.action} '{self.directive}': {self.reason}"


@dataclass(frozen=True)
class Finding:
    """A warning or error about credentials or a profile; never carries key material."""

    level: Literal["error", "warning"]
    code: str
    message: str
    hint: str | None = None
    line: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}
