import { $, api, clearErrors, page, showError } from "../app.js";

page(async () => {
  const form = $("#login-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    try {
      await api("/api/v1/session", { method: "POST", body: { email: form.email.value, password: form.password.value } });
      const next = new URLSearchParams(location.search).get("next");
      // Only a path of this site: never an absolute address someone put in the link.
      location.assign(next && next.startsWith("/") && !next.startsWith("//") ? next : "/videos");
    } catch (error) {
      showError(form, error);
    }
  });
}, { needsSignIn: false });
