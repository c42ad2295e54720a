"""kpi_check_results: the latest result of each KPI asset check for each day

Revision ID: 0005
Revises: 0004

Written out in full (not derived from the code's metadata) so that later schema changes never
rewrite history.

The KPI asset checks (assets/kpi.py) record here, next to Dagster's own record, the verdict of each
check for each day they evaluate, so that the platform's metrics (computed from this database by
the API) can report check failures per check without reading Dagster's storage.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kpi_check_results",
        sa.Column("table_name", sa.Text, primary_key=True),
        sa.Column("check_name", sa.Text, primary_key=True),
        sa.Column("job_date", sa.Date, primary_key=True),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("severity", sa.Text, nullable=False),
        sa.Column("failed_rules", sa.Text, nullable=False, server_default=""),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    )


def downgrade() -> None:
    op.drop_table("kpi_check_results")
