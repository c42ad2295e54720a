"""videogen core library: everything the platform does, with no Dagster in it.

The Dagster code location (``pipelines/``, ``assets/``, ``sensors/``, ``resources/``) is a thin layer
over this package. Heavy libraries (torch, diffusers, pyspark, great_expectations) are imported only
inside the functions that need them, so importing any module here stays cheap.
"""

__version__ = "0.1.0"
