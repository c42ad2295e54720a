"""The run's console logger: Dagster's events and the ops' ``context.log`` as JSON lines (the same
:class:`videogen.logs.JsonFormatter` as the API), with the run id from Dagster and the job id the ops
bind when they start."""

import logging

import dagster as dg

from videogen.logs import JsonFormatter


@dg.logger(
    config_schema={"log_level": dg.Field(str, default_value="INFO"), "name": dg.Field(str, default_value="dagster")},
    description="JSON lines on standard error, with job_id and run_id.",
)
def json_console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.Logger(init_context.logger_config["name"], level=init_context.logger_config["log_level"].upper())
    out = logging.StreamHandler()
    out.setFormatter(JsonFormatter("dagster-run"))
    logger.addHandler(out)
    return logger
