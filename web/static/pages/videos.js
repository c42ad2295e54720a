import { $, api, badge, el, page, when } from "../app.js";

const PAGE_SIZE = 24;

function card(job) {
  const picture = job.thumbnail_url
    ? el("img", { src: job.thumbnail_url, alt: "", loading: "lazy", width: 160, height: 160 })
    : el("div", { class: "placeholder", "aria-hidden": "true" }, job.status === "succeeded" ? "" : "…");
  return el("li", { class: "card" },
    el("a", { href: `/videos/${job.id}`, "aria-label": `Video ${job.id}: ${job.prompt.slice(0, 80)}` },
      picture,
      el("span", { class: "card-text" },
        badge(job.status),
        el("span", { class: "prompt" }, job.prompt),
        el("time", { datetime: job.created_at }, when(job.created_at)))));
}

page(async () => {
  const params = new URLSearchParams(location.search);
  const form = $("#filters");
  for (const name of ["status", "created_from", "created_to"]) form[name].value = params.get(name) || "";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const name of ["status", "created_from", "created_to"]) if (form[name].value) next.set(name, form[name].value);
    location.assign("/videos" + (next.size ? "?" + next : ""));
  });
  // Dates are whole days in the visitor's time zone: "to" includes the whole of its day.
  const from = params.get("created_from");
  const to = params.get("created_to");
  const result = await api("/api/v1/jobs", {
    query: {
      status: params.get("status"), limit: PAGE_SIZE, cursor: params.get("cursor"),
      created_from: from ? new Date(from + "T00:00:00").toISOString() : null,
      created_to: to ? new Date(new Date(to + "T00:00:00").getTime() + 86400000).toISOString() : null,
    },
  });
  $("#grid").replaceChildren(...result.items.map(card));
  $("#empty").hidden = result.items.length > 0;
  if (result.next_cursor) {
    const next = new URLSearchParams(params);
    next.set("cursor", result.next_cursor);
    Object.assign($("#next-page"), { href: "/videos?" + next, hidden: false });
  }
  if (params.get("cursor")) {
    const first = new URLSearchParams(params);
    first.delete("cursor");
    Object.assign($("#first-page"), { href: "/videos" + (first.size ? "?" + first : ""), hidden: false });
  }
});
