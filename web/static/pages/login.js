import { $, api, clearErrors, page, showError } from "../app.js";

// Only a page of this site: the link's "next" is resolved the way the browser would resolve it
// ("/\\evil.example" and "/\t/evil.example" are other hosts), and anything off this origin is dropped.
export function safeNext(next) {
  if (!next) return "/videos";
  const target = new URL(next, location.origin);
  return target.origin === location.origin ? target.pathname + target.search + target.hash : "/videos";
}

page(async () => {
  const form = $("#login-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    try {
      await api("/api/v1/session", { method: "POST", body: { email: form.email.value, password: form.password.value } });
      location.assign(safeNext(new URLSearchParams(location.search).get("next")));
    } catch (error) {
      showError(form, error);
    }
  });
}, { needsSignIn: false });
