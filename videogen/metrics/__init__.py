"""Prometheus metrics of videogen (prometheus-client): what the platform's tables say (``platform``)
and how the HTTP API serves (``api/metrics.py``). Label values are bounded (status, model, error
code, route template, status class): never a job id, a user or a prompt."""
