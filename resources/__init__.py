"""Dagster resources: typed ConfigurableResources configured from the environment."""
