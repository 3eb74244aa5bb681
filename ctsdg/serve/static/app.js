// ctsdg serve: the inpainting page. Plain JavaScript, no build step, nothing fetched from elsewhere.
//
// The photo is shown scaled to fit; the mask canvas has the photo's full resolution and is scaled
// with it by CSS, so strokes are recorded in photo pixels. Strokes are kept as a list of
// operations (not bitmaps) so that undo / redo cost no memory on large photos.
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  modelInfo: $("model-info"), tokenForm: $("token-form"), tokenInput: $("token-input"),
  imageInput: $("image-input"), maskInput: $("mask-input"),
  brush: $("brush-button"), eraser: $("eraser-button"),
  size: $("brush-size"), sizeValue: $("brush-size-value"),
  undo: $("undo-button"), redo: $("redo-button"), clear: $("clear-button"),
  strategy: $("strategy"), inpaint: $("inpaint-button"), compare: $("compare-button"),
  continue: $("continue-button"), download: $("download-link"), message: $("message"),
  stage: $("stage"), hint: $("empty-hint"), wrap: $("canvas-wrap"),
  source: $("source-image"), result: $("result-image"), canvas: $("mask-canvas"),
  cursor: $("brush-cursor"),
};
const MASK_COLOUR = "rgb(255, 40, 40)";
const ctx = ui.canvas.getContext("2d");

const state = {
  sourceBlob: null, // the bytes sent as `image` (the opened file, or a result continued from)
  sourceName: "image",
  sourceUrl: null,
  resultBlob: null,
  resultUrl: null,
  ops: [], // mask operations, replayed on undo
  redo: [],
  stroke: null, // the operation being painted
  erasing: false,
  busy: false,
};

// ------------------------------------------------------------------ messages and the API

function say(text, isError = false) {
  ui.message.textContent = text;
  ui.message.classList.toggle("error", isError);
}

function authHeaders() {
  const token = sessionStorage.getItem("ctsdg-token");
  return token ? { Authorization: `Bearer ${token}` } : {};
}

// A readable message from an API error response (JSON {"error": ...}, or whatever came back).
async function apiError(response) {
  let detail = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) detail = `${response.status}: ${body.error}`;
  } catch (_) { /* not JSON: keep the status line */ }
  if (response.status === 401) askForToken();
  if (response.status === 503 && response.headers.get("Retry-After")) {
    detail += ` (retry in ${response.headers.get("Retry-After")} s)`;
  }
  return detail;
}

function askForToken() {
  ui.tokenForm.hidden = false;
  ui.tokenInput.focus();
}

async function loadModelInfo() {
  let response;
  try {
    response = await fetch("/api/v1/model", { headers: authHeaders() });
  } catch (err) {
    say(`cannot reach the server: ${err.message}`, true);
    return;
  }
  if (!response.ok) {
    const detail = await apiError(response);
    ui.modelInfo.textContent = "model: unavailable";
    say(response.status === 401 ? "this server needs an access token" : detail, true);
    return;
  }
  const m = await response.json();
  ui.modelInfo.textContent =
    `${m.name} · ${m.structure} structure · ${m.size}×${m.size} input · width ${m.width} · ${m.device}, ${m.precision}`;
  ui.modelInfo.title = `${m.checkpoint} (${m.format})`;
}

ui.tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("ctsdg-token", ui.tokenInput.value.trim());
  ui.tokenForm.hidden = true;
  say("");
  loadModelInfo();
});

// ------------------------------------------------------------------ opening a photo

function setSource(blob, name) {
  if (!blob || !blob.type.startsWith("image/")) {
    say(`${name || "that file"} is not an image`, true);
    return;
  }
  const url = URL.createObjectURL(blob);
  const img = new Image();
  img.onload = () => {
    if (state.sourceUrl) URL.revokeObjectURL(state.sourceUrl);
    state.sourceBlob = blob;
    state.sourceName = (name || "image").replace(/\.[^.]*$/, "");
    state.sourceUrl = url;
    ui.source.src = url;
    ui.canvas.width = img.naturalWidth;
    ui.canvas.height = img.naturalHeight;
    state.ops = [];
    state.redo = [];
    showResult(null);
    ui.hint.hidden = true;
    ui.wrap.hidden = false;
    fitToStage();
    redraw();
    say(`${img.naturalWidth}×${img.naturalHeight}: paint over what should go`);
  };
  img.onerror = () => {
    URL.revokeObjectURL(url);
    say(`${name || "that file"}: the browser cannot decode this image`, true);
  };
  img.src = url;
}

ui.imageInput.addEventListener("change", () => {
  const file = ui.imageInput.files[0];
  if (file) setSource(file, file.name);
  ui.imageInput.value = "";
});

ui.stage.addEventListener("dragover", (event) => {
  event.preventDefault();
  ui.stage.classList.add("dragging");
});
ui.stage.addEventListener("dragleave", () => ui.stage.classList.remove("dragging"));
ui.stage.addEventListener("drop", (event) => {
  event.preventDefault();
  ui.stage.classList.remove("dragging");
  const file = event.dataTransfer.files[0];
  if (file) setSource(file, file.name);
});
document.addEventListener("paste", (event) => {
  for (const item of event.clipboardData.items) {
    if (item.kind === "file" && item.type.startsWith("image/")) {
      setSource(item.getAsFile(), "pasted");
      event.preventDefault();
      return;
    }
  }
});

// Display size: the photo scaled to fit the stage (never enlarged); the canvas keeps full size.
function fitToStage() {
  if (!ui.canvas.width) return;
  const box = ui.stage.getBoundingClientRect();
  const scale = Math.min(1, (box.width - 16) / ui.canvas.width, (box.height - 16) / ui.canvas.height);
  ui.wrap.style.width = `${Math.max(1, Math.round(ui.canvas.width * scale))}px`;
  ui.wrap.style.height = `${Math.max(1, Math.round(ui.canvas.height * scale))}px`;
}
window.addEventListener("resize", fitToStage);

// ------------------------------------------------------------------ painting

function imageScale() { // photo pixels per screen pixel
  return ui.canvas.width / ui.canvas.getBoundingClientRect().width;
}

function toImage(event) {
  const rect = ui.canvas.getBoundingClientRect();
  return [(event.clientX - rect.left) * ui.canvas.width / rect.width,
          (event.clientY - rect.top) * ui.canvas.height / rect.height];
}

function drawStroke(op) {
  ctx.save();
  ctx.globalCompositeOperation = op.erase ? "destination-out" : "source-over";
  ctx.strokeStyle = MASK_COLOUR;
  ctx.fillStyle = MASK_COLOUR;
  ctx.lineWidth = op.size;
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  const p = op.points;
  if (p.length === 2) { // a dot
    ctx.beginPath();
    ctx.arc(p[0], p[1], op.size / 2, 0, 2 * Math.PI);
    ctx.fill();
  } else {
    ctx.beginPath();
    ctx.moveTo(p[0], p[1]);
    for (let i = 2; i < p.length; i += 2) ctx.lineTo(p[i], p[i + 1]);
    ctx.stroke();
  }
  ctx.restore();
}

function apply(op) {
  if (op.kind === "stroke") drawStroke(op);
  else if (op.kind === "clear") ctx.clearRect(0, 0, ui.canvas.width, ui.canvas.height);
  else if (op.kind === "mask") {
    ctx.save();
    ctx.imageSmoothingEnabled = false;
    ctx.globalCompositeOperation = "source-over";
    ctx.drawImage(op.overlay, 0, 0, ui.canvas.width, ui.canvas.height);
    ctx.restore();
  }
}

function redraw() {
  ctx.clearRect(0, 0, ui.canvas.width, ui.canvas.height);
  for (const op of state.ops) apply(op);
  updateButtons();
}

function commit(op) {
  state.ops.push(op);
  state.redo = [];
  updateButtons();
}

function undo() {
  if (!state.ops.length) return;
  state.redo.push(state.ops.pop());
  redraw();
}

function redo() {
  if (!state.redo.length) return;
  state.ops.push(state.redo.pop());
  redraw();
}

function setTool(erase) {
  state.erasing = erase;
  ui.brush.setAttribute("aria-pressed", String(!erase));
  ui.eraser.setAttribute("aria-pressed", String(erase));
}

function setSize(value) {
  const v = Math.max(Number(ui.size.min), Math.min(Number(ui.size.max), Math.round(value)));
  ui.size.value = String(v);
  ui.sizeValue.textContent = String(v);
  ui.cursor.style.width = ui.cursor.style.height = `${v}px`;
}

function moveCursor(event) {
  const rect = ui.wrap.getBoundingClientRect();
  ui.cursor.hidden = false;
  ui.cursor.style.left = `${event.clientX - rect.left}px`;
  ui.cursor.style.top = `${event.clientY - rect.top}px`;
}

ui.canvas.addEventListener("pointerdown", (event) => {
  if (state.busy || event.button !== 0) return;
  event.preventDefault();
  ui.canvas.setPointerCapture(event.pointerId);
  showResult(state.resultBlob, false); // painting goes back to the photo being edited
  state.stroke = { kind: "stroke", erase: state.erasing, size: Number(ui.size.value) * imageScale(), points: toImage(event) };
  drawStroke(state.stroke);
});
ui.canvas.addEventListener("pointermove", (event) => {
  moveCursor(event);
  if (!state.stroke) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of (events.length ? events : [event])) state.stroke.points.push(...toImage(e));
  redraw();
  drawStroke(state.stroke);
});
function endStroke() {
  if (!state.stroke) return;
  const op = state.stroke;
  state.stroke = null;
  commit(op);
  redraw();
}
ui.canvas.addEventListener("pointerup", endStroke);
ui.canvas.addEventListener("pointercancel", endStroke);
ui.canvas.addEventListener("pointerleave", () => { ui.cursor.hidden = true; });

ui.brush.addEventListener("click", () => setTool(false));
ui.eraser.addEventListener("click", () => setTool(true));
ui.size.addEventListener("input", () => setSize(ui.size.value));
ui.undo.addEventListener("click", undo);
ui.redo.addEventListener("click", redo);
ui.clear.addEventListener("click", () => { commit({ kind: "clear" }); redraw(); });

// A mask file: white (>= 50 % gray) = hole, as the API reads it; scaled to the photo if needed.
ui.maskInput.addEventListener("change", () => {
  const file = ui.maskInput.files[0];
  ui.maskInput.value = "";
  if (!file) return;
  if (!state.sourceBlob) { say("open a photo before its mask", true); return; }
  const url = URL.createObjectURL(file);
  const img = new Image();
  img.onload = () => {
    const overlay = document.createElement("canvas");
    overlay.width = img.naturalWidth;
    overlay.height = img.naturalHeight;
    const octx = overlay.getContext("2d");
    octx.drawImage(img, 0, 0);
    const pixels = octx.getImageData(0, 0, overlay.width, overlay.height);
    const d = pixels.data;
    for (let i = 0; i < d.length; i += 4) {
      const gray = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
      const hole = gray >= 128 && d[i + 3] >= 128;
      d[i] = 255; d[i + 1] = 40; d[i + 2] = 40; d[i + 3] = hole ? 255 : 0;
    }
    octx.putImageData(pixels, 0, 0);
    URL.revokeObjectURL(url);
    commit({ kind: "clear" });
    commit({ kind: "mask", overlay });
    redraw();
    if (overlay.width !== ui.canvas.width || overlay.height !== ui.canvas.height) {
      say(`the mask is ${overlay.width}×${overlay.height}, the photo ${ui.canvas.width}×${ui.canvas.height}: scaled to fit`);
    } else {
      say(`mask ${file.name} loaded`);
    }
  };
  img.onerror = () => { URL.revokeObjectURL(url); say(`${file.name}: the browser cannot decode this mask`, true); };
  img.src = url;
});

// ------------------------------------------------------------------ inpainting

// The painted area as a PNG at the photo's size: white = hole, black = keep.
function maskBlob() {
  const { width, height } = ui.canvas;
  const painted = ctx.getImageData(0, 0, width, height).data;
  const out = document.createElement("canvas");
  out.width = width;
  out.height = height;
  const octx = out.getContext("2d");
  const pixels = octx.createImageData(width, height);
  const d = pixels.data;
  let holes = 0;
  for (let i = 0; i < d.length; i += 4) {
    const v = painted[i + 3] >= 128 ? 255 : 0;
    holes += v ? 1 : 0;
    d[i] = d[i + 1] = d[i + 2] = v;
    d[i + 3] = 255;
  }
  octx.putImageData(pixels, 0, 0);
  return new Promise((resolve) => out.toBlob((blob) => resolve({ blob, holes }), "image/png"));
}

function setBusy(busy) {
  state.busy = busy;
  ui.inpaint.textContent = busy ? "Inpainting…" : "Inpaint";
  ui.inpaint.classList.toggle("busy", busy);
  ui.stage.setAttribute("aria-busy", String(busy));
  updateButtons();
}

async function inpaint() {
  if (!state.sourceBlob || state.busy) return;
  const { blob, holes } = await maskBlob();
  if (!holes) { say("paint over what should go first (or load a mask file)", true); return; }
  const form = new FormData();
  form.append("image", state.sourceBlob, `${state.sourceName}`);
  form.append("mask", blob, "mask.png");
  form.append("strategy", ui.strategy.value);
  form.append("format", "png");
  setBusy(true);
  say("inpainting…");
  const started = performance.now();
  try {
    const response = await fetch("/api/v1/inpaint", { method: "POST", body: form, headers: authHeaders() });
    if (!response.ok) { say(await apiError(response), true); return; }
    const result = await response.blob();
    showResult(result, true);
    say(`done in ${((performance.now() - started) / 1000).toFixed(1)} s; hold Compare (or C) to see the original`);
  } catch (err) {
    say(`request failed: ${err.message}`, true);
  } finally {
    setBusy(false);
  }
}

// Show (or hide, with visible false) the result over the photo; null forgets it.
function showResult(blob, visible = true) {
  if (blob !== state.resultBlob) {
    if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
    state.resultBlob = blob;
    state.resultUrl = blob ? URL.createObjectURL(blob) : null;
    if (blob) {
      ui.result.src = state.resultUrl;
      ui.download.href = state.resultUrl;
      ui.download.download = `${state.sourceName}-inpainted.png`;
    } else {
      ui.result.removeAttribute("src");
      ui.download.removeAttribute("href");
    }
  }
  const shown = Boolean(blob) && visible;
  ui.result.hidden = !shown;
  ui.canvas.style.opacity = shown ? "0" : "";
  updateButtons();
}

function comparing(on) {
  if (!state.resultBlob || ui.compare.disabled) return;
  ui.result.hidden = on;
}

ui.inpaint.addEventListener("click", inpaint);
ui.compare.addEventListener("pointerdown", () => comparing(true));
for (const name of ["pointerup", "pointerleave", "pointercancel"]) {
  ui.compare.addEventListener(name, () => comparing(false));
}
ui.continue.addEventListener("click", () => {
  if (state.resultBlob) setSource(state.resultBlob, `${state.sourceName}`);
});

function updateButtons() {
  const loaded = Boolean(state.sourceBlob);
  const resultShown = Boolean(state.resultBlob) && !ui.result.hidden;
  ui.inpaint.disabled = !loaded || state.busy;
  ui.undo.disabled = !state.ops.length || state.busy;
  ui.redo.disabled = !state.redo.length || state.busy;
  ui.clear.disabled = !loaded || state.busy;
  ui.compare.disabled = !state.resultBlob;
  ui.continue.disabled = !state.resultBlob || state.busy;
  ui.download.classList.toggle("disabled", !state.resultBlob);
  ui.download.setAttribute("aria-disabled", String(!state.resultBlob));
  ui.wrap.dataset.view = resultShown ? "result" : "edit";
}

// ------------------------------------------------------------------ keys

document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement && event.target.type !== "range") return;
  const key = event.key.toLowerCase();
  if ((event.ctrlKey || event.metaKey) && key === "z") {
    event.preventDefault();
    if (event.shiftKey) redo(); else undo();
  } else if ((event.ctrlKey || event.metaKey) && key === "y") {
    event.preventDefault();
    redo();
  } else if (event.key === "[") {
    setSize(Number(ui.size.value) * 0.8);
  } else if (event.key === "]") {
    setSize(Number(ui.size.value) * 1.25 + 1);
  } else if (key === "b" && !event.ctrlKey) {
    setTool(false);
  } else if (key === "e" && !event.ctrlKey) {
    setTool(true);
  } else if (key === "c" && !event.ctrlKey && !event.repeat) {
    comparing(true);
  }
});
document.addEventListener("keyup", (event) => {
  if (event.key.toLowerCase() === "c") comparing(false);
});

setSize(ui.size.value);
updateButtons();
loadModelInfo();
