"""The code location: one Definitions object merged from each domain's small defs.

Loading it imports dagster and the thin orchestration modules only: torch, diffusers, pyspark and
great_expectations are imported inside the ops/resources that use them (a test checks this).
"""

import dagster as dg

from assets.kpi import kpi_defs
from pipelines.definitions import generation_defs

defs = dg.Definitions.merge(generation_defs(), kpi_defs)
