"""The printed report: a table of measurements, the scaling line and the issue's targets."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    label: str
    users: int | None
    median: float | None  # seconds; None when not measured
    low: float | None = None
    high: float | None = None
    runs: int = 0
    note: str = ""

    @property
    def ms_per_user(self) -> float | None:
        if self.median is None or not self.users:
            return None
        return self.median * 1000 / self.users


@dataclass(frozen=True)
class Target:
    name: str
    value: float | None  # None when it could not be measured
    unit: str
    goal: str
    met: bool | None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "goal": self.goal,
            "met": self.met,
            "detail": self.detail,
        }


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [
        line(r) for r in rows
    ]


def measurements_table(rows: Sequence[Row]) -> list[str]:
    cells = []
    for row in rows:
        per_user = row.ms_per_user
        cells.append(
            [
                row.label,
                "" if row.users is None else f"{row.users:,}".replace(",", " "),
                seconds(row.median),
                seconds(row.low),
                seconds(row.high),
                str(row.runs),
                "-" if per_user is None else f"{per_user:.2f} ms",
                row.note,
            ]
        )
    return _table(
        ["measurement", "users", "median", "min", "max", "runs", "per user", "note"], cells
    )


def targets_table(targets: Sequence[Target]) -> list[str]:
    cells = []
    for target in targets:
        value = "-" if target.value is None else f"{target.value:.2f} {target.unit}".rstrip()
        status = {True: "met", False: "MISSED", None: "not measured"}[target.met]
        cells.append([target.name, value, target.goal, status, target.detail])
    return _table(["target", "measured", "goal", "status", "from"], cells)
