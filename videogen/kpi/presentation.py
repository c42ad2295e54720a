"""Small Markdown renderings for asset metadata: a table preview and a success-rate sparkline.

A Unicode sparkline rather than a PNG: it renders in the Dagster UI's Markdown, in logs and in a
terminal, and needs no plotting library in the code location.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from videogen.kpi.dates import DayRange
from videogen.kpi.tables import kpi_spark_daily

BARS = "▁▂▃▄▅▆▇█"
MISSING = "·"


def _cell(value: Any) -> str:
    if value is None:
        return "∅"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.6g}"
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%SZ")
    return str(value).replace("|", "\\|")


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, limit: int = 10) -> str:
    """The last ``limit`` rows (most recent days first) as a Markdown table."""
    if not rows:
        return "_no rows_"
    shown = list(rows)[-limit:][::-1]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(column)) for column in columns) + " |" for row in shown]
    if len(rows) > limit:
        lines.append(f"\n_{len(rows) - limit} older rows not shown_")
    return "\n".join(lines)


def sparkline(values: Sequence[float | None]) -> str:
    """One bar per value, scaled between the series' min and max; ``·`` where there is no value."""
    present = [v for v in values if v is not None]
    if not present:
        return MISSING * len(values)
    low, high = min(present), max(present)
    span = high - low
    out = []
    for value in values:
        if value is None:
            out.append(MISSING)
        elif span == 0:
            out.append(BARS[-1])
        else:
            out.append(BARS[min(len(BARS) - 1, int((value - low) / span * len(BARS)))])
    return "".join(out)


def success_rate_history(engine: sa.Engine, last_day: date, days: int = 30) -> list[tuple[date, float | None]]:
    """``success_rate`` of the ``days`` days ending on ``last_day`` (None where NULL or missing)."""
    window = DayRange(last_day.fromordinal(last_day.toordinal() - days + 1), last_day)
    query = sa.select(kpi_spark_daily.c.job_date, kpi_spark_daily.c.success_rate).where(
        kpi_spark_daily.c.job_date >= window.first, kpi_spark_daily.c.job_date <= window.last
    )
    with engine.connect() as conn:
        found = dict(conn.execute(query).all())
    return [(day, found.get(day)) for day in window]


def success_rate_sparkline_markdown(history: Sequence[tuple[date, float | None]]) -> str:
    rates = [rate for _, rate in history]
    present = [rate for rate in rates if rate is not None]
    if not history:
        return "_no history_"
    header = f"**success rate, {history[0][0]} → {history[-1][0]}** (one bar per UTC day, `·` = no decided job)"
    if not present:
        return f"{header}\n\n`{sparkline(rates)}`"
    latest = next((rate for rate in reversed(rates) if rate is not None), None)
    return (
        f"{header}\n\n`{sparkline(rates)}`\n\n"
        f"min {min(present):.1%} · max {max(present):.1%} · latest {latest:.1%}"
    )
