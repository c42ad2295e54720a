"""The ASGI application: ``create_app(context)`` for tests and tools, ``app_from_env()`` for uvicorn.

    videogen serve-api [--host H] [--port P] [--workers N]

OpenAPI at ``/docs``; every route of the product under ``/api/v1``; ``/health`` (the process serves)
and ``/ready`` (the database answers and its schema is at the migrations' head) for load balancers
and Kubernetes probes.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response

from api.context import ApiContext
from api.errors import UnhandledErrors, error_body, install_error_handlers
from api.fast_path import SUBMIT_PATH, OneTripRoutes
from api.limits import BodySizeLimit
from api.metrics import RequestMetrics, exposition
from api.routes import accounts, admin, jobs, kpis, models, privacy, session, uploads
from videogen.config import load_settings
from web.pages import install_web

logger = logging.getLogger("videogen.api")


def known_revisions() -> tuple[str, set[str]]:
    """This code's head migration and every revision it knows."""
    from alembic.script import ScriptDirectory

    from videogen.db.migrate import MIGRATIONS_DIR, alembic_config

    config = alembic_config("postgresql://unused")
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    scripts = ScriptDirectory.from_config(config)
    return scripts.get_current_head(), {script.revision for script in scripts.walk_revisions()}


def create_app(ctx: ApiContext) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        await ctx.aclose()

    app = FastAPI(title="videogen API", version="1", lifespan=lifespan,
                  description="Text-to-video generation: submit jobs, follow them, download the videos.")
    app.state.context = ctx
    app.state.head_revision, app.state.known_revisions = known_revisions()
    install_error_handlers(app)
    app.include_router(accounts.router)
    app.include_router(session.router)
    app.include_router(models.router)
    app.include_router(uploads.router)
    app.include_router(jobs.router)
    app.include_router(admin.router)
    app.include_router(privacy.router)
    app.include_router(kpis.router)
    install_web(app)  # the web app's pages and assets, clients of the routes above
    # Middlewares, innermost first.
    submit_route = next(route for route in jobs.router.routes if route.path == SUBMIT_PATH and "POST" in route.methods)
    read_route = next(route for route in jobs.router.routes if route.path == SUBMIT_PATH + "/{job_id}"
                      and "GET" in route.methods)
    app.add_middleware(OneTripRoutes, context=ctx, submit_route=submit_route, read_route=read_route)
    app.add_middleware(BodySizeLimit)
    if ctx.settings.api_request_metrics:
        app.add_middleware(RequestMetrics)
    app.add_middleware(UnhandledErrors)  # added last: the outermost of ours

    @app.get("/metrics", tags=["operations"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}}})
    async def metrics() -> Response:
        """Prometheus metrics: API requests (all workers) and the platform's jobs, from PostgreSQL (cached)."""
        body, content_type = await run_in_threadpool(exposition, ctx.platform_metrics)
        return Response(body, media_type=content_type)

    @app.get("/health", tags=["operations"])
    def health() -> dict[str, str]:
        """Liveness: the process serves requests."""
        return {"status": "ok"}

    @app.get("/ready", tags=["operations"], responses={503: {"description": "not ready, with the reason"}})
    async def ready():
        """Readiness: PostgreSQL answers and the schema is at this code's head migration, or at a later
        one this code does not know (a newer release migrated first; migrations only add, so the pods
        of the previous release keep serving during a rolling update)."""

        def check() -> str | None:
            try:
                with ctx.engine.connect() as conn:
                    current = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            except Exception as exc:  # noqa: BLE001 - any database failure means "not ready"
                return f"the database is unreachable ({type(exc).__name__})"
            if current != app.state.head_revision and (current is None or current in app.state.known_revisions):
                return (f"the database schema is at {current or 'no revision'}, behind {app.state.head_revision}: "
                        "run videogen db upgrade")
            return None

        problem = await run_in_threadpool(check)
        if problem:
            return JSONResponse(error_body("not_ready", problem), status_code=503)
        return {"status": "ready", "schema": app.state.head_revision}

    return app


def app_from_env():
    """uvicorn's factory (``api.app:app_from_env``): settings from the environment."""
    return create_app(ApiContext.from_settings(load_settings()))
