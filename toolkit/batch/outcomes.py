"""This run's outcomes, one per user of the list, kept on disk rather than in memory.

A batch of 10 000 users makes 10 000 outcomes (name, status, certificate summary, files with
digests, warnings): the main process writes each one, as a line of compact JSON, to an unlinked
temporary file as it arrives, and keeps only where it is and its status. The summary, ``--json``
and the manifest read them back one at a time, in the list's order.
"""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import overload

from toolkit.batch.worker import Status, UserOutcome, outcome_fields
from toolkit.jsontext import dumps_compact, loads
from toolkit.output import scratch_file


class OutcomeLog(Sequence[UserOutcome]):
    """``count`` outcomes by position in the user list; :meth:`put` once per position."""

    def __init__(self, count: int) -> None:
        self._file = scratch_file("ovpn-toolkit-outcomes-")
        self._end = 0
        self._spans: list[tuple[int, int] | None] = [None] * count
        self._status: list[Status | None] = [None] * count
        self.counts: Counter[str] = Counter()

    def put(self, index: int, outcome: UserOutcome) -> None:
        data = dumps_compact(outcome.to_json())
        os.pwrite(self._file.fileno(), data, self._end)
        self._spans[index] = (self._end, len(data))
        self._end += len(data)
        old = self._status[index]
        if old is not None:
            self.counts[old] -= 1
        self._status[index] = outcome.status
        self.counts[outcome.status] += 1

    def has(self, index: int) -> bool:
        return self._spans[index] is not None

    def status(self, index: int) -> Status | None:
        return self._status[index]

    def __len__(self) -> int:
        return len(self._spans)

    @overload
    def __getitem__(self, index: int) -> UserOutcome: ...
    @overload
    def __getitem__(self, index: slice) -> list[UserOutcome]: ...
    def __getitem__(self, index: int | slice) -> UserOutcome | list[UserOutcome]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        span = self._spans[index]
        if span is None:
            raise LookupError(f"no outcome at {index} yet")
        data = loads(os.pread(self._file.fileno(), span[1], span[0]))
        return UserOutcome(**outcome_fields(data))

    def __iter__(self) -> Iterator[UserOutcome]:
        for index in range(len(self)):
            yield self[index]

    def close(self) -> None:
        self._file.close()

    def __del__(self) -> None:  # the log lives as long as the result that shows it
        with contextlib.suppress(Exception):
            self._file.close()
