"use strict";
// edgelive web console: status over server-sent events, preview over a WebSocket into
// Media Source Extensions (JPEG snapshots where MSE is missing), settings from the schema.

const $ = (id) => document.getElementById(id);
let csrf = "";

async function api(method, path, body) {
  const init = { method, headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) location.href = "/login";
  let doc = null;
  try { doc = await response.json(); } catch (e) { doc = { error: response.statusText }; }
  return { status: response.status, doc };
}

function text(el, value) { el.textContent = value === undefined || value === null ? "–" : value; }

function el(tag, attrs, children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const child of children || []) node.append(child);
  return node;
}

// -- status and events ----------------------------------------------------------------

// One LED as the box plays it: steady (`on`) or `durations` alternating on, off… seconds.
function drawLed(node, pattern) {
  const key = JSON.stringify(pattern);
  if (node.dataset.pattern === key) return;  // unchanged: the blinking keeps its phase
  node.dataset.pattern = key;
  for (const a of node.getAnimations()) a.cancel();
  const d = pattern.durations;
  node.classList.toggle("lit", !d.length && pattern.on);
  if (!d.length) return;
  const period = d.reduce((a, b) => a + b, 0);
  const frames = [];
  let t = 0;
  d.forEach((len, i) => {
    frames.push({ opacity: i % 2 ? 0.15 : 1, offset: t / period, easing: "step-end" });
    t += len;
  });
  frames.push({ opacity: 0.15, offset: 1 });
  node.animate(frames, { duration: period * 1000, iterations: Infinity });
}
const events = new Map();
let descriptions = {};

function fmtUptime(s) {
  s = Math.floor(s || 0);
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return (d ? d + " d " : "") + (h ? h + " h " : "") + m + " min " + (s % 60) + " s";
}

function fmtNet(w) {
  const n = (w && w.netstatus) || {};
  if (!n.videoWidth && !n.videoBitrate) return "–";
  return `${n.videoWidth}x${n.videoHeight} ${n.videoFPS} fps, video ${n.videoBitrate} kbps` +
    (n.netSpeed !== undefined ? `, net ${n.netSpeed} kbps` : "") +
    (n.queueDepth !== undefined ? `, queue ${n.queueDepth} (${n.backlogMs} ms)` : "") +
    (n.cache !== undefined ? `, buffer ${n.cache} s` : "");  // the player's
}

function renderStatus(s) {
  text($("version"), s.version);
  document.body.dataset.pusher = s.pusher.state;
  text($("st-pusher"), s.pusher.state);
  text($("st-player"), s.player.state);
  text($("st-privacy"), s.privacy ? "on" : "off");
  text($("st-mqtt"), s.mqtt);
  text($("st-rev"), s.rev);
  text($("st-uptime"), fmtUptime(s.uptime));
  const health = s.health || {};  // socTemp is null where the machine has no sensor
  const notes = [health.throttling && "throttling", health.underVoltage && "under-voltage",
    health.disk_low && `disk low (${health.diskFreeMB} MB free)`].filter(Boolean);
  text($("st-temp"), (typeof health.socTemp === "number" ? health.socTemp.toFixed(1) + " °C" : "–") +
    (notes.length ? " · " + notes.join(", ") : ""));
  text($("st-net"), fmtNet(s.pusher));
  text($("st-playnet"), fmtNet(s.player));
  const off = { on: false, durations: [] };
  const [green, red] = s.led_patterns || [off, off];
  drawLed($("led-green"), green);
  drawLed($("led-red"), red);
  text($("led-state"), String(s.leds).replace("_", " "));
  Object.assign(descriptions, s.descriptions || {});
  for (const e of s.events || []) events.set(`${e.src}/${e.seq}/${e.ts}`, e);
  while (events.size > 200) events.delete(events.keys().next().value);
  const last = [...events.values()].slice(-5).reverse();
  $("last-codes").replaceChildren(...last.map((e) => el("li", { class: level(e) }, [
    el("b", { text: `${e.code} ${e.name}` }), " ", descriptions[e.code] || e.msg])));
  renderEvents();
}

function level(e) { return e.code < 0 ? "error" : (isWarning(e.code) ? "warning" : "info"); }
function isWarning(code) {
  return (code >= 1101 && code < 1200) || (code >= 2101 && code < 2200) ||
    (code >= 3001 && code < 3100) || code === 5000;
}

function renderEvents() {
  const src = $("ev-src").value, lvl = $("ev-level").value;
  const rows = [...events.values()].reverse().filter((e) => (!src || e.src === src) &&
    (!lvl || (lvl === "error" ? level(e) === "error" : level(e) !== "info")));
  $("event-list").replaceChildren(...rows.map((e) => el("li", { class: level(e) }, [
    el("time", { text: new Date(e.ts).toLocaleTimeString() }), " ",
    el("span", { class: "src", text: e.src }), " ",
    el("b", { text: `${e.code} ${e.name}` }), " ", e.msg])));
}

function watchStatus() {
  const source = new EventSource("/api/stream");
  source.onmessage = (m) => renderStatus(JSON.parse(m.data));
  source.onerror = () => { source.close(); setTimeout(watchStatus, 2000); };
}

// -- actions -----------------------------------------------------------------------------

async function runAction(button) {
  if (button.dataset.confirm && !confirm(button.dataset.confirm)) return;
  const args = button.dataset.args ? JSON.parse(button.dataset.args) : {};
  button.disabled = true;
  const { doc } = await api("POST", "/api/cmd/" + button.dataset.cmd, args);
  button.disabled = false;
  text($("action-result"), `${button.textContent}: ` + (doc.ok ? "done" : doc.error || "failed"));
  $("action-result").className = doc.ok ? "" : "error";
}

// -- settings ----------------------------------------------------------------------------

let original = {};

function fieldInput(f) {
  const id = "cfg-" + f.key;
  let input;
  if (f.widget === "checkbox") {
    input = el("input", { type: "checkbox", id });
    input.checked = !!f.value;
  } else if (f.widget === "select") {
    input = el("select", { id }, f.choices.map((c) => el("option", { value: String(c), text: String(c) })));
    input.value = String(f.value);
  } else if (f.widget === "secret") {
    input = el("input", { type: "password", id, autocomplete: "new-password",
      placeholder: f.set ? "set (type to replace)" : "not set" });
  } else {
    input = el("input", { type: f.widget === "number" ? "text" : "text", id,
      inputmode: f.widget === "number" ? "decimal" : "text" });
    input.value = f.value === null || f.value === undefined || f.redacted ? "" :
      (Array.isArray(f.value) ? f.value.join(", ") : String(f.value));
    // a value with a hidden key is never edited in place: empty keeps it, typing replaces it
    if (f.redacted) input.placeholder = f.value + " (type a whole new value to replace)";
  }
  input.dataset.key = f.key;
  input.dataset.widget = f.widget;
  if (f.widget === "number") input.dataset.optional = f.optional ? "1" : "";
  if (f.widget === "list") input.dataset.item = f.item;
  return input;
}

function readInput(input) {
  const w = input.dataset.widget, v = input.value.trim();
  if (w === "checkbox") return input.checked;
  if (w === "select") { const n = Number(v); return v !== "" && !isNaN(n) ? n : v; }
  if (w === "number") {
    if (v === "") return input.dataset.optional ? null : v;
    const n = Number(v);
    return isNaN(n) ? v : n;  // a non-number goes to the box, which says what is wrong
  }
  if (w === "list") {
    const items = v === "" ? [] : v.split(",").map((x) => x.trim());
    return input.dataset.item === "number" ? items.map(Number) : items;
  }
  return input.value;
}

async function loadSettings() {
  const { doc } = await api("GET", "/api/settings");
  text($("settings-rev"), "rev " + doc.rev);
  original = {};
  const blocks = doc.sections.map((section) => {
    const rows = section.fields.map((f) => {
      const input = fieldInput(f);
      original[f.key] = f.widget === "secret" ? "" : JSON.stringify(readInput(input));
      const help = [f.description];
      if (f.allowed) help.push("Allowed: " + f.allowed);
      if (f.widget !== "secret") help.push("Default: " + (f.default === null ? "unset" : JSON.stringify(f.default)));
      return el("div", { class: "field" }, [
        el("label", { for: input.id, text: f.key.split(".").pop() }), input,
        el("small", { text: help.join(" · ") }),
        el("span", { class: "error field-error", id: "err-" + f.key, hidden: "" })]);
    });
    return el("details", { "data-section": section.name }, [el("summary", { text: "[" + section.name + "]" }), ...rows]);
  });
  $("settings-fields").replaceChildren(...blocks);
}

function changedPartial() {
  const partial = {};
  for (const input of $("settings-fields").querySelectorAll("[data-key]")) {
    const key = input.dataset.key, value = readInput(input);
    if (input.dataset.widget === "secret" ? value === "" : JSON.stringify(value) === original[key]) continue;
    const parts = key.split(".");
    let node = partial;
    for (const p of parts.slice(0, -1)) node = node[p] = node[p] || {};
    node[parts[parts.length - 1]] = value;
  }
  return partial;
}

async function saveSettings(event) {
  event.preventDefault();
  for (const e of document.querySelectorAll(".field-error")) { e.hidden = true; e.textContent = ""; }
  const partial = changedPartial();
  if (!Object.keys(partial).length) { text($("settings-result"), "nothing changed"); return; }
  const { status, doc } = await api("POST", "/api/settings", partial);
  if (status === 200 && doc.applied) {
    await loadSettings();  // the values now in force
    text($("settings-result"), "saved as rev " + doc.rev);
    $("settings-result").className = "ok";
    return;
  }
  $("settings-result").className = "error";
  text($("settings-result"), "not saved: " + (doc.errors || [{ msg: doc.error }]).map((e) => `${e.loc || ""} ${e.msg}`).join("; "));
  for (const e of doc.errors || []) {
    const slot = document.getElementById("err-" + e.loc);
    if (slot) {
      slot.textContent = e.msg;
      slot.hidden = false;
      slot.closest("details").open = true;
    }
  }
}

// -- preview -----------------------------------------------------------------------------

const preview = { ws: null, on: false, ms: null, sb: null, queue: [], timer: null };

function codecOf(init) {
  for (let i = 4; i + 8 < init.length; i++) {  // the avcC box: profile, compat, level
    if (init[i] === 0x61 && init[i + 1] === 0x76 && init[i + 2] === 0x63 && init[i + 3] === 0x43) {
      const hex = (b) => b.toString(16).padStart(2, "0");
      return `avc1.${hex(init[i + 5])}${hex(init[i + 6])}${hex(init[i + 7])}`;
    }
  }
  return "avc1.42e01f";
}

function resetMedia(init) {
  const video = $("video");
  preview.queue = [];
  preview.sb = null;
  const ms = new MediaSource();
  preview.ms = ms;
  video.src = URL.createObjectURL(ms);
  ms.addEventListener("sourceopen", () => {
    URL.revokeObjectURL(video.src);
    const sb = ms.addSourceBuffer(`video/mp4; codecs="${codecOf(init)}"`);
    sb.mode = "segments";
    sb.addEventListener("updateend", pump);
    preview.sb = sb;
    preview.queue.unshift(init);
    pump();
  }, { once: true });
}

function pump() {
  const sb = preview.sb, video = $("video");
  if (!sb || sb.updating) return;
  const b = video.buffered;
  if (b.length) {
    const end = b.end(b.length - 1);
    // live: stay close to the newest frame (play faster when a little behind, jump when
    // far behind); drop what was played long ago
    const behind = end - video.currentTime;
    if (behind > 1.0 || video.currentTime < b.start(0)) {
      video.currentTime = Math.max(b.start(b.length - 1), end - 0.05);
    } else {
      video.playbackRate = behind > 0.12 ? 1.5 : 1.0;
    }
    if (video.paused) video.play().catch(() => {});
    if (video.currentTime - b.start(0) > 20) { sb.remove(b.start(0), video.currentTime - 10); return; }
  }
  const next = preview.queue.shift();
  if (next) {
    try { sb.appendBuffer(next); } catch (e) { preview.queue = []; }
  }
}

function startPreview() {
  preview.on = true;
  text($("preview-toggle"), "Stop preview");
  if (!window.MediaSource || !MediaSource.isTypeSupported('video/mp4; codecs="avc1.42e01f"')) {
    stills();
    return;
  }
  text($("preview-mode"), "(live)");
  const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/api/preview");
  ws.binaryType = "arraybuffer";
  preview.ws = ws;
  ws.onmessage = (m) => {
    const data = new Uint8Array(m.data);
    const kind = String.fromCharCode(data[0]), body = data.subarray(1);
    if (kind === "I") resetMedia(body);
    else if (preview.sb || preview.ms) {
      preview.queue.push(body);
      if (preview.queue.length > 60) preview.queue.splice(0, preview.queue.length - 30);
      pump();
    }
  };
  ws.onclose = () => { if (preview.on && preview.ws === ws) setTimeout(startPreview, 2000); };
}

function stills() {  // no MSE: the camera's JPEG snapshot, once a second
  text($("preview-mode"), "(snapshots)");
  $("video").hidden = true;
  const img = $("still");
  img.hidden = false;
  const next = () => {
    if (!preview.on) return;
    img.src = "/api/snapshot/pusher?t=" + Date.now();
    preview.timer = setTimeout(next, 1000);
  };
  next();
}

function stopPreview() {
  preview.on = false;
  text($("preview-toggle"), "Start preview");
  text($("preview-mode"), "(stopped)");
  if (preview.ws) { const ws = preview.ws; preview.ws = null; ws.close(); }
  clearTimeout(preview.timer);
}

// -- start -------------------------------------------------------------------------------

async function main() {
  const { doc } = await api("GET", "/api/session");
  csrf = doc.csrf;
  for (const b of document.querySelectorAll("[data-cmd]")) b.addEventListener("click", () => runAction(b));
  $("ev-src").addEventListener("change", renderEvents);
  $("ev-level").addEventListener("change", renderEvents);
  $("settings-form").addEventListener("submit", saveSettings);
  $("logout").addEventListener("click", async () => {
    await api("POST", "/logout");
    location.href = "/login";
  });
  $("preview-toggle").addEventListener("click", () => (preview.on ? stopPreview() : startPreview()));
  document.addEventListener("visibilitychange", () => {
    if (document.hidden && preview.on) { stopPreview(); preview.resume = true; }
    else if (!document.hidden && preview.resume) { preview.resume = false; startPreview(); }
  });
  watchStatus();
  loadSettings();
  startPreview();
}

main();
