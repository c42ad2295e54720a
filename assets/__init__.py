"""Dagster assets. ``assets.kpi``: the daily KPI tables built by Spark, and their quality checks."""
