import { $, ApiError, api, el, page, refreshBalance, setText, when } from "../app.js";

const FINAL = new Set(document.body.dataset.finalStatuses.split(","));
const jobId = Number($("#job").dataset.jobId);
let stream = null;

function showProgress(job) {
  const status = $("#status");
  status.textContent = job.status;
  status.className = `badge status-${job.status}`;
  setText("#stage", job.stage || (job.status === "pending" ? "waiting" : ""));
  const steps = job.parameters ? job.parameters.steps : null;
  const progress = job.status === "succeeded" ? 1 : Number(job.progress || 0);
  $("#progress").value = Math.round(progress * 100);
  setText("#step", job.stage === "generate" && steps
    ? `denoising step ${Math.round(progress * steps)} of ${steps}` : "");
}

// A film's own outputs, through the API (GET /jobs/{id}/files/{name}: the job's visibility rules).
const fileUrl = (name) => `/api/v1/jobs/${jobId}/files/${name}`;
const sceneFile = (index) => `scene_${String(index + 1).padStart(2, "0")}.png`;
let filmShownFor = null;

// Its scenes as the storyboard says them, with each scene's thumbnail once the film is made.
function showFilm(job) {
  const board = job.storyboard;
  $("#film").hidden = !board;
  if (!board || filmShownFor === job.status) return;
  filmShownFor = job.status;
  const done = job.status === "succeeded";
  const scenes = Array.isArray(board.scenes) ? board.scenes : [];
  $("#film-scenes").replaceChildren(...scenes.map((scene, index) => el("li", {},
    done ? el("img", { src: fileUrl(sceneFile(index)), alt: `Scene ${index + 1}: ${scene.prompt}`, loading: "lazy" }) : null,
    el("dl", { class: "meta" },
      el("dt", {}, "Scene"), el("dd", {}, String(index + 1)),
      el("dt", {}, "Prompt"), el("dd", {}, scene.prompt ?? "—"),
      el("dt", {}, "Duration"), el("dd", {}, scene.duration_s === undefined ? "—" : `${scene.duration_s} s`),
      el("dt", {}, "Narration"), el("dd", {}, scene.narration || "—"),
      el("dt", {}, "Transition"), el("dd", {}, scene.transition || "cut")))));
}

// Subtitles exist as files when the storyboard asks for any (sidecar or burned): the links, and a
// track on the player (added before its source, so the browser selects it as the default track).
function showSubtitles(job) {
  const board = job.storyboard;
  const has = job.status === "succeeded" && board && board.subtitles && board.subtitles !== "none";
  for (const [id, name] of [["#download-srt", "subtitles.srt"], ["#download-vtt", "subtitles.vtt"]]) {
    $(id).hidden = !has;
    if (has) $(id).href = fileUrl(name);
  }
  if (has && !$("#player track")) {
    const track = el("track", { kind: "subtitles", label: "Subtitles", src: fileUrl("subtitles.vtt"), default: true });
    $("#player").append(track);
    languageOf(board.voice).then((language) => { if (language) track.srclang = language; });
  }
}

// The language the narration's voice speaks (GET /api/v1/voices, read once): the subtitles' srclang.
let voices = null;
async function languageOf(name) {
  voices ??= api("/api/v1/voices", { background: true }).then((r) => r.voices, () => []);
  const list = await voices;
  const voice = list.find((v) => (name ? v.name === name : v.default));
  return voice ? voice.language : "";
}

function musicOf(board) {
  if (!board.music || board.music === "none") return "none";
  return typeof board.music === "object" ? "my audio file" : board.music;
}

function showJob(job, visitor) {
  showProgress(job);
  const waiting = job.status === "pending" || job.status === "queued";
  const queue = $("#queue");
  queue.hidden = !(waiting && job.queue_position !== null);
  queue.textContent = job.queue_position === 0 ? "Next in the queue." : `${job.queue_position} jobs ahead in the queue.`;
  const done = job.status === "succeeded" && job.video_url;
  $("#result").hidden = !done;
  showFilm(job);
  showSubtitles(job);
  if (done && $("#player").getAttribute("src") !== job.video_url) {
    $("#player").src = job.video_url;
    $("#download").href = job.video_url;
  }
  const problem = $("#problem");
  problem.hidden = !job.error;
  problem.textContent = job.error ? `${job.error.code}: ${job.error.message || ""}` : "";
  const cancel = $("#cancel");
  if (cancel) cancel.hidden = FINAL.has(job.status);
  const retry = $("#retry");
  if (retry) retry.hidden = !(job.status === "failed" || job.status === "canceled")
    || !(visitor.role === "admin" || visitor.id === job.user_id);
  const p = job.parameters || {};
  const board = job.storyboard;
  // An audio prompt's job has no prompt until the run has transcribed the recording.
  const prompt = job.prompt || (job.transcript === null ? "a recording, transcribed when the job runs" : "");
  const rows = [
    [board ? "Title" : "Prompt", prompt],
    ...(job.transcript !== null && job.transcript !== undefined ? [["Transcript", job.transcript]] : []),
    ...(board ? [["Scenes", (board.scenes || []).length], ["Voice", board.voice || "—"], ["Music", musicOf(board)],
      ["Subtitles", board.subtitles || "none"]] : []),
    ["Negative prompt", job.negative_prompt || "—"], ["Model", job.model],
    ["Seed", p.seed], ["Size", `${p.width} × ${p.height}`], ["Frames", p.num_frames], ["Frames per second", p.fps],
    ["Denoising steps", p.steps], ["Guidance scale", p.guidance_scale], ["Quality preset", p.quality_preset],
    ["Credits", job.credits ?? "—"], ["GPU seconds", job.gpu_seconds === null ? "—" : job.gpu_seconds.toFixed(2)],
    ["Submitted", when(job.created_at)], ["Finished", when(job.finished_at) || "—"], ["Attempts", job.attempts],
  ];
  $("#meta").replaceChildren(...rows.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value ?? "—")]));
}

async function showTrail() {
  const events = await api(`/api/v1/jobs/${jobId}/events`);
  $("#trail").replaceChildren(...events.map((e) => el("li", {},
    el("time", { datetime: e.created_at }, when(e.created_at)), " ",
    el("strong", {}, e.status), e.stage ? ` · ${e.stage}` : "", e.message ? ` — ${e.message}` : "")));
}

let latestReload = 0;
let shownStatus = null;

// The job, its outputs and trail; an answer overtaken by a newer reload is dropped, so the page never
// goes back to an older state.
async function reload(visitor) {
  const ticket = ++latestReload;
  const job = await api(`/api/v1/jobs/${jobId}`);
  if (ticket !== latestReload) return job;
  shownStatus = job.status;
  showJob(job, visitor);
  await showTrail();
  return job;
}

const WAITING = new Set(["pending", "queued"]);
let retryDelayMs = 1000;
let queueTimer = null;

// While the job waits, its place in the queue changes without any change of its own: ask again.
function watchQueue(visitor) {
  clearInterval(queueTimer);
  queueTimer = setInterval(async () => {
    if (!WAITING.has(shownStatus)) {
      clearInterval(queueTimer);
      return;
    }
    try { await reload(visitor); } catch { /* the next tick tries again */ }
  }, 5000);
}

function follow(visitor) {
  if (stream) stream.close();
  stream = new EventSource(`/api/v1/jobs/${jobId}/stream`);
  let lastStatus = null;
  stream.addEventListener("job", async (event) => {
    retryDelayMs = 1000;
    const snapshot = JSON.parse(event.data);
    showProgress({ ...snapshot, parameters: currentParameters });
    if (snapshot.status !== lastStatus) {
      lastStatus = snapshot.status;
      if (FINAL.has(snapshot.status)) stream.close();
      try {
        await reload(visitor);  // queue position, outputs, the trail: they change with the status
      } catch (error) {
        setText("#job-error", error.message);
      }
    }
  });
  stream.addEventListener("error", () => {
    if (stream.readyState !== EventSource.CLOSED) return;  // the browser reconnects by itself
    // Refused (a rate limit, an expired session, a server restarting): back off, then look again.
    const delay = retryDelayMs * (0.5 + Math.random());
    retryDelayMs = Math.min(retryDelayMs * 2, 30000);
    setTimeout(async () => {
      try {
        const job = await reload(visitor);  // refreshes an expired session on the way
        if (!FINAL.has(job.status)) follow(visitor);
      } catch (error) {
        setText("#job-error", error.message);
        follow(visitor);
      }
    }, delay);
  });
}

let currentParameters = null;

async function act(action, visitor) {
  setText("#job-error", "");
  try {
    const job = await api(`/api/v1/jobs/${jobId}/${action}`, { method: "POST" });
    showJob(job, visitor);
    await showTrail();
    await refreshBalance();
    if (!FINAL.has(job.status)) {
      follow(visitor);
      watchQueue(visitor);
    }
  } catch (error) {
    setText("#job-error", error instanceof ApiError ? error.message : String(error));
  }
}

page(async (visitor) => {
  const job = await reload(visitor);
  currentParameters = job.parameters;
  $("#cancel")?.addEventListener("click", () => act("cancel", visitor));
  $("#retry")?.addEventListener("click", () => act("retry", visitor));
  if (!FINAL.has(job.status)) follow(visitor);
  watchQueue(visitor);
});
