// What the two job forms (New video, New film) share: the model catalog with each parameter's limits
// as hints, the price as the form changes, one Idempotency-Key per filled-in form, an audio file sent
// to POST /api/v1/uploads, and the checked submission.

import { $, api, el, setText, showError } from "./app.js";

// A value left empty means "the model's default" (and no chosen seed); text goes as typed, checked by the API.
export function parameters(form, names) {
  const values = {};
  for (const name of names) {
    const value = form.elements.namedItem(name).value;
    if (value.trim() !== "" || name === "prompt") values[name] = value;
  }
  return values;
}

export function describeLimits(models, name) {
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
  // A film has no num_frames field (its frames come from its scenes): only the fields the page has.
  for (const [field, text] of Object.entries(hints)) {
    if ($(`#${field}-hint`)) setText(`#${field}-hint`, text);
    if (field in d && $(`#${field}`)) $(`#${field}`).placeholder = String(d[field]);
  }
}

// The models and presets into the form's datalists, and the hints following the chosen model.
export async function loadCatalog(form) {
  const catalog = await api("/api/v1/models");
  $("#models").replaceChildren(...catalog.models.map((m) => el("option", { value: m.name }, m.description)));
  $("#presets").replaceChildren(...catalog.quality_presets.map((p) => el("option", { value: p })));
  const fallback = catalog.models.find((m) => m.default) || catalog.models[0];
  form.model.placeholder = fallback ? fallback.name : "";
  describeLimits(catalog.models, form.model.value);
  form.model.addEventListener("input", () => describeLimits(catalog.models, form.model.value));
  return catalog;
}

export function showQuote(quote) {
  if (!quote.valid) {
    setText("#cost", "");
    return;
  }
  const text = `Cost: ${quote.credits} credits (balance ${quote.balance})`;
  setText("#cost", quote.missing ? `${text}: ${quote.missing} credits missing` : text);
  $("#cost").classList.toggle("short", Boolean(quote.missing));
}

// The price as the form changes (a dry run: nothing is stored). draft() is what the form holds now;
// changed() is for changes that fire no input event (a scene moved, an upload finished). key() is the
// submission's Idempotency-Key: the same until the form changes, so pressing the button twice (or
// again after a lost answer) gives the one job, charged once.
export function priceAsYouType(form, draft) {
  let timer = null;
  let latest = 0;
  let key = crypto.randomUUID();
  const changed = () => {
    key = crypto.randomUUID();
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const ticket = ++latest;
      try {
        const quote = await api("/api/v1/jobs/quote", { method: "POST", body: draft(), background: true });
        if (ticket === latest) showQuote(quote);
      } catch { /* the price waits for the next change; submitting shows any error */ }
    }, 300);
  };
  form.addEventListener("input", changed);
  return { changed, key: () => key };
}

// Checked first: a request the API would reject is shown at its field and never becomes a job. Then
// the job, made from the request as the quote normalized it (build() adds what the quote does not
// echo), and the video page.
export async function submitChecked(form, draft, key, build) {
  const quote = await api("/api/v1/jobs/quote", { method: "POST", body: draft });
  showQuote(quote);
  if (!quote.valid) {
    showError(form, quote.error);
    return;
  }
  if (quote.missing) {
    showError(form, { message: `This video costs ${quote.credits} credits; your balance is ${quote.balance}.` });
    return;
  }
  const normalized = Object.fromEntries(Object.entries(quote.request).filter(([, v]) => v !== null));
  const job = await api("/api/v1/jobs", { method: "POST", body: build(normalized), headers: { "Idempotency-Key": key } });
  location.assign(`/videos/${job.id}`);
}

// The Content-Type the upload route accepts, from the browser's idea of the file or its name.
const AUDIO_TYPES = { wav: "audio/wav", mp3: "audio/mpeg", m4a: "audio/mp4", ogg: "audio/ogg", oga: "audio/ogg" };
const ACCEPTED = new Set(["audio/wav", "audio/x-wav", "audio/wave", "audio/mpeg", "audio/mp4", "audio/x-m4a", "audio/ogg"]);

export const WRONG_AUDIO_FILE = "Choose a WAV, MP3, M4A or OGG file.";

// An audio file into the caller's uploads (kind: audio_prompt or music), checked by the API at once.
// The file's key, or an ApiError whose message says what is wrong with it.
export async function uploadAudio(file, kind) {
  const extension = file.name.includes(".") ? file.name.split(".").pop().toLowerCase() : "";
  const type = ACCEPTED.has(file.type) ? file.type : AUDIO_TYPES[extension];
  if (!type) throw new Error(WRONG_AUDIO_FILE);
  const uploaded = await api("/api/v1/uploads", { method: "POST", query: { kind }, body: file, contentType: type });
  return uploaded.key;
}

// The file chosen in `input`, uploaded at once (uploadAudio). `state` ({ file, key, error, upload })
// follows it: `upload` is the pending promise of the latest choice, so an answer for a file chosen
// before is dropped. `field` is the selector prefix of the field's #…-status and #…-error elements;
// `ready(file)` is the status once uploaded, then `onReady()` runs. Returns the chosen file (or null).
export function uploadChosenFile(input, kind, state, { field, ready, onReady }) {
  const file = input.files[0] || null;
  const status = `#${field}-status`;
  const problem = `#${field}-error`;
  Object.assign(state, { file, key: null, error: "", upload: null });
  setText(problem, "");
  setText(status, "");
  input.removeAttribute("aria-invalid");
  if (!file) return null;
  setText(status, `Uploading ${file.name}…`);
  const upload = uploadAudio(file, kind).then((key) => {
    if (state.upload !== upload) return null;  // another file was chosen meanwhile
    state.key = key;
    setText(status, ready(file));
    onReady();
    return key;
  }, (error) => {
    if (state.upload !== upload) return null;
    state.error = error.message;
    setText(status, "");
    setText(problem, error.message);
    input.setAttribute("aria-invalid", "true");
    return null;
  });
  state.upload = upload;
  return file;
}
