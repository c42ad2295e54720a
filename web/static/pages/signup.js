import { $, api, clearErrors, page, showError } from "../app.js";

page(async () => {
  const form = $("#signup-form");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const credentials = { email: form.email.value, password: form.password.value };
    try {
      await api("/api/v1/auth/signup", { method: "POST", body: credentials });
      await api("/api/v1/session", { method: "POST", body: credentials });
      location.assign("/videos");
    } catch (error) {
      showError(form, error);
    }
  });
}, { needsSignIn: false });
