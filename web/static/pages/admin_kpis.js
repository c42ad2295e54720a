import { $, api, el, page, setText } from "../app.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 360;
const H = 200;
const PAD = { top: 12, right: 8, bottom: 26, left: 44 };

function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

const cell = (v) => el("td", { class: "num" }, v === null || v === undefined ? "—" : String(v));

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

// A bar chart, stacked or grouped, of one value per day and series. Every bar carries its day,
// series and exact value (data-*) and a tooltip, and the table below the charts has the same numbers.
function barChart({ id, title, days, series, stacked = false, format = (v) => String(v) }) {
  const totals = days.map((_, i) => stacked
    ? series.reduce((sum, s) => sum + (s.values[i] ?? 0), 0)
    : Math.max(0, ...series.map((s) => s.values[i] ?? 0)));
  const top = Math.max(...totals, 0) || 1;
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const slot = plotW / Math.max(days.length, 1);
  const barW = stacked ? slot * 0.7 : (slot * 0.7) / series.length;
  const y = (v) => PAD.top + plotH - (v / top) * plotH;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": `${id}-title`, class: "chart" });
  chart.append(svg("title", { id: `${id}-title` }, title));
  for (const tick of [0, 0.5, 1]) {
    chart.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y(top * tick), y2: y(top * tick), class: "grid-line" }),
      svg("text", { x: PAD.left - 6, y: y(top * tick) + 4, class: "axis", "text-anchor": "end" }, format(+(top * tick).toFixed(2))));
  }
  days.forEach((day, i) => {
    let base = 0;
    series.forEach((s, k) => {
      const value = s.values[i];
      if (value === null || value === undefined) return;
      const x = PAD.left + i * slot + slot * 0.15 + (stacked ? 0 : k * barW);
      const y0 = stacked ? y(base) : y(0);
      const y1 = stacked ? y(base + value) : y(value);
      chart.append(svg("rect", {
        x, y: y1, width: Math.max(barW - 1, 1), height: Math.max(y0 - y1, 0), class: `bar ${s.class}`,
        "data-day": day, "data-series": s.name, "data-value": String(value),
      }, svg("title", {}, `${day} · ${s.label}: ${format(value)}`)));
      if (stacked) base += value;
    });
    if (days.length <= 16 || i % Math.ceil(days.length / 8) === 0) {
      chart.append(svg("text", { x: PAD.left + i * slot + slot / 2, y: H - 8, class: "axis", "text-anchor": "middle" }, day.slice(5)));
    }
  });
  const legend = el("ul", { class: "legend" }, ...series.map((s) => el("li", {}, el("span", { class: `swatch ${s.class}` }), s.label)));
  return el("figure", { class: "chart-box", id }, el("figcaption", {}, title), chart, legend);
}

function render(days) {
  const dates = days.map((d) => d.job_date);
  const pick = (name, map = (v) => v) => days.map((d) => (d[name] === null ? null : map(d[name])));
  const other = days.map((d) => d.total_jobs - d.succeeded_jobs - d.failed_jobs - d.rejected_jobs - d.canceled_jobs);
  $("#charts").replaceChildren(
    barChart({ id: "chart-jobs", title: "Jobs per day by status", days: dates, stacked: true, series: [
      { name: "succeeded", label: "succeeded", class: "s-ok", values: pick("succeeded_jobs") },
      { name: "failed", label: "failed", class: "s-failed", values: pick("failed_jobs") },
      { name: "rejected", label: "rejected", class: "s-rejected", values: pick("rejected_jobs") },
      { name: "canceled", label: "canceled", class: "s-canceled", values: pick("canceled_jobs") },
      { name: "other", label: "not finished", class: "s-other", values: other },
    ] }),
    barChart({ id: "chart-success", title: "Success rate (%)", days: dates, series: [
      { name: "success_rate", label: "succeeded / (succeeded + failed)", class: "s-ok",
        values: pick("success_rate", (v) => +(v * 100).toFixed(1)) },
    ] }),
    barChart({ id: "chart-duration", title: "Generation duration (s)", days: dates, series: [
      { name: "median_duration_s", label: "p50", class: "s-p50", values: pick("median_duration_s", (v) => +v.toFixed(2)) },
      { name: "p95_duration_s", label: "p95", class: "s-p95", values: pick("p95_duration_s", (v) => +v.toFixed(2)) },
    ] }),
    barChart({ id: "chart-credits", title: "Credits consumed", days: dates, series: [
      { name: "credits_consumed", label: "credits", class: "s-credits", values: pick("credits_consumed", Number) },
    ] }),
    barChart({ id: "chart-gpu", title: "GPU hours", days: dates, series: [
      { name: "gpu_hours", label: "GPU hours", class: "s-gpu", values: pick("gpu_seconds", (v) => +(v / 3600).toFixed(4)) },
    ] }),
  );
  $("#kpi-table tbody").replaceChildren(...days.map((d) => el("tr", {},
    el("th", { scope: "row" }, d.job_date), cell(d.total_jobs), cell(d.succeeded_jobs), cell(d.failed_jobs),
    cell(d.rejected_jobs), cell(d.canceled_jobs),
    cell(d.success_rate === null ? null : `${(d.success_rate * 100).toFixed(1)} %`),
    cell(d.median_duration_s?.toFixed(2)), cell(d.p95_duration_s?.toFixed(2)), cell(d.credits_consumed),
    cell((d.gpu_seconds / 3600).toFixed(4)))));
  $("#kpi-table").hidden = days.length === 0;
  $("#kpi-empty").hidden = days.length > 0;
}

const MODEL_CLASSES = ["s-p50", "s-p95", "s-credits", "s-gpu", "s-other", "s-rejected"];

function renderByModel(rows) {
  const days = [...new Set(rows.map((r) => r.job_date))];
  const models = [...new Set(rows.map((r) => r.model))].sort();
  const value = (model, day, name) => rows.find((r) => r.model === model && r.job_date === day)?.[name] ?? 0;
  $("#model-charts").replaceChildren(...(rows.length ? [
    barChart({ id: "chart-models", title: "Jobs per day by model", days, stacked: true,
      series: models.map((model, i) => ({ name: model, label: model, class: MODEL_CLASSES[i % MODEL_CLASSES.length],
        values: days.map((day) => value(model, day, "jobs")) })) }),
  ] : []));
  $("#model-table tbody").replaceChildren(...rows.map((r) => el("tr", {},
    el("th", { scope: "row" }, r.job_date), el("td", {}, r.model), cell(r.jobs), cell(r.succeeded_jobs),
    cell(r.failed_jobs), cell(r.success_rate === null ? null : `${(r.success_rate * 100).toFixed(1)} %`),
    cell(r.median_duration_s?.toFixed(2)), cell(r.p95_duration_s?.toFixed(2)), cell(r.credits_consumed),
    cell((r.gpu_seconds / 3600).toFixed(4)))));
  $("#model-table").hidden = rows.length === 0;
}

page(async () => {
  const params = new URLSearchParams(location.search);
  const today = new Date();
  const form = $("#range");
  form.from.value = params.get("from") || isoDay(new Date(today.getTime() - 29 * 86400000));
  form.to.value = params.get("to") || isoDay(today);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.assign(`/admin/kpis?from=${form.from.value}&to=${form.to.value}`);
  });
  try {
    const range = { from: form.from.value, to: form.to.value };
    const [daily, byModel] = await Promise.all([
      api("/api/v1/kpis/daily", { query: range }), api("/api/v1/kpis/daily/by-model", { query: range })]);
    render(daily.days);
    renderByModel(byModel.rows);
  } catch (error) {
    if (error.status === 403) throw error;
    setText("#kpi-error", error.message);
  }
});
