"""The web app's pages: HTML shells whose scripts call the HTTP API (``/api/v1``) with the browser's
session cookie. No page reads the database: what a page shows is exactly what the API answers its
visitor, so the API's rules (who sees which job, who may write) hold in the browser too.

Every asset is served from ``/static`` (no CDN); error pages for addresses outside the API are HTML.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from api.session_cookies import ensure_csrf
from videogen.accounts.users import MAX_PASSWORD, MIN_PASSWORD
from videogen.db.schema import ROLES, STATUSES, TERMINAL_STATUSES

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=HERE / "templates")
# The vocabulary the scripts need, from the one place the server defines it (rendered into <body>).
templates.env.globals.update(min_password=MIN_PASSWORD, max_password=MAX_PASSWORD, statuses=STATUSES,
                             terminal_statuses=sorted(TERMINAL_STATUSES), roles=ROLES)
router = APIRouter(include_in_schema=False)
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data: https:; media-src 'self' https:; "
                           "object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")

# path → (template, title, script of the page); the scripts send a visitor without a session to /login
PAGES: dict[str, tuple[str, str, str]] = {
    "/login": ("login.html", "Sign in", "login"),
    "/signup": ("signup.html", "Create an account", "signup"),
    "/videos": ("videos.html", "My videos", "videos"),
    "/videos/new": ("new.html", "New video", "new"),
    "/videos/new-film": ("new_film.html", "New film", "new_film"),
    "/account": ("account.html", "Account", "account"),
    "/admin/kpis": ("admin_kpis.html", "KPIs", "admin_kpis"),
    "/admin/users": ("admin_users.html", "Users", "admin_users"),
    "/admin/jobs": ("admin_jobs.html", "Failed jobs", "admin_jobs"),
}


def render(request: Request, template: str, title: str, script: str | None, *, status_code: int = 200,
           **context) -> HTMLResponse:
    response = templates.TemplateResponse(
        request, template, {"title": title, "script": script, "path": request.url.path, **context},
        status_code=status_code)
    ensure_csrf(response, request)
    response.headers["Cache-Control"] = "no-store"
    # The pages have no inline script or style and load nothing from elsewhere: a strict policy is free.
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def _page(path: str):
    template, title, script = PAGES[path]

    def page(request: Request) -> HTMLResponse:
        return render(request, template, title, script)

    page.__name__ = f"page_{script}"
    return page


for _path in PAGES:
    router.add_api_route(_path, _page(_path), methods=["GET"], response_class=HTMLResponse)


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/videos", status_code=303)


@router.get("/admin")
def admin_home() -> RedirectResponse:
    return RedirectResponse("/admin/kpis", status_code=303)


@router.get("/videos/{job_id}", response_class=HTMLResponse)
def video_page(job_id: int, request: Request) -> HTMLResponse:
    return render(request, "video.html", f"Video {job_id}", "video", job_id=job_id)


def is_page_request(path: str) -> bool:
    """Addresses that answer HTML errors: everything but the API and the operations endpoints."""
    return not path.startswith(("/api/", "/metrics", "/health", "/ready", "/docs", "/openapi.json", "/redoc"))


ERROR_MESSAGES = {
    403: ("Not allowed", "Your account cannot open this page."),
    404: ("Page not found", "There is nothing at this address."),
    405: ("Page not found", "There is nothing at this address."),
    500: ("Something went wrong", "The error has been logged. Try again in a moment."),
}


def _error_context(status_code: int) -> dict:
    heading, text = ERROR_MESSAGES.get(status_code, ("Error", "The request could not be served."))
    return {"title": heading, "script": None, "status": status_code, "heading": heading, "text": text}


def error_page(request: Request, status_code: int) -> HTMLResponse:
    """A readable error page (never a stack trace) for an address outside the API."""
    context = _error_context(status_code)
    return render(request, "error.html", context.pop("title"), context.pop("script"), status_code=status_code,
                  **context)


def error_html(status_code: int) -> bytes:
    """The same page without a request (for the last-resort error middleware)."""
    return templates.get_template("error.html").render(path="", **_error_context(status_code)).encode()


def install_web(app: FastAPI) -> None:
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
