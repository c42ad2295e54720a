import { $, ApiError, api, clearErrors, el, page, setText, showError } from "../app.js";
import { loadCatalog, parameters, priceAsYouType, submitChecked, uploadChosenFile } from "../job_form.js";

// The job's own parameters: every scene's defaults. No num_frames: a film's frames come from its scenes.
const FIELDS = ["prompt", "negative_prompt", "model", "width", "height", "fps", "steps", "guidance_scale", "seed",
  "quality_preset"];
const SCENE_FIELDS = ["prompt", "duration_s", "transition", "narration"];

const music = { file: null, upload: null, key: null, error: "" };

function rows() {
  return [...document.querySelectorAll("#scenes > li")];
}

// Names and ids follow the API's field paths (storyboard.scenes[1].duration_s), renumbered after every
// move, so the API's message about a scene's field lands next to that scene's input.
function renumber() {
  const all = rows();
  all.forEach((row, index) => {
    const number = index + 1;
    row.querySelector(".scene-title").textContent = `Scene ${number}`;
    for (const field of SCENE_FIELDS) {
      const id = `storyboard.scenes[${index}].${field}`;
      const input = row.querySelector(`[data-field="${field}"]`);
      input.id = id;
      input.name = id;
      row.querySelector(`[data-for="${field}"]`).htmlFor = id;
      row.querySelector(`[data-error="${field}"]`).id = `${id}-error`;
      const hint = row.querySelector(`[data-hint-of="${field}"]`);
      if (hint) hint.id = `${id}-hint`;
      input.setAttribute("aria-describedby", `${hint ? `${id}-hint ` : ""}${id}-error`);
    }
    const buttons = {
      up: [`Move scene ${number} up`, index === 0],
      down: [`Move scene ${number} down`, index === all.length - 1],
      remove: [`Remove scene ${number}`, false],
    };
    for (const [action, [label, disabled]] of Object.entries(buttons)) {
      const button = row.querySelector(`[data-action="${action}"]`);
      button.setAttribute("aria-label", label);
      button.disabled = disabled;
    }
  });
}

function addScene(values = {}) {
  const row = $("#scene-template").content.firstElementChild.cloneNode(true);
  for (const field of SCENE_FIELDS) {
    if (values[field] !== undefined) row.querySelector(`[data-field="${field}"]`).value = values[field];
  }
  $("#scenes").append(row);
  renumber();
  return row;
}

// A duration goes as a number when it is one; other text goes as typed, for the API to say what is wrong.
function duration(text) {
  const trimmed = text.trim();
  if (trimmed === "") return undefined;
  const number = Number(trimmed);
  return Number.isFinite(number) ? number : text;
}

function storyboard(form) {
  const value = (name) => form.elements.namedItem(name).value;
  const scenes = rows().map((row) => {
    const field = (name) => row.querySelector(`[data-field="${name}"]`).value;
    const scene = { prompt: field("prompt"), duration_s: duration(field("duration_s")), transition: field("transition") };
    if (field("narration").trim() !== "") scene.narration = field("narration");
    return scene;
  });
  const board = { scenes, voice: value("storyboard.voice"), subtitles: value("storyboard.subtitles") };
  const choice = value("storyboard.music");
  // A file not uploaded yet is left out: the price does not depend on the music, and submitting waits for it.
  if (choice !== "upload") board.music = choice;
  else if (music.key) board.music = { key: music.key };
  return board;
}

function draft(form) {
  return { ...parameters(form, FIELDS), storyboard: storyboard(form) };
}

function chooseMusicFile(form, price) {
  uploadChosenFile(form.elements.namedItem("storyboard.music.key"), "music", music, {
    field: "storyboard\\.music\\.key",
    ready: (chosen) => `${chosen.name} is ready.`,
    onReady: () => price.changed(),
  });
}

page(async (visitor) => {
  if (!visitor.canWrite) {
    throw new ApiError(403, { error: { code: "read_only_role", message: "support accounts are read-only" } });
  }
  const form = $("#film-form");
  const [voices] = await Promise.all([api("/api/v1/voices"), loadCatalog(form)]);
  $("#storyboard\\.voice").replaceChildren(...voices.voices.map((v) => el("option",
    { value: v.name, selected: v.default }, `${v.name}: ${v.description}`)));
  addScene();
  const price = priceAsYouType(form, () => draft(form));

  $("#add-scene").addEventListener("click", () => {
    addScene().querySelector('[data-field="prompt"]').focus();
    price.changed();
  });
  $("#scenes").addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const row = button.closest("li");
    const action = button.dataset.action;
    if (action === "remove") {
      const next = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      renumber();
      (next ? next.querySelector("[data-action=remove]") : $("#add-scene")).focus();
    } else {
      if (action === "up") row.previousElementSibling.before(row);
      else row.nextElementSibling.after(row);
      renumber();
      // Keep the focus on the moved scene's button, or on its other one at the end of the list.
      const again = row.querySelector(`[data-action="${action}"]`);
      (again.disabled ? row.querySelector(`[data-action="${action === "up" ? "down" : "up"}"]`) : again).focus();
    }
    clearErrors(form);  // a message named a scene by its place, which has changed
    price.changed();
  });
  const choice = form.elements.namedItem("storyboard.music");
  choice.addEventListener("change", () => { $("#music-file").hidden = choice.value !== "upload"; });
  form.elements.namedItem("storyboard.music.key").addEventListener("change", () => chooseMusicFile(form, price));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const button = $("#submit");
    button.disabled = true;
    try {
      if (choice.value === "upload") {
        const key = music.file ? await music.upload : null;
        if (!key) {  // no film with music the API refused, or none chosen
          const input = form.elements.namedItem("storyboard.music.key");
          setText("#storyboard\\.music\\.key-error", music.error || "Choose the music file, or another music.");
          input.setAttribute("aria-invalid", "true");
          input.focus();
          return;
        }
      }
      const body = draft(form);
      // The parameters as the quote normalized them, the storyboard as the form holds it; a film's
      // num_frames is its scenes' sum, never a parameter.
      await submitChecked(form, body, price.key(), (request) => {
        const { num_frames: _, ...rest } = request;
        return { ...rest, storyboard: body.storyboard };
      });
    } catch (error) {
      showError(form, error);
    } finally {
      button.disabled = false;
    }
  });
});
