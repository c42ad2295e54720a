"""The HTTP API of videogen (FastAPI on uvicorn): a thin layer over ``videogen.lifecycle`` and
``videogen.accounts``. It only writes and reads rows; the sensor-driven Dagster path does the work."""
