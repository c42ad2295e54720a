"""Daily KPI tables computed with Spark from the ``jobs`` table, and their data-quality rules.

Plain Python with no Dagster in it: ``assets/kpi.py`` is a thin layer over this package, and the
benchmark drives the same functions. pyspark and great_expectations are imported inside the
functions that need them, so importing this package (and the code location) stays cheap.

Modules:
- :mod:`.config`: typed Spark and JDBC settings, from the environment;
- :mod:`.dates`: the half-open UTC day range a computation covers;
- :mod:`.tables`: the KPI tables (SQLAlchemy Core) and their column lists;
- :mod:`.session`: the SparkSession builder;
- :mod:`.source`: the JDBC read of ``jobs`` (pushed-down date range, partitioned by id);
- :mod:`.compute`: the KPIs for a date range, in one Spark job;
- :mod:`.writer`: idempotent DELETE + INSERT of exactly the requested days, Parquet copies;
- :mod:`.reference`: the same KPIs as one PostgreSQL query (benchmark, reconciliation, tests);
- :mod:`.quality`: Great Expectations suites over the rows of a range;
- :mod:`.pipeline`: read → compute → validate → write, with timings;
- :mod:`.presentation`: Markdown previews and sparklines for asset metadata.
"""
