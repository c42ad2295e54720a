import { $, ApiError, api, el, page, setText, when } from "../app.js";

page(async (visitor) => {
  if (!visitor.isStaff) {
    throw new ApiError(403, { error: { code: "staff_only", message: "this page needs the admin or support role" } });
  }
  const params = new URLSearchParams(location.search);
  const result = await api("/api/v1/jobs", { query: { status: "failed", limit: 50, cursor: params.get("cursor") } });
  $("#empty").hidden = result.items.length > 0;
  $("#failed tbody").replaceChildren(...result.items.map((job) => {
    const cells = [el("td", {}, el("a", { href: `/videos/${job.id}` }, `#${job.id}`)), el("td", {}, job.user_id),
      el("td", { class: "prompt" }, job.prompt), el("td", {}, job.error ? `${job.error.code}: ${job.error.message || ""}` : ""),
      el("td", {}, when(job.finished_at))];
    if (visitor.role === "admin") {
      cells.push(el("td", {}, el("button", { type: "button", "aria-label": `Retry job ${job.id}`, onclick: async (event) => {
        try {
          await api(`/api/v1/jobs/${job.id}/retry`, { method: "POST" });
          event.target.closest("tr").remove();
        } catch (error) { setText("#jobs-error", `job ${job.id}: ${error.message}`); }
      } }, "Retry")));
    }
    return el("tr", {}, ...cells);
  }));
  if (result.next_cursor) {
    Object.assign($("#next-page"), { href: `/admin/jobs?cursor=${result.next_cursor}`, hidden: false });
  }
});
