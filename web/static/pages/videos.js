import { $, api, badge, el, page, when } from "../app.js";

const PAGE_SIZE = 24;

function card(job) {
  const picture = job.thumbnail_url
    ? el("img", { src: job.thumbnail_url, alt: "", loading: "lazy", width: 160, height: 160 })
    : el("div", { class: "placeholder", "aria-hidden": "true" }, job.status === "succeeded" ? "" : "…");
  return el("li", { class: "card" },
    el("a", { href: `/videos/${job.id}` },
      picture,
      el("span", { class: "card-text" },
        badge(job.status),
        el("span", { class: "prompt" }, job.prompt),
        el("time", { datetime: job.created_at }, when(job.created_at)))));
}

// The start of a day (YYYY-MM-DD) in the visitor's time zone, plus ``later`` days, as an ISO instant:
// "to" includes the whole of its day, also one of 23 or 25 hours. A malformed date is no filter.
function startOfDay(day, later) {
  const parts = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day || "");
  if (!parts) return null;
  const start = new Date(Number(parts[1]), Number(parts[2]) - 1, Number(parts[3]) + later);
  return Number.isNaN(start.getTime()) ? null : start.toISOString();
}

page(async () => {
  const params = new URLSearchParams(location.search);
  const form = $("#filters");
  for (const name of ["status", "created_from", "created_to"]) form[name].value = params.get(name) || "";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const name of ["status", "created_from", "created_to"]) if (form[name].value) next.set(name, form[name].value);
    location.assign("/videos" + (next.toString() ? "?" + next : ""));
  });
  const result = await api("/api/v1/jobs", {
    query: {
      status: params.get("status"), limit: PAGE_SIZE, cursor: params.get("cursor"),
      created_from: startOfDay(params.get("created_from"), 0), created_to: startOfDay(params.get("created_to"), 1),
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
    Object.assign($("#first-page"), { href: "/videos" + (first.toString() ? "?" + first : ""), hidden: false });
  }
});
