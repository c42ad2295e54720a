"""The code location: one Definitions object merged from each domain's small defs.

Loading it imports dagster and the thin orchestration modules only: torch, diffusers, pyspark and
great_expectations are imported inside the ops/resources that use them (a test checks this).
Only `defs` may be a Definitions object at module scope (Dagster refuses two), hence the module
imports rather than name imports.
"""

import dagster as dg

import assets.kpi
import pipelines.definitions

defs = dg.Definitions.merge(pipelines.definitions.generation_defs(), assets.kpi.kpi_defs)
