// Shared by every page: calls to the HTTP API with the session cookie (and the CSRF token on
// writes), the signed-in visitor, and small DOM helpers. Text from the API is always set with
// textContent, never parsed as HTML.

const SAFE = new Set(["GET", "HEAD"]);

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `the server answered ${status}`);
    this.status = status;
    this.code = error.code || "http_error";
    this.field = error.field || null;
    this.details = error;
  }
}

export function cookie(name) {
  const found = document.cookie.split("; ").find((part) => part.startsWith(name + "="));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
}

let refreshing = null;

function sessionExpiry() {
  return Number(cookie("vg_session")) || 0;
}

async function refreshOnce(expiryBefore) {
  // Another tab may have refreshed while this one waited for the lock: its new cookies are ours too.
  if (sessionExpiry() > expiryBefore) return true;
  const response = await fetch("/api/v1/session/refresh", {
    method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": cookie("vg_csrf") },
  });
  return response.ok;
}

// One refresh at a time, across every tab of this site: the refresh token rotates, and spending the
// same one twice ends the session (the server takes it for a stolen token).
export function refreshSession() {
  if (!refreshing) {
    const expiryBefore = sessionExpiry();
    const run = () => refreshOnce(expiryBefore);
    refreshing = (navigator.locks ? navigator.locks.request("vg-session-refresh", run) : run())
      .catch(() => false)
      .finally(() => { refreshing = null; });
  }
  return refreshing;
}

// Refresh a little before the access cookie expires, so that what the browser fetches by itself (the
// player, a download, the live stream) never meets an expired session on a page left open.
function keepSessionFresh() {
  const inMs = (sessionExpiry() - 30) * 1000 - Date.now();
  setTimeout(async () => {
    if (await refreshSession()) keepSessionFresh();
  }, Math.max(inMs, 5000));
}

export function signInAgain() {
  const here = location.pathname + location.search;
  location.assign("/login?next=" + encodeURIComponent(here));
}

// fetch() for the API: JSON in and out, errors as ApiError; an expired session is refreshed once.
// headers: extra request headers; background: a call the visitor did not ask for (a price preview),
// which never navigates to the sign-in page and so never throws away what is being typed. A File or
// Blob body goes as it is (an upload), with contentType.
export async function api(path, { method = "GET", body, query, headers: extra = {}, contentType, background = false, retried = false } = {}) {
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(query)) {
      if (value !== undefined && value !== null && value !== "") params.set(key, value);
    }
    if ([...params].length) url += "?" + params;
  }
  const headers = { Accept: "application/json", ...extra };
  const raw = body instanceof Blob;
  if (body !== undefined) headers["Content-Type"] = raw ? contentType || body.type : "application/json";
  if (!SAFE.has(method)) headers["X-CSRF-Token"] = cookie("vg_csrf");
  const response = await fetch(url, {
    method, headers, credentials: "same-origin", body: body === undefined || raw ? body : JSON.stringify(body),
  });
  if (response.status === 401 && !retried && !path.startsWith("/api/v1/session")) {
    if (await refreshSession()) return api(path, { method, body, query, headers: extra, contentType, background, retried: true });
    if (!background) signInAgain();
    throw new ApiError(401, { error: { code: "session_ended", message: "your session has ended: sign in again" } });
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {  // not the API's answer: a proxy's error page, say
    throw new ApiError(response.status, { error: { code: "bad_gateway", message: `the server answered ${response.status}; try again` } });
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

// el("a", {href: "/x", class: "y"}, "text", child…): a DOM element, text never parsed as HTML.
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (selector, root = document) => root.querySelector(selector);

export function setText(selector, text) {
  const node = $(selector);
  node.textContent = text ?? "";
  return node;
}

export function when(value) {
  if (!value) return "";
  return new Date(value).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function badge(status) {
  return el("span", { class: `badge status-${status}` }, status);
}

// Form errors: the API's message next to the field it names, or above the button.
export function clearErrors(form) {
  for (const node of form.querySelectorAll(".field-error, .form-error")) node.textContent = "";
  for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
}

// A message that starts with its field's name ("storyboard.scenes[1].duration_s: -1 is out of range…")
// loses that name next to the field: the place says which field it is. A field with a slot and no
// input of its own (a storyboard's list of scenes) has its message there.
export function showError(form, error) {
  const input = error.field && form.querySelector(`[name="${CSS.escape(error.field)}"]`);
  const slot = error.field && form.querySelector(`#${CSS.escape(error.field)}-error`);
  if (slot) {
    slot.textContent = error.message.startsWith(`${error.field}: `)
      ? error.message.slice(error.field.length + 2) : error.message;
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  } else {
    const slot = form.querySelector(".form-error") || $("#form-error");
    if (slot) slot.textContent = error.message;
  }
}

// A page the visitor may not see, or that does not exist: a readable message instead of the page.
export function pageProblem(error) {
  const main = $("#main");
  const known = { 403: "Not allowed", 404: "Not found" };
  main.replaceChildren(el("section", { class: "error-page" },
    el("p", { class: "status" }, String(error.status || "")),
    el("h1", {}, known[error.status] || "Something went wrong"),
    el("p", {}, error.message),
    el("p", {}, el("a", { href: "/videos" }, "Go to my videos"))));
}

let visitor = null;

// The signed-in visitor (GET /api/v1/me), shown in the header; write controls hidden for read-only roles.
export async function signedIn() {
  if (visitor) return visitor;
  const expires = Number(cookie("vg_session"));
  if (!expires) {
    signInAgain();
    throw new ApiError(401, { error: { code: "session_ended", message: "sign in first" } });
  }
  if (Date.now() / 1000 > expires - 10 && !(await refreshSession())) {
    signInAgain();
    throw new ApiError(401, { error: { code: "session_ended", message: "your session has ended: sign in again" } });
  }
  keepSessionFresh();
  const me = await api("/api/v1/me");
  visitor = me.user;
  visitor.ledger = me.ledger;
  visitor.canWrite = visitor.role !== "support";
  visitor.isStaff = visitor.role === "admin" || visitor.role === "support";
  setText("#who-email", visitor.email);
  setText("#who-role", visitor.role === "user" ? "" : visitor.role);
  setText("#who-balance", `${visitor.credit_balance} credits`);
  $("#nav").hidden = false;
  $("#who").hidden = false;
  for (const node of document.querySelectorAll("[data-staff]")) node.hidden = !visitor.isStaff;
  if (!visitor.canWrite) for (const node of document.querySelectorAll("[data-write]")) node.remove();
  if (visitor.role !== "admin") for (const node of document.querySelectorAll("[data-admin]")) node.remove();
  $("#sign-out").addEventListener("click", async () => {
    try {
      await api("/api/v1/session", { method: "DELETE", background: true });
    } catch { /* the session is over either way */ }
    location.assign("/login");
  });
  return visitor;
}

export async function refreshBalance() {
  const me = await api("/api/v1/me");
  setText("#who-balance", `${me.user.credit_balance} credits`);
  return me;
}

// Run a page's main function with the visitor; a failure becomes a readable message.
export function page(main, { needsSignIn = true } = {}) {
  const start = async () => {
    try {
      const who = needsSignIn ? await signedIn() : null;
      await main(who);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) return;  // on the way to the sign-in page
      pageProblem(error);
    } finally {
      performance.mark("vg-ready");  // time to interactive, read by benchmarks/web_benchmark.py
      document.body.dataset.ready = "true";  // for tests: the page has rendered
    }
  };
  start();
}
