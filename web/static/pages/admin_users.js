import { $, api, el, page, setText, when } from "../app.js";

const ROLES = document.body.dataset.roles.split(",");

function row(user, visitor, reload) {
  const cells = [el("td", {}, user.email), el("td", {}, user.role), el("td", { class: "num" }, user.credit_balance),
    el("td", {}, when(user.created_at))];
  if (visitor.role === "admin") {
    const amountId = `grant-${user.id}`;
    const grant = el("form", { class: "inline-form", onsubmit: async (event) => {
      event.preventDefault();
      try {
        await api(`/api/v1/users/${encodeURIComponent(user.id)}/credits`,
          { method: "POST", body: { amount: grant.amount.value } });
        await reload();
      } catch (error) { setText("#users-error", `${user.email}: ${error.message}`); }
    } },
    el("label", { for: amountId, class: "visually-hidden" }, `Credits to grant to ${user.email}`),
    el("input", { id: amountId, name: "amount", inputmode: "decimal", size: 6, required: true }),
    el("button", { type: "submit" }, "Grant"));
    // A role changes only when Save is pressed: arrow keys on a closed <select> fire "change" in
    // Chromium, and one's own role is not changed from here (an admin could lock themselves out).
    const roleId = `role-${user.id}`;
    const own = user.id === visitor.id;
    const roleForm = el("form", { class: "inline-form", onsubmit: async (event) => {
      event.preventDefault();
      try {
        await api(`/api/v1/users/${encodeURIComponent(user.id)}/role`, { method: "PUT", body: { role: roleForm.role.value } });
        await reload();
      } catch (error) { setText("#users-error", `${user.email}: ${error.message}`); }
    } },
    el("label", { for: roleId, class: "visually-hidden" }, `Role of ${user.email}`),
    el("select", { id: roleId, name: "role", disabled: own }, ...ROLES.map((r) => el("option", { value: r, selected: r === user.role }, r))),
    el("button", { type: "submit", disabled: own, "aria-label": `Save the role of ${user.email}` }, "Save"));
    cells.push(el("td", {}, grant), el("td", {}, roleForm));
  }
  return el("tr", {}, ...cells);
}

page(async (visitor) => {
  const params = new URLSearchParams(location.search);
  const reload = async () => {
    const users = await api("/api/v1/users", { query: { limit: 50, after: params.get("after") } });
    $("#users tbody").replaceChildren(...users.map((user) => row(user, visitor, reload)));
    if (users.length === 50) {
      Object.assign($("#next-page"), { href: `/admin/users?after=${encodeURIComponent(users[49].id)}`, hidden: false });
    }
  };
  await reload();
});
