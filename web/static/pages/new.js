import { $, ApiError, api, clearErrors, el, page, setText, showError } from "../app.js";

const FIELDS = ["prompt", "negative_prompt", "model", "width", "height", "num_frames", "fps", "steps",
  "guidance_scale", "seed", "quality_preset"];

function draft(form) {
  const values = {};
  for (const name of FIELDS) {
    const value = form[name].value;
    // Empty means "the model's default" (and no chosen seed); text goes as typed, checked by the API.
    if (value.trim() !== "" || name === "prompt") values[name] = value;
  }
  return values;
}

function describeLimits(models, name) {
  const model = models.find((m) => m.name === name) || models.find((m) => m.default);
  if (!model) return;
  const { limits: l, defaults: d } = model;
  setText("#model-hint", model.description || "");
  const hints = {
    width: `${l.min_width}–${l.max_width}, multiple of ${l.size_multiple} (default ${d.width})`,
    height: `${l.min_height}–${l.max_height}, multiple of ${l.size_multiple} (default ${d.height})`,
    num_frames: `${l.frame_multiple}k+1, ${l.min_frames}–${l.max_frames} (default ${d.num_frames})`,
    fps: `${l.min_fps}–${l.max_fps} (default ${d.fps})`,
    steps: `${l.min_steps}–${l.max_steps} (default ${d.steps})`,
    guidance_scale: `${l.min_guidance_scale}–${l.max_guidance_scale} (default ${d.guidance_scale})`,
    seed: "empty: a random seed, recorded with the video",
  };
  for (const [name, text] of Object.entries(hints)) setText(`#${name}-hint`, text);
  for (const name of ["width", "height", "num_frames", "fps", "steps", "guidance_scale"]) {
    $(`#${name}`).placeholder = String(d[name]);
  }
}

function showQuote(quote) {
  if (!quote.valid) {
    setText("#cost", "");
    return;
  }
  const text = `Cost: ${quote.credits} credits (balance ${quote.balance})`;
  setText("#cost", quote.missing ? `${text}: ${quote.missing} credits missing` : text);
  $("#cost").classList.toggle("short", Boolean(quote.missing));
}

page(async (visitor) => {
  if (!visitor.canWrite) {
    throw new ApiError(403, { error: { code: "read_only_role", message: "support accounts are read-only" } });
  }
  const form = $("#job-form");
  const catalog = await api("/api/v1/models");
  $("#models").replaceChildren(...catalog.models.map((m) => el("option", { value: m.name }, m.description)));
  $("#presets").replaceChildren(...catalog.quality_presets.map((p) => el("option", { value: p })));
  const fallback = catalog.models.find((m) => m.default) || catalog.models[0];
  form.model.placeholder = fallback ? fallback.name : "";
  describeLimits(catalog.models, form.model.value);
  form.model.addEventListener("input", () => describeLimits(catalog.models, form.model.value));

  // The price as the form changes (a dry run: nothing is stored).
  let timer = null;
  let latest = 0;
  let submissionKey = crypto.randomUUID();
  form.addEventListener("input", () => {
    submissionKey = crypto.randomUUID();
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const ticket = ++latest;
      try {
        const quote = await api("/api/v1/jobs/quote", { method: "POST", body: draft(form), background: true });
        if (ticket === latest) showQuote(quote);
      } catch { /* the price waits for the next change; submitting shows any error */ }
    }, 300);
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const button = $("#submit");
    button.disabled = true;
    try {
      // Checked first: a request the API would reject is shown here and never becomes a job.
      const quote = await api("/api/v1/jobs/quote", { method: "POST", body: draft(form) });
      showQuote(quote);
      if (!quote.valid) {
        showError(form, quote.error);
        return;
      }
      if (quote.missing) {
        showError(form, { message: `This video costs ${quote.credits} credits; your balance is ${quote.balance}.` });
        return;
      }
      const request = Object.fromEntries(Object.entries(quote.request).filter(([, v]) => v !== null));
      // The same key until the form changes: pressing Generate twice (or again after a lost answer)
      // gives the one job, charged once.
      const job = await api("/api/v1/jobs", { method: "POST", body: request, headers: { "Idempotency-Key": submissionKey } });
      location.assign(`/videos/${job.id}`);
    } catch (error) {
      showError(form, error);
    } finally {
      button.disabled = false;
    }
  });
});
