"""The span of UTC days one KPI computation covers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta


@dataclass(frozen=True, order=True)
class DayRange:
    """Days ``first`` to ``last`` inclusive (UTC), i.e. ``created_at`` in ``[start, end)``.

    Dagster hands over a partition key range (inclusive keys) or a time window (half-open); both map
    onto this one type so that reads, writes and checks agree on exactly which days they touch.
    """

    first: date
    last: date

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise ValueError(f"empty day range: {self.first} .. {self.last}")

    @classmethod
    def single(cls, day: date) -> DayRange:
        return cls(day, day)

    @classmethod
    def parse(cls, first: str, last: str | None = None) -> DayRange:
        """From ISO dates (Dagster daily partition keys are ``YYYY-MM-DD``)."""
        start = date.fromisoformat(first)
        return cls(start, date.fromisoformat(last) if last else start)

    @classmethod
    def from_window(cls, start: datetime, end: datetime) -> DayRange:
        """From a half-open window whose bounds are UTC midnights."""
        start_utc, end_utc = start.astimezone(UTC), end.astimezone(UTC)
        if start_utc.time() != time(0) or end_utc.time() != time(0):
            raise ValueError(f"window {start} .. {end} is not aligned on UTC days")
        return cls(start_utc.date(), end_utc.date() - timedelta(days=1))

    @property
    def end(self) -> date:
        """The first day after the range (exclusive bound)."""
        return self.last + timedelta(days=1)

    @property
    def start_ts(self) -> datetime:
        return datetime.combine(self.first, time(0), tzinfo=UTC)

    @property
    def end_ts(self) -> datetime:
        return datetime.combine(self.end, time(0), tzinfo=UTC)

    def __len__(self) -> int:
        return (self.last - self.first).days + 1

    def __iter__(self) -> Iterator[date]:
        return (self.first + timedelta(days=offset) for offset in range(len(self)))

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and self.first <= day <= self.last

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}..{self.last}"
