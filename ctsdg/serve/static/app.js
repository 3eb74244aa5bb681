// ctsdg serve: the inpainting page. Plain JavaScript, no build step, nothing fetched from elsewhere.
//
// The image being edited (the photo, then each result) is `current-image`; the mask canvas has
// its full resolution and both are scaled together on screen by the zoom, so strokes are recorded
// in photo pixels. The view is a zoom and an offset of the photo's top-left corner in the stage.
// History is one list of steps: mask operations (kept as operations, not bitmaps, so undo costs
// no memory on large photos) and inpaintings (the image before, the mask that was sent, the
// image after). A request belongs to the photo it was sent for; opening another photo cancels it.
"use strict";

const $ = (id) => document.getElementById(id);
const ui = {
  modelInfo: $("model-info"), tokenForm: $("token-form"), tokenInput: $("token-input"),
  imageInput: $("image-input"), maskInput: $("mask-input"),
  brush: $("brush-button"), eraser: $("eraser-button"),
  size: $("brush-size"), sizeValue: $("brush-size-value"),
  undo: $("undo-button"), redo: $("redo-button"), clear: $("clear-button"),
  strategy: $("strategy"), strategyHelp: $("strategy-help"), inpaint: $("inpaint-button"), cancel: $("cancel-button"),
  compare: $("compare-button"), download: $("download-link"), message: $("message"),
  zoomOut: $("zoom-out-button"), zoomLevel: $("zoom-level"), zoomIn: $("zoom-in-button"),
  fit: $("fit-button"), menuButton: $("menu-button"), menu: $("menu"),
  maskDownload: $("mask-download-button"), copy: $("copy-button"), close: $("close-button"),
  help: $("help-button"), helpDialog: $("help-dialog"),
  stage: $("stage"), hint: $("empty-hint"), wrap: $("canvas-wrap"),
  current: $("current-image"), original: $("source-image"), result: $("result-image"),
  canvas: $("mask-canvas"), cursor: $("brush-cursor"),
};
const MASK_COLOUR = "rgb(255, 40, 40)";
const ctx = ui.canvas.getContext("2d");
const MAX_ZOOM = 32;
// What the server is asked to answer in, from the photo's own bytes; other formats come back PNG.
const EXTENSIONS = { jpeg: ["jpg", "jpeg"], png: ["png"], webp: ["webp"] };

const state = {
  photo: null, // {id, name, ext, format, width, height, original: version}
  current: null, // the version being edited: {blob, url}; the photo's own, or a result
  ops: [], // mask operations on the current image, replayed on undo
  undo: [], // steps: {kind: "op", op} or {kind: "inpaint", before, ops, after}
  redo: [],
  stroke: null, // the operation being painted
  erasing: false,
  request: null, // the inpainting being waited for: {controller, photo}
  latest: null, // the latest result's version (result-image)
  urls: [], // object URLs of this photo's versions, revoked when it is closed
  view: { zoom: 1, x: 0, y: 0, fitted: true },
  opening: 0, // the latest photo being decoded (an older one finishing late is dropped)
};
let nextPhotoId = 1;
// A touch screen without a mouse: no keyboard hints (the same query hides them in style.css).
const touchOnly = () => matchMedia("(hover: none) and (pointer: coarse)").matches;

// ------------------------------------------------------------------ messages and the API

function say(text, isError = false) {
  ui.message.textContent = text;
  ui.message.classList.toggle("error", isError);
}

// After an action that worked, an error about an earlier one no longer applies.
function clearError() {
  if (ui.message.classList.contains("error")) say("");
}

function token() {
  return sessionStorage.getItem("ctsdg-token") || "";
}

function authHeaders() {
  return token() ? { Authorization: `Bearer ${token()}` } : {};
}

// A readable message from an API error response (JSON {"error": ...}, or whatever came back).
async function apiError(response) {
  let detail = `${response.status} ${response.statusText}`;
  let error = "";
  try {
    const body = await response.json();
    if (body && body.error) { error = body.error; detail = `${response.status}: ${error}`; }
  } catch (_) { /* not JSON: keep the status line */ }
  if (response.status === 401) {
    askForToken();
    // The server says which (`token missing` / `token wrong`); the page knows whether it sent one.
    const wrong = /token wrong/.test(error) || (!/token missing/.test(error) && Boolean(token()));
    return wrong
      ? "401: the access token was not accepted (wrong token); enter the right one under More"
      : "401: this server needs an access token; enter it under More";
  }
  if (response.status === 503 && response.headers.get("Retry-After")) {
    detail += ` (retry in ${response.headers.get("Retry-After")} s)`;
  }
  return detail;
}

function askForToken() {
  openMenu(true);
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
    say(detail, true);
    return;
  }
  const m = await response.json();
  ui.modelInfo.textContent =
    `${m.name} · ${m.structure} structure · ${m.size}×${m.size} input · width ${m.width} · ${m.device}, ${m.precision}`;
  ui.modelInfo.title = `${m.checkpoint} (${m.format})`;
  clearError();
}

ui.tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem("ctsdg-token", ui.tokenInput.value.trim());
  openMenu(false);
  say("");
  loadModelInfo();
});

// ------------------------------------------------------------------ the menu and the help

function openMenu(open) {
  ui.menu.hidden = !open;
  ui.menuButton.setAttribute("aria-expanded", String(open));
}
ui.menuButton.addEventListener("click", () => openMenu(ui.menu.hidden));
document.addEventListener("pointerdown", (event) => {
  if (!ui.menu.hidden && !event.target.closest(".menu-holder")) openMenu(false);
});
ui.help.addEventListener("click", () => ui.helpDialog.showModal());
$("help-menu-button").addEventListener("click", () => { openMenu(false); ui.helpDialog.showModal(); });

// The strategies in a sentence each (the server's names are the option values).
const STRATEGY_HELP = {
  auto: "Crop when the painted areas are small parts of a large photo, shrink otherwise.",
  resize: "The whole photo is shrunk to the model's input, filled, and the fill enlarged back: quick, but soft on large photos.",
  crop: "Each painted area is filled from a square around it at (near) full resolution: sharp, best for small areas.",
  original: "The whole photo at its own size, up to the server's pixel limit: the sharpest, and the slowest.",
};
function describeStrategy() { ui.strategyHelp.textContent = STRATEGY_HELP[ui.strategy.value] || ""; }
ui.strategy.addEventListener("change", describeStrategy);

// ------------------------------------------------------------------ opening a photo

function newVersion(blob) {
  const version = { blob, url: URL.createObjectURL(blob) };
  state.urls.push(version.url);
  return version;
}

// The format from the file's first bytes (a file's type is only guessed from its name).
async function sniffFormat(blob) {
  const b = new Uint8Array(await blob.slice(0, 12).arrayBuffer());
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return "jpeg";
  const text = String.fromCharCode(...b);
  if (text.startsWith("RIFF") && text.slice(8, 12) === "WEBP") return "webp";
  return "png";
}

function decodes(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("the browser cannot decode this image"));
    img.src = url;
  });
}

async function setSource(blob, name) {
  name = name || "image";
  if (!blob || !blob.type.startsWith("image/")) {
    say(`${name} is not an image`, true);
    return;
  }
  const opening = ++state.opening;
  const url = URL.createObjectURL(blob);
  let img, format;
  try {
    [img, format] = await Promise.all([decodes(url), sniffFormat(blob)]);
  } catch (err) {
    URL.revokeObjectURL(url);
    if (opening === state.opening) say(`${name}: ${err.message}`, true);
    return;
  }
  if (opening !== state.opening) { URL.revokeObjectURL(url); return; } // another one was opened since
  const cancelled = cancelRequest();
  closePhoto();
  state.urls.push(url);
  const stem = name.replace(/\.[^.]*$/, "") || "image";
  const own = (name.match(/\.([^.]+)$/) || [])[1];
  const ext = own && EXTENSIONS[format].includes(own.toLowerCase()) ? own : EXTENSIONS[format][0];
  const original = { blob, url };
  state.photo = { id: nextPhotoId++, name: stem, ext, format, width: img.naturalWidth, height: img.naturalHeight, original };
  ui.original.src = url;
  setCurrent(original);
  ui.canvas.width = img.naturalWidth;
  ui.canvas.height = img.naturalHeight;
  ui.hint.hidden = true;
  ui.wrap.hidden = false;
  fit();
  redraw();
  const note = cancelled ? "; the inpainting of the previous photo was cancelled" : "";
  say(`${name}: ${img.naturalWidth}×${img.naturalHeight} ${format.toUpperCase()}: paint over what should go${note}`);
}

// Forget the photo, its history and its results (the page as it was at start).
function closePhoto() {
  cancelRequest();
  for (const url of state.urls) URL.revokeObjectURL(url);
  Object.assign(state, { photo: null, current: null, ops: [], undo: [], redo: [], stroke: null, latest: null, urls: [] });
  for (const img of [ui.current, ui.original, ui.result]) img.removeAttribute("src");
  ui.download.removeAttribute("href");
  ui.canvas.width = ui.canvas.height = 0;
  ui.wrap.hidden = true;
  ui.hint.hidden = false;
  comparing(false);
  updateButtons();
}

ui.imageInput.addEventListener("change", () => {
  const file = ui.imageInput.files[0];
  if (file) setSource(file, file.name);
  ui.imageInput.value = "";
});
ui.close.addEventListener("click", () => {
  const name = state.photo ? state.photo.name : "";
  const cancelled = cancelRequest();
  closePhoto();
  openMenu(false);
  say(name ? `${name} closed${cancelled ? "; its inpainting was cancelled" : ""}` : "");
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

// ------------------------------------------------------------------ zoom and pan

function stagePoint(event) { // client coordinates -> the stage's
  const box = ui.stage.getBoundingClientRect();
  return [event.clientX - box.left, event.clientY - box.top];
}

function fitZoom() {
  const box = ui.stage.getBoundingClientRect();
  return Math.min(1, (box.width - 16) / ui.canvas.width, (box.height - 16) / ui.canvas.height);
}

function applyView() {
  if (!state.photo) return;
  const { zoom, x, y } = state.view;
  Object.assign(ui.wrap.style, {
    left: `${x}px`, top: `${y}px`,
    width: `${ui.canvas.width * zoom}px`, height: `${ui.canvas.height * zoom}px`,
  });
  ui.wrap.classList.toggle("pixels", zoom >= 2);
  ui.zoomLevel.textContent = `${Math.round(zoom * 100)}%`;
}

// The photo scaled to fit the stage (never enlarged) and centred.
function fit() {
  if (!state.photo) return;
  const box = ui.stage.getBoundingClientRect();
  const zoom = Math.max(fitZoom(), 1e-3);
  state.view = {
    zoom,
    x: (box.width - ui.canvas.width * zoom) / 2,
    y: (box.height - ui.canvas.height * zoom) / 2,
    fitted: true,
  };
  applyView();
}

// Zoom to `zoom`, keeping the photo point under stage point (sx, sy) where it is.
function zoomAt(sx, sy, zoom) {
  if (!state.photo) return;
  const v = state.view;
  zoom = Math.min(MAX_ZOOM, Math.max(Math.min(fitZoom(), 1) / 4, zoom));
  const px = (sx - v.x) / v.zoom, py = (sy - v.y) / v.zoom;
  state.view = { zoom, x: sx - px * zoom, y: sy - py * zoom, fitted: false };
  applyView();
}

function zoomCentre(factor) {
  const box = ui.stage.getBoundingClientRect();
  zoomAt(box.width / 2, box.height / 2, state.view.zoom * factor);
}

function panBy(dx, dy) {
  state.view.x += dx;
  state.view.y += dy;
  state.view.fitted = false;
  applyView();
}

ui.stage.addEventListener("wheel", (event) => {
  if (!state.photo) return;
  event.preventDefault();
  const lines = event.deltaMode === 1 ? 16 : event.deltaMode === 2 ? 400 : 1;
  // ctrl + wheel is a trackpad's pinch: small steps, so a stronger factor
  const factor = Math.exp(-event.deltaY * lines * (event.ctrlKey ? 0.01 : 0.0015));
  const [sx, sy] = stagePoint(event);
  zoomAt(sx, sy, state.view.zoom * factor);
}, { passive: false });

ui.fit.addEventListener("click", fit);
ui.zoomIn.addEventListener("click", () => zoomCentre(1.25));
ui.zoomOut.addEventListener("click", () => zoomCentre(0.8));
ui.zoomLevel.addEventListener("click", () => zoomCentre(1 / state.view.zoom));
window.addEventListener("resize", () => { if (state.view.fitted) fit(); });

// ------------------------------------------------------------------ pointers: paint, pan, pinch

const touches = new Map(); // touch pointer id -> its last stage point
let gesture = null; // {kind: "pan", last} | {kind: "pinch", ...} | {kind: "rest"} (fingers left after a pinch)
let spaceHeld = false;

function toImage(event) {
  const rect = ui.canvas.getBoundingClientRect();
  return [(event.clientX - rect.left) * ui.canvas.width / rect.width,
          (event.clientY - rect.top) * ui.canvas.height / rect.height];
}

function pinchState() {
  const [a, b] = [...touches.values()];
  return { mid: [(a[0] + b[0]) / 2, (a[1] + b[1]) / 2], dist: Math.hypot(a[0] - b[0], a[1] - b[1]) || 1 };
}

function startPinch() {
  if (state.stroke) { state.stroke = null; redraw(); } // the first finger's start is not a stroke
  const { mid, dist } = pinchState();
  const v = state.view;
  gesture = { kind: "pinch", mid, dist, zoom: v.zoom, px: (mid[0] - v.x) / v.zoom, py: (mid[1] - v.y) / v.zoom };
  ui.cursor.hidden = true;
}

function movePinch() {
  const { mid, dist } = pinchState();
  const g = gesture;
  const zoom = Math.min(MAX_ZOOM, Math.max(Math.min(fitZoom(), 1) / 4, g.zoom * dist / g.dist));
  // the photo point first under the fingers' midpoint follows it (zoom and two-finger pan at once)
  state.view = { zoom, x: mid[0] - g.px * zoom, y: mid[1] - g.py * zoom, fitted: false };
  applyView();
}

ui.stage.addEventListener("pointerdown", (event) => {
  if (!state.photo) return;
  const point = stagePoint(event);
  if (event.pointerType === "touch") {
    touches.set(event.pointerId, point);
    if (touches.size === 2) { startPinch(); return; }
    if (touches.size > 2 || gesture) return;
  }
  const panning = event.button === 1 || (event.button === 0 && spaceHeld);
  if (!panning && (event.button !== 0 || event.target !== ui.canvas)) return;
  event.preventDefault();
  ui.stage.setPointerCapture(event.pointerId);
  if (panning) {
    gesture = { kind: "pan", last: point, pointerId: event.pointerId };
    ui.stage.classList.add("panning");
    ui.cursor.hidden = true;
    return;
  }
  if (state.request) { say("wait for the inpainting to finish (or Cancel it) before painting"); return; }
  state.stroke = { kind: "stroke", erase: state.erasing, size: Number(ui.size.value) / state.view.zoom, points: toImage(event) };
  drawStroke(state.stroke);
});

ui.stage.addEventListener("pointermove", (event) => {
  const point = stagePoint(event);
  if (touches.has(event.pointerId)) touches.set(event.pointerId, point);
  if (gesture && gesture.kind === "pinch") { if (touches.size >= 2) movePinch(); return; }
  if (gesture && gesture.kind === "pan") {
    if (event.pointerId !== gesture.pointerId) return;
    panBy(point[0] - gesture.last[0], point[1] - gesture.last[1]);
    gesture.last = point;
    return;
  }
  if (gesture) return;
  moveCursor(point, event.target === ui.canvas || Boolean(state.stroke));
  if (!state.stroke) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const e of (events.length ? events : [event])) state.stroke.points.push(...toImage(e));
  redraw();
  drawStroke(state.stroke);
});

function pointerEnd(event) {
  touches.delete(event.pointerId);
  if (gesture) {
    if (gesture.kind === "pan" && event.pointerId === gesture.pointerId) {
      gesture = null;
      ui.stage.classList.remove("panning");
    } else if (gesture.kind !== "pan") {
      gesture = touches.size ? { kind: "rest" } : null; // no painting until every finger is up
    }
    return;
  }
  if (!state.stroke) return;
  const op = state.stroke;
  state.stroke = null;
  if (event.type === "pointercancel") { redraw(); return; }
  commit(op);
  redraw();
}
ui.stage.addEventListener("pointerup", pointerEnd);
ui.stage.addEventListener("pointercancel", pointerEnd);
ui.stage.addEventListener("pointerleave", () => { if (!state.stroke) ui.cursor.hidden = true; });
ui.stage.addEventListener("mousedown", (event) => { if (event.button === 1) event.preventDefault(); }); // no autoscroll

// ------------------------------------------------------------------ painting

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

function pushStep(step) {
  state.undo.push(step);
  state.redo = [];
  clearError();
}

function commit(op) {
  state.ops.push(op);
  pushStep({ kind: "op", op });
  updateButtons();
}

function setCurrent(version) {
  state.current = version;
  ui.current.src = version.url;
  const edited = state.photo && version !== state.photo.original;
  if (edited) {
    ui.download.href = version.url;
    ui.download.download = `${state.photo.name}-inpainted.${state.photo.ext}`;
  } else {
    ui.download.removeAttribute("href");
  }
  updateButtons();
}

function stepBack() {
  if (state.request || !state.undo.length) return;
  const step = state.undo.pop();
  state.redo.push(step);
  if (step.kind === "op") state.ops.pop();
  else { setCurrent(step.before); state.ops = step.ops.slice(); }
  redraw();
  clearError();
}

function stepForward() {
  if (state.request || !state.redo.length) return;
  const step = state.redo.pop();
  state.undo.push(step);
  if (step.kind === "op") state.ops.push(step.op);
  else { setCurrent(step.after); state.ops = []; }
  redraw();
  clearError();
}

function setTool(erase) {
  state.erasing = erase;
  ui.brush.setAttribute("aria-pressed", String(!erase));
  ui.eraser.setAttribute("aria-pressed", String(erase));
}

let previewTimer = 0;
function setSize(value, preview = false) {
  const v = Math.max(Number(ui.size.min), Math.min(Number(ui.size.max), Math.round(value)));
  ui.size.value = String(v);
  ui.sizeValue.textContent = String(v);
  ui.cursor.style.width = ui.cursor.style.height = `${v}px`;
  if (!preview) return;
  // the brush as it will paint, in the middle of the stage, while the size changes
  const box = ui.stage.getBoundingClientRect();
  Object.assign(ui.cursor.style, { left: `${box.width / 2}px`, top: `${box.height / 2}px` });
  ui.cursor.classList.add("preview");
  ui.cursor.hidden = false;
  clearTimeout(previewTimer);
  previewTimer = setTimeout(() => { ui.cursor.classList.remove("preview"); ui.cursor.hidden = true; }, 900);
}

function moveCursor([x, y], over) {
  if (ui.cursor.classList.contains("preview")) { clearTimeout(previewTimer); ui.cursor.classList.remove("preview"); }
  ui.cursor.hidden = !over || spaceHeld;
  ui.cursor.style.left = `${x}px`;
  ui.cursor.style.top = `${y}px`;
}

ui.brush.addEventListener("click", () => setTool(false));
ui.eraser.addEventListener("click", () => setTool(true));
ui.size.addEventListener("input", () => setSize(ui.size.value, true));
ui.undo.addEventListener("click", stepBack);
ui.redo.addEventListener("click", stepForward);
ui.clear.addEventListener("click", () => { commit({ kind: "clear" }); redraw(); });

// A mask file: white (>= 50 % gray) = hole, as the API reads it; scaled to the photo if needed.
ui.maskInput.addEventListener("change", () => {
  const file = ui.maskInput.files[0];
  ui.maskInput.value = "";
  openMenu(false);
  if (!file) return;
  if (!state.photo) { say("open a photo before its mask", true); return; }
  if (state.request) { say("wait for the inpainting to finish (or Cancel it) first", true); return; }
  const photo = state.photo;
  const url = URL.createObjectURL(file);
  const img = new Image();
  img.onload = () => {
    URL.revokeObjectURL(url);
    if (state.photo !== photo) return;
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
  ui.inpaint.textContent = busy ? "Inpainting…" : "Inpaint";
  ui.inpaint.classList.toggle("busy", busy);
  ui.cancel.hidden = !busy;
  ui.stage.setAttribute("aria-busy", String(busy));
  updateButtons();
}

// Stop waiting for the running request (the server may still finish it; its answer is dropped).
function cancelRequest() {
  const request = state.request;
  if (!request) return false;
  state.request = null;
  request.controller.abort();
  setBusy(false);
  return true;
}

async function inpaint() {
  if (!state.photo || state.request) return;
  const photo = state.photo;
  const request = { controller: new AbortController(), photo };
  state.request = request; // busy from the first click: a second click finds it set
  setBusy(true);
  const live = () => state.request === request && state.photo === photo;
  try {
    say("preparing the mask…");
    const { blob, holes } = await maskBlob();
    if (!live()) return;
    if (!holes) { say("paint over what should go first (or load a mask file)", true); return; }
    const before = state.current;
    const ops = state.ops.slice();
    const form = new FormData();
    form.append("image", before.blob, `${photo.name}.${photo.ext}`);
    form.append("mask", blob, "mask.png");
    form.append("strategy", ui.strategy.value);
    form.append("format", photo.format);
    say("inpainting…");
    const started = performance.now();
    const response = await fetch("/api/v1/inpaint", {
      method: "POST", body: form, headers: authHeaders(), signal: request.controller.signal,
    });
    if (!live()) return;
    if (!response.ok) { const detail = await apiError(response); if (live()) say(detail, true); return; }
    const after = newVersion(await response.blob());
    const img = await decodes(after.url);
    if (!live()) return;
    if (img.naturalWidth !== photo.width || img.naturalHeight !== photo.height) {
      say(`the server answered a ${img.naturalWidth}×${img.naturalHeight} image for a ${photo.width}×${photo.height} photo`, true);
      return;
    }
    pushStep({ kind: "inpaint", before, ops, after });
    state.ops = [];
    state.latest = after;
    ui.result.src = after.url;
    setCurrent(after);
    redraw();
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    say(touchOnly()
      ? `done in ${seconds} s: paint again for another pass; hold Compare for the original, Undo to go back`
      : `done in ${seconds} s: paint again for another pass; hold Compare (or C) for the original, Ctrl+Z to undo`);
  } catch (err) {
    if (err.name !== "AbortError" && live()) say(`request failed: ${err.message}`, true);
  } finally {
    if (state.request === request) { state.request = null; setBusy(false); }
  }
}

function comparing(on) {
  const can = on && state.photo && state.current !== state.photo.original;
  ui.original.hidden = !can;
  ui.wrap.classList.toggle("comparing", Boolean(can));
}

ui.inpaint.addEventListener("click", inpaint);
ui.cancel.addEventListener("click", () => {
  if (cancelRequest()) say("cancelled: the result of that request will not be used");
});
ui.compare.addEventListener("pointerdown", () => comparing(true));
for (const name of ["pointerup", "pointerleave", "pointercancel"]) {
  ui.compare.addEventListener(name, () => comparing(false));
}

// ------------------------------------------------------------------ downloads and the clipboard

function saveBlob(url, name) {
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
}

ui.maskDownload.addEventListener("click", async () => {
  openMenu(false);
  if (!state.photo) return;
  const photo = state.photo;
  const { blob } = await maskBlob();
  const url = URL.createObjectURL(blob);
  saveBlob(url, `${photo.name}-mask.png`);
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  say(`saved ${photo.name}-mask.png (white = hole)`);
});

// The clipboard takes PNG only: a JPEG or WebP image is converted in the browser first.
async function pngOf(version) {
  if (version.blob.type === "image/png") return version.blob;
  const img = await decodes(version.url);
  const c = document.createElement("canvas");
  c.width = img.naturalWidth;
  c.height = img.naturalHeight;
  c.getContext("2d").drawImage(img, 0, 0);
  return new Promise((resolve) => c.toBlob(resolve, "image/png"));
}

ui.copy.addEventListener("click", async () => {
  openMenu(false);
  if (!state.current) return;
  if (!navigator.clipboard || !window.ClipboardItem) {
    say("this browser allows copying images only on secure (HTTPS) or localhost pages", true);
    return;
  }
  try {
    await navigator.clipboard.write([new ClipboardItem({ "image/png": pngOf(state.current) })]);
    say("copied the current image to the clipboard");
  } catch (err) {
    say(`copying failed: ${err.message}`, true);
  }
});

function download() {
  if (ui.download.classList.contains("disabled")) {
    say(state.photo ? "nothing to download yet: inpaint first" : "open a photo first");
    return;
  }
  ui.download.click();
}

// ------------------------------------------------------------------ buttons and keys

function updateButtons() {
  const loaded = Boolean(state.photo);
  const busy = Boolean(state.request);
  const edited = loaded && state.current !== state.photo.original;
  ui.inpaint.disabled = !loaded || busy;
  ui.undo.disabled = !state.undo.length || busy;
  ui.redo.disabled = !state.redo.length || busy;
  ui.clear.disabled = !loaded || busy;
  ui.compare.disabled = !edited;
  ui.download.classList.toggle("disabled", !edited);
  ui.download.setAttribute("aria-disabled", String(!edited));
  ui.maskDownload.disabled = !loaded;
  ui.copy.disabled = !loaded;
  ui.close.disabled = !loaded;
  ui.wrap.dataset.view = edited ? "result" : "photo";
  if (!loaded) ui.zoomLevel.textContent = "100%";
}

function typing(target) {
  return (target instanceof HTMLInputElement && target.type !== "range") || target instanceof HTMLSelectElement;
}

document.addEventListener("keydown", (event) => {
  const ctrl = event.ctrlKey || event.metaKey;
  const key = event.key.toLowerCase();
  if (ctrl && key === "s") { event.preventDefault(); download(); return; }
  if (typing(event.target) || ui.helpDialog.open) return;
  if (ctrl && key === "z") {
    event.preventDefault();
    if (event.shiftKey) stepForward(); else stepBack();
  } else if (ctrl && key === "y") {
    event.preventDefault();
    stepForward();
  } else if (ctrl || event.altKey) {
    return;
  } else if (event.key === " ") {
    if (event.target instanceof HTMLButtonElement) event.target.blur(); // Space pans, not clicks
    event.preventDefault();
    spaceHeld = true;
    ui.stage.classList.add("pan-ready");
    ui.cursor.hidden = true;
  } else if (event.key === "Escape") {
    if (!ui.menu.hidden) openMenu(false); else fit();
  } else if (event.key === "Enter" && !(event.target instanceof HTMLButtonElement || event.target instanceof HTMLAnchorElement)) {
    inpaint();
  } else if (event.key === "?") {
    ui.helpDialog.showModal();
  } else if (event.key === "[") {
    setSize(Number(ui.size.value) * 0.8, true);
  } else if (event.key === "]") {
    setSize(Number(ui.size.value) * 1.25 + 1, true);
  } else if (event.key === "+" || event.key === "=") {
    zoomCentre(1.25);
  } else if (event.key === "-") {
    zoomCentre(0.8);
  } else if (event.key === "0") {
    fit();
  } else if (event.key === "1") {
    zoomCentre(1 / state.view.zoom);
  } else if (key === "b") {
    setTool(false);
  } else if (key === "e") {
    setTool(true);
  } else if (key === "c" && !event.repeat) {
    comparing(true);
  }
});
document.addEventListener("keyup", (event) => {
  if (event.key.toLowerCase() === "c") comparing(false);
  if (event.key === " ") {
    spaceHeld = false;
    ui.stage.classList.remove("pan-ready");
  }
});
window.addEventListener("blur", () => { spaceHeld = false; ui.stage.classList.remove("pan-ready"); comparing(false); });

setSize(ui.size.value);
describeStrategy();
updateButtons();
loadModelInfo();
