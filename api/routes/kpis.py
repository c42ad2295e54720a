"""Daily KPIs for staff (admin and support): the rows the Spark KPI job wrote to ``kpi_spark_daily``
and ``kpi_spark_daily_by_model``."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Query

from api.deps import Caller, Context, require_read_all
from api.schemas_admin import KpiByModelOut, KpiDailyOut, KpiDayOut, KpiModelDayOut
from videogen.errors import ValidationError
from videogen.kpi.tables import kpi_spark_daily, kpi_spark_daily_by_model

router = APIRouter(prefix="/api/v1/kpis", tags=["kpis"])

MAX_RANGE_DAYS = 366
FirstDay = Annotated[date, Query(alias="from", description="first UTC day, YYYY-MM-DD (inclusive)")]
LastDay = Annotated[date, Query(alias="to", description="last UTC day, YYYY-MM-DD (inclusive)")]
KPI_RESPONSES = {403: {"description": "not admin or support"}, 422: {"description": "invalid range"}}


def check_range(first: date, last: date) -> None:
    if first > last:
        raise ValidationError(f"from ({first}) is after to ({last})", code="invalid_date_range")
    days = (last - first).days + 1
    if days > MAX_RANGE_DAYS:
        raise ValidationError(f"the range {first} to {last} covers {days} days; ask for at most "
                              f"{MAX_RANGE_DAYS} days at a time", code="date_range_too_long")


def _rows(principal, ctx, table: sa.Table, first, last, *order) -> list[dict]:
    """The table's rows of the days ``first`` to ``last`` for staff, credits as exact decimal text."""
    require_read_all(principal)
    check_range(first, last)
    with ctx.engine.connect() as conn:
        rows = conn.execute(sa.select(table).where(table.c.job_date.between(first, last))
                            .order_by(table.c.job_date, *order)).mappings().all()
    return [{**row, "credits_consumed": str(row["credits_consumed"])} for row in rows]


@router.get("/daily", response_model=KpiDailyOut, responses=KPI_RESPONSES)
def daily_kpis(principal: Caller, ctx: Context, first: FirstDay, last: LastDay) -> KpiDailyOut:
    """Daily job KPIs (counts per status, success rate, active users, durations, credits, GPU
    seconds) for the days ``from`` to ``to``, at most 366 days, oldest first."""
    days = _rows(principal, ctx, kpi_spark_daily, first, last)
    return KpiDailyOut(from_=first, to=last, days=[KpiDayOut(**row) for row in days])


@router.get("/daily/by-model", response_model=KpiByModelOut, responses=KPI_RESPONSES)
def daily_kpis_by_model(principal: Caller, ctx: Context, first: FirstDay, last: LastDay) -> KpiByModelOut:
    """Daily job KPIs per model (``kpi_spark_daily_by_model``) for the days ``from`` to ``to``."""
    rows = _rows(principal, ctx, kpi_spark_daily_by_model, first, last, kpi_spark_daily_by_model.c.model)
    return KpiByModelOut(from_=first, to=last, rows=[KpiModelDayOut(**row) for row in rows])
