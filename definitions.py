"""The code location: one Definitions object merged from each domain's small defs.

Loading it imports dagster and the thin orchestration modules only: torch, diffusers, pyspark and
great_expectations are imported inside the ops/resources that use them (a test checks this).
Only `defs` may be a Definitions object at module scope (Dagster refuses two), hence the module
imports rather than name imports.
"""

import warnings

import dagster as dg

# We use beta parameters (asset and sensor `owners`) knowingly: their warning, printed by every
# process that loads this module, would be the only lines of those processes' logs that are not JSON.
warnings.filterwarnings("ignore", category=dg.BetaWarning)

import assets.kpi  # noqa: E402 - after the filter: the warnings come from these imports
import pipelines.definitions  # noqa: E402

defs = dg.Definitions.merge(pipelines.definitions.generation_defs(), assets.kpi.kpi_defs)
