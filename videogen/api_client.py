"""A small client of the HTTP API (``videogen --api URL …``): programs need an API key, not database
credentials. Errors carry the API's own code and message."""

from __future__ import annotations

from typing import Any

API_KEY_VARIABLE = "VIDEOGEN_API_KEY"


class ApiCallError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ApiClient:
    def __init__(self, url: str, key: str, *, timeout_s: float = 30.0) -> None:
        import httpx

        self._http = httpx.Client(base_url=url.rstrip("/"), headers={"X-API-Key": key}, timeout=timeout_s)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ApiCallError(0, "api_unreachable", f"cannot reach the API at {self._http.base_url}: "
                                                     f"{type(error).__name__}") from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            error = (body or {}).get("error", {}) if isinstance(body, dict) else {}
            raise ApiCallError(response.status_code, error.get("code", "http_error"),
                               error.get("message", f"HTTP {response.status_code}"))
        return response.status_code, body

    def submit(self, body: dict[str, Any], idempotency_key: str | None = None) -> tuple[bool, dict[str, Any]]:
        """(created, job); created is False when the idempotency key matched an earlier job."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        status, job = self._call("POST", "/api/v1/jobs", json=body, headers=headers)
        return status == 201, job

    def get(self, job_id: int) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/jobs/{job_id}")[1]

    def events(self, job_id: int) -> list[dict[str, Any]]:
        return self._call("GET", f"/api/v1/jobs/{job_id}/events")[1]

    def list(self, **params: Any) -> dict[str, Any]:
        return self._call("GET", "/api/v1/jobs", params={k: v for k, v in params.items() if v is not None})[1]

    def cancel(self, job_id: int) -> dict[str, Any]:
        return self._call("POST", f"/api/v1/jobs/{job_id}/cancel")[1]

    def retry(self, job_id: int) -> dict[str, Any]:
        return self._call("POST", f"/api/v1/jobs/{job_id}/retry")[1]
