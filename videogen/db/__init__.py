"""PostgreSQL access: schema, migrations (Alembic) and the job repository."""
