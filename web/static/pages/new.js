import { $, ApiError, clearErrors, page, setText, showError } from "../app.js";
import { loadCatalog, parameters, priceAsYouType, submitChecked, uploadChosenFile } from "../job_form.js";

const FIELDS = ["prompt", "negative_prompt", "model", "width", "height", "num_frames", "fps", "steps",
  "guidance_scale", "seed", "quality_preset"];

// A spoken prompt: the file goes to the caller's uploads as soon as it is chosen, so that the API's
// verdict on it (silent, too long, not audio) is shown at once, next to the field, before any job.
const spoken = { file: null, upload: null, key: null, error: "" };

function draft(form) {
  const values = parameters(form, FIELDS);
  if (spoken.file) {
    values.prompt = "";  // the run transcribes the recording into the prompt
    if (spoken.key) values.audio_prompt_key = spoken.key;
  }
  return values;
}

function chooseRecording(form, price) {
  const file = uploadChosenFile(form.audio_prompt, "audio_prompt", spoken, {
    field: "audio_prompt",
    ready: (chosen) => `${chosen.name} is ready: its words become the prompt.`,
    onReady: () => price.changed(),  // the price of the spoken prompt
  });
  form.prompt.disabled = Boolean(file);  // one prompt: the recording's words replace the typed ones
  $("#audio_prompt-clear").hidden = !file;
}

page(async (visitor) => {
  if (!visitor.canWrite) {
    throw new ApiError(403, { error: { code: "read_only_role", message: "support accounts are read-only" } });
  }
  const form = $("#job-form");
  await loadCatalog(form);
  const price = priceAsYouType(form, () => draft(form));
  form.audio_prompt.addEventListener("change", () => chooseRecording(form, price));
  $("#audio_prompt-clear").addEventListener("click", () => {
    form.audio_prompt.value = "";
    chooseRecording(form, price);
    price.changed();
    form.prompt.focus();
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const button = $("#submit");
    button.disabled = true;
    try {
      if (spoken.file) {
        const key = await spoken.upload;
        if (!key) {  // no job for a recording the API refused: its message stays next to the field
          setText("#audio_prompt-error", spoken.error);
          form.audio_prompt.setAttribute("aria-invalid", "true");
          form.audio_prompt.focus();
          return;
        }
      }
      await submitChecked(form, draft(form), price.key(), (request) => (
        spoken.file ? { ...request, prompt: "", audio_prompt_key: spoken.key } : request));
    } catch (error) {
      showError(form, error);
    } finally {
      button.disabled = false;
    }
  });
});
