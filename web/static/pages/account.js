import { $, api, clearErrors, el, page, refreshBalance, setText, showError, when } from "../app.js";

async function showLedger() {
  const me = await refreshBalance();
  setText("#balance", `${me.user.credit_balance} credits`);
  $("#ledger tbody").replaceChildren(...me.ledger.map((entry) => el("tr", {},
    el("td", {}, when(entry.created_at)), el("td", {}, entry.kind), el("td", { class: "num" }, entry.amount),
    el("td", {}, entry.job_id ? el("a", { href: `/videos/${entry.job_id}` }, `#${entry.job_id}`) : "—"),
    el("td", {}, entry.note || ""))));
}

async function showKeys(visitor) {
  const keys = await api("/api/v1/me/api-keys");
  $("#keys tbody").replaceChildren(...keys.map((key) => el("tr", {},
    el("td", {}, key.name), el("td", {}, el("code", {}, key.prefix)), el("td", {}, key.scopes.join(", ")),
    el("td", {}, when(key.last_used_at) || "never"), el("td", {}, key.revoked_at ? "revoked" : "active"),
    el("td", {}, visitor.canWrite && !key.revoked_at
      ? el("button", { type: "button", "aria-label": `Revoke key ${key.name}`, onclick: async () => {
        try {
          await api(`/api/v1/me/api-keys/${key.id}`, { method: "DELETE" });
          await showKeys(visitor);
        } catch (error) { setText("#form-error", error.message); }
      } }, "Revoke")
      : ""))));
}

page(async (visitor) => {
  await showLedger();
  await showKeys(visitor);
  const form = $("#key-form");
  form?.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const scopes = [...form.querySelectorAll("input[name=scope]:checked")].map((box) => box.value);
    try {
      const created = await api("/api/v1/me/api-keys", { method: "POST", body: { name: form.name.value, scopes } });
      const shown = $("#new-key");
      shown.replaceChildren("Your new key (shown this once, copy it now): ", el("code", {}, created.key));
      shown.hidden = false;
      form.reset();
      await showKeys(visitor);
    } catch (error) {
      showError(form, error);
    }
  });
  $("#rotate-secret")?.addEventListener("click", async () => {
    try {
      const created = await api("/api/v1/me/webhook-secret", { method: "POST" });
      const shown = $("#new-secret");
      shown.replaceChildren("Your webhook secret (shown this once): ", el("code", {}, created.webhook_secret));
      shown.hidden = false;
    } catch (error) { setText("#form-error", error.message); }
  });
});
