"""The API's routes, one module per domain (accounts, jobs, admin)."""
