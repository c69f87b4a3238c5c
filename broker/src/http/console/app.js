// The Sluice web console: a hash-routed page over the broker's JSON API. Everything shown is
// built with DOM nodes and textContent (record keys and values are untrusted input).
"use strict";

const POLL_MS = 2000;
const HISTORY = 90; // samples kept per chart (3 minutes at POLL_MS)

// ---- small helpers ----------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "onclick" || k === "onchange" || k === "oninput" || k === "onsubmit") node[k] = v;
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function table(headers, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

function num(n) { return el("td", { class: "num" }, n === undefined || n === null ? "" : fmt(n)); }

function fmt(n) {
  if (typeof n !== "number") return String(n);
  return Number.isInteger(n) ? n.toLocaleString("en-US") : n.toFixed(2);
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
}

function badge(state) { return el("span", { class: "badge " + state }, state); }

async function api(path, options) {
  const res = await fetch(path, options);
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = text; }
  if (!res.ok) throw new Error((body && body.message) || `${res.status} ${res.statusText}`);
  return body;
}

function setStatus(text, bad) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.className = bad ? "error" : "muted";
}

// ---- bytes as text, JSON or hex ------------------------------------------------------------------

function hexToBytes(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(i * 2, 2), 16);
  return out;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function render(hex, format) {
  if (hex === null || hex === undefined) return "null";
  if (format === "hex") return hex.replace(/(..)/g, "$1 ").trim();
  let text;
  try { text = utf8.decode(hexToBytes(hex)); } catch (_) { return hex.replace(/(..)/g, "$1 ").trim(); }
  if (format === "json") {
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch (_) { return text; }
  }
  return text;
}

// ---- charts ----------------------------------------------------------------------------------------

// A rolling line chart on a canvas; `push` adds a sample and redraws.
class Chart {
  constructor(title, unit) {
    this.title = title;
    this.unit = unit || "";
    this.values = [];
    this.canvas = el("canvas", { width: 320, height: 110 });
    this.label = el("span", {});
    this.node = el("div", { class: "chart" }, el("div", { class: "title" }, title, " ", this.label), this.canvas);
  }
  push(v) {
    this.values.push(v);
    if (this.values.length > HISTORY) this.values.shift();
    this.label.textContent = "now: " + fmt(Math.round(v * 100) / 100) + this.unit;
    this.draw();
  }
  draw() {
    const ctx = this.canvas.getContext("2d");
    const { width: w, height: h } = this.canvas;
    ctx.clearRect(0, 0, w, h);
    const max = Math.max(1, ...this.values);
    ctx.strokeStyle = "#e3e6eb";
    ctx.strokeRect(0, 0, w, h);
    ctx.fillStyle = "#6b7280";
    ctx.font = "10px sans-serif";
    ctx.fillText(fmt(Math.round(max * 100) / 100), 4, 11);
    ctx.strokeStyle = "#2563eb";
    ctx.beginPath();
    this.values.forEach((v, i) => {
      const x = (i / (HISTORY - 1)) * (w - 2) + 1;
      const y = h - 2 - (v / max) * (h - 16);
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
}

// Turns a running total into a per-second rate between two polls.
class Rate {
  constructor() { this.last = null; }
  next(total, timeMs) {
    const prev = this.last;
    this.last = { total, timeMs };
    if (!prev || timeMs <= prev.timeMs || total < prev.total) return 0;
    return ((total - prev.total) * 1000) / (timeMs - prev.timeMs);
  }
}

// ---- /metrics parsing (the transform latency and error charts) -----------------------------------

function parseMetrics(text) {
  const out = [];
  const line = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
  const label = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  for (const l of text.split("\n")) {
    if (!l || l.startsWith("#")) continue;
    const m = line.exec(l);
    if (!m) continue;
    const labels = {};
    for (const lm of (m[2] || "").matchAll(label)) labels[lm[1]] = lm[2].replace(/\\(.)/g, "$1");
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

function sumWhere(samples, name, pred) {
  return samples.filter((s) => s.name === name && pred(s.labels)).reduce((a, s) => a + s.value, 0);
}

// ---- views -------------------------------------------------------------------------------------------

const view = () => document.getElementById("view");
// State that lives across polls of one view (charts, rates); reset when the route changes.
let current = { route: null, refresh: null, charts: {}, rates: {} };

function chart(key, title, unit) {
  if (!current.charts[key]) current.charts[key] = new Chart(title, unit);
  return current.charts[key];
}

function rate(key) {
  if (!current.rates[key]) current.rates[key] = new Rate();
  return current.rates[key];
}

async function overview() {
  const stats = await api("/v1/stats");
  const totals = [0, 0, 0, 0];
  for (const t of Object.values(stats.topics)) {
    totals[0] += t.bytes_in; totals[1] += t.records_in; totals[2] += t.bytes_out; totals[3] += t.records_out;
  }
  const names = [["bytes_in", "Bytes in /s", " B/s"], ["records_in", "Records in /s", "/s"],
    ["bytes_out", "Bytes out /s", " B/s"], ["records_out", "Records out /s", "/s"]];
  const charts = names.map(([k, title, unit], i) => {
    const c = chart(k, title, unit);
    c.push(rate(k).next(totals[i], stats.time_ms));
    return c.node;
  });
  const topics = await api("/v1/topics");
  const groups = await api("/v1/groups");
  const transforms = await api("/v1/transforms");
  return [
    el("h2", {}, "Overview"),
    stats.metrics_enabled ? null : el("p", { class: "error" }, "metrics.enabled is false: throughput counters are off."),
    el("div", { class: "charts" }, charts),
    el("p", {}, `${topics.length} topics, ${groups.length} consumer groups, ${transforms.length} transforms.`),
  ];
}

async function topics() {
  const [list, stats] = await Promise.all([api("/v1/topics"), api("/v1/stats")]);
  const rows = list.map((t) => {
    const inRate = rate("in:" + t.name).next(t.records_in, stats.time_ms);
    const outRate = rate("out:" + t.name).next(t.records_out, stats.time_ms);
    return el("tr", { "data-topic": t.name },
      el("td", {}, el("a", { href: "#/topics/" + encodeURIComponent(t.name) }, t.name)),
      num(t.partitions), el("td", { class: "num records" }, fmt(t.records)), el("td", { class: "num" }, bytes(t.size_bytes)),
      num(Math.round(inRate * 10) / 10), num(Math.round(outRate * 10) / 10),
      el("td", {}, el("a", { href: `#/topics/${encodeURIComponent(t.name)}/0` }, "browse")));
  });
  return [el("h2", {}, "Topics"),
    list.length ? table(["Topic", "Partitions", "Records", "Size", "Records in /s", "Records out /s", ""], rows)
      : el("p", { class: "muted" }, "No topics yet.")];
}

async function topic(name) {
  const [t, stats] = await Promise.all([api("/v1/topics/" + encodeURIComponent(name)), api("/v1/stats")]);
  const s = stats.topics[name] || { bytes_in: 0, records_in: 0, bytes_out: 0, records_out: 0 };
  const c1 = chart("in", "Records in /s", "/s");
  c1.push(rate("in").next(s.records_in, stats.time_ms));
  const c2 = chart("out", "Records out /s", "/s");
  c2.push(rate("out").next(s.records_out, stats.time_ms));
  const parts = t.partitions.map((p) => el("tr", {},
    num(p.partition), num(p.log_start_offset), num(p.high_watermark), num(p.high_watermark - p.log_start_offset),
    el("td", { class: "num" }, bytes(p.size_bytes)), num(p.segments),
    el("td", {}, el("a", { href: `#/topics/${encodeURIComponent(name)}/${p.partition}` }, "browse"))));
  const configs = Object.entries(t.configs).map(([k, v]) => el("tr", {},
    el("td", {}, k), el("td", {}, v.value === null ? "(sensitive)" : v.value), el("td", { class: "muted" }, v.source)));
  return [
    el("h2", {}, "Topic ", name),
    el("p", {}, `${fmt(t.records)} records, ${bytes(t.size_bytes)}`),
    el("div", { class: "charts" }, c1.node, c2.node),
    el("h3", {}, "Partitions"),
    table(["Partition", "Log start", "High watermark", "Records", "Size", "Segments", ""], parts),
    el("h3", {}, "Configs"),
    table(["Name", "Value", "Source"], configs),
  ];
}

// The message browser: one partition from an offset or a time; does not poll (a page is a page).
async function browser(name, partition, params) {
  const t = await api("/v1/topics/" + encodeURIComponent(name));
  const mode = params.get("timestamp") ? "timestamp" : "offset";
  const query = new URLSearchParams();
  if (params.get("timestamp")) query.set("timestamp", String(Date.parse(params.get("timestamp")) || params.get("timestamp")));
  else if (params.get("offset")) query.set("offset", params.get("offset"));
  query.set("limit", params.get("limit") || "50");
  const page = await api(`/v1/topics/${encodeURIComponent(name)}/partitions/${partition}/records?${query}`);
  const format = params.get("format") || "text";

  const partitionSelect = el("select", { name: "partition" },
    t.partitions.map((p) => el("option", { value: p.partition, selected: p.partition === partition ? "" : null }, "partition " + p.partition)));
  const modeSelect = el("select", { name: "mode" },
    el("option", { value: "offset", selected: mode === "offset" ? "" : null }, "from offset"),
    el("option", { value: "timestamp", selected: mode === "timestamp" ? "" : null }, "from time"));
  const from = el("input", { name: "from", size: 24, value: params.get(mode) || "", placeholder: mode === "offset" ? String(page.log_start_offset) : "2024-01-01T00:00:00Z" });
  const limit = el("input", { name: "limit", size: 5, value: params.get("limit") || "50" });
  const formatSelect = el("select", { name: "format" },
    ["text", "json", "hex"].map((f) => el("option", { value: f, selected: f === format ? "" : null }, f)));
  const search = el("input", { id: "search", placeholder: "search this page", size: 24 });

  const go = (overrides) => {
    const q = new URLSearchParams();
    const m = modeSelect.value;
    if (from.value) q.set(m, from.value);
    q.set("limit", limit.value || "50");
    q.set("format", formatSelect.value);
    for (const [k, v] of Object.entries(overrides || {})) { q.delete("offset"); q.delete("timestamp"); q.set(k, v); }
    location.hash = `#/topics/${encodeURIComponent(name)}/${partitionSelect.value}?${q}`;
  };
  const load = el("button", { onclick: () => go() }, "Load");
  const next = el("button", { onclick: () => go({ offset: String(page.next_offset) }) }, "Next page");
  formatSelect.onchange = () => go();

  const rows = page.records.map((r) => {
    const headers = r.headers.map(([k, v]) => `${k}: ${render(v, "text")}`).join("\n");
    const key = render(r.key, format);
    const value = render(r.value, format);
    return el("tr", { class: "record", "data-offset": r.offset, "data-text": (key + "\n" + value + "\n" + headers).toLowerCase() },
      num(r.offset), el("td", {}, r.timestamp >= 0 ? new Date(r.timestamp).toISOString() : String(r.timestamp)),
      el("td", { class: "key" }, el("pre", {}, key)), el("td", { class: "value" }, el("pre", {}, value)),
      el("td", {}, el("pre", {}, headers)));
  });
  search.oninput = () => {
    const needle = search.value.toLowerCase();
    for (const row of rows) row.classList.toggle("hidden", needle !== "" && !row.dataset.text.includes(needle));
  };
  return [
    el("h2", {}, el("a", { href: "#/topics/" + encodeURIComponent(name) }, name), " · messages"),
    el("div", { class: "controls" }, partitionSelect, modeSelect, from, "limit", limit, formatSelect, load, next, search),
    el("p", { class: "muted" }, `offsets ${page.log_start_offset}..${page.high_watermark}; showing ${page.records.length} from ${page.from}`),
    table(["Offset", "Timestamp", "Key", "Value", "Headers"], rows),
  ];
}

async function groups() {
  const list = await api("/v1/groups");
  if (!list.length) return [el("h2", {}, "Consumer groups"), el("p", { class: "muted" }, "No consumer groups yet.")];
  return [el("h2", {}, "Consumer groups"), list.map((g) => {
    const c = chart("lag:" + g.group, "Lag (records)", "");
    c.push(g.lag);
    const members = g.members.map((m) => el("tr", {}, el("td", {}, m.member_id), el("td", {}, m.client_id), el("td", {}, m.client_host)));
    const parts = g.partitions.map((p) => el("tr", {}, el("td", {}, p.topic), num(p.partition), num(p.committed), num(p.high_watermark), num(p.lag)));
    return el("div", { class: "card", "data-group": g.group },
      el("h3", {}, g.group, " ", badge(g.state), " ", el("span", { class: "muted" }, `${g.members.length} members, lag ${fmt(g.lag)}`)),
      el("div", { class: "charts" }, c.node),
      members.length ? table(["Member", "Client id", "Host"], members) : null,
      parts.length ? table(["Topic", "Partition", "Committed", "High watermark", "Lag"], parts) : el("p", { class: "muted" }, "No committed offsets."));
  })];
}

async function transforms() {
  const [list, text] = await Promise.all([api("/v1/transforms"), fetch("/metrics").then((r) => r.text())]);
  const samples = parseMetrics(text);
  const now = Date.now();
  if (!list.length) return [el("h2", {}, "Transforms"), el("p", { class: "muted" }, "No transforms deployed.")];
  const cards = await Promise.all(list.map(async (d) => {
    const mine = (l) => l.deployment === d.name;
    const sum = sumWhere(samples, "sluice_transform_execution_seconds_sum", mine);
    const count = sumWhere(samples, "sluice_transform_execution_seconds_count", mine);
    const errors = sumWhere(samples, "sluice_transform_errors_total", mine);
    const prev = current.rates["lat:" + d.name];
    current.rates["lat:" + d.name] = { sum, count };
    const calls = prev ? count - prev.count : 0;
    const latency = chart("lat:" + d.name, "Mean call latency", " ms");
    latency.push(calls > 0 ? ((sum - prev.sum) / calls) * 1000 : 0);
    const errorChart = chart("err:" + d.name, "Errors /s", "/s");
    errorChart.push(rate("err:" + d.name).next(errors, now));
    const recChart = chart("rec:" + d.name, "Records in /s", "/s");
    recChart.push(rate("rec:" + d.name).next(d.stats.records_in, now));
    const logs = await api(`/v1/transforms/${encodeURIComponent(d.name)}/logs?tail=20`).catch(() => ({ lines: [] }));
    const paused = d.state === "PAUSED";
    const toggle = el("button", {
      onclick: async () => {
        await api(`/v1/transforms/${encodeURIComponent(d.name)}/${paused ? "resume" : "pause"}`, { method: "POST" })
          .catch((e) => setStatus(e.message, true));
        refreshSoon();
      },
    }, paused ? "Resume" : "Pause");
    const stats = Object.entries(d.stats).map(([k, v]) => el("tr", {}, el("td", {}, k.replace(/_/g, " ")), el("td", { class: "num", "data-stat": k }, fmt(v))));
    return el("div", { class: "card", "data-transform": d.name },
      el("h3", {}, d.name, " ", badge(d.state), " ", toggle),
      el("p", {}, `${d.input} → ${d.in_place ? "(in place)" : d.outputs.join(", ")} · on error: ${d.on_error}`),
      d.last_error ? el("p", { class: "error" }, "last error: " + d.last_error) : null,
      el("div", { class: "charts" }, table(["Counter", "Value"], stats), recChart.node, latency.node, errorChart.node),
      el("h3", {}, "Last log lines"),
      el("div", { class: "logs" }, logs.lines.length ? logs.lines.join("\n") : "(none)"));
  }));
  return [el("h2", {}, "Transforms"), cards];
}

async function connectors() {
  const all = await api("/connectors?expand=status&expand=info");
  const names = Object.keys(all).sort();
  if (!names.length) return [el("h2", {}, "Connectors"), el("p", { class: "muted" }, "No connectors.")];
  return [el("h2", {}, "Connectors"), names.map((name) => {
    const { status, info } = all[name];
    const restart = el("button", {
      onclick: async () => {
        await api(`/connectors/${encodeURIComponent(name)}/restart`, { method: "POST" }).catch((e) => setStatus(e.message, true));
        refreshSoon();
      },
    }, "Restart");
    const tasks = status.tasks.map((t) => el("tr", {}, num(t.id), el("td", {}, badge(t.state)), el("td", {}, el("pre", {}, t.trace || ""))));
    const config = Object.entries(info.config).map(([k, v]) => el("tr", {}, el("td", {}, k), el("td", {}, String(v))));
    return el("div", { class: "card", "data-connector": name },
      el("h3", {}, name, " ", badge(status.connector.state), " ", el("span", { class: "muted" }, status.type), " ", restart),
      el("div", { class: "charts" }, table(["Task", "State", "Trace"], tasks), table(["Config", "Value"], config)));
  })];
}

// ---- routing -----------------------------------------------------------------------------------------

function route() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  for (const a of document.querySelectorAll("nav a")) {
    const target = a.getAttribute("href").replace(/^#\/?/, "").split("/")[0];
    a.classList.toggle("active", target === (parts[0] || ""));
  }
  switch (parts[0]) {
    case "topics":
      if (parts.length >= 3) return { poll: false, load: () => browser(parts[1], Number(parts[2]) || 0, params) };
      if (parts.length === 2) return { poll: true, load: () => topic(parts[1]) };
      return { poll: true, load: topics };
    case "groups": return { poll: true, load: groups };
    case "transforms": return { poll: true, load: transforms };
    case "connectors": return { poll: true, load: connectors };
    default: return { poll: true, load: overview };
  }
}

let timer = null;

async function refresh() {
  clearTimeout(timer);
  const key = location.hash;
  if (current.route !== key) current = { route: key, charts: {}, rates: {} };
  const r = route();
  try {
    const nodes = await r.load();
    if (current.route !== key) return; // the route changed while loading
    view().replaceChildren(...[nodes].flat(2).filter(Boolean));
    setStatus("updated " + new Date().toLocaleTimeString(), false);
  } catch (e) {
    setStatus(e.message, true);
  }
  if (r.poll) timer = setTimeout(refresh, POLL_MS);
}

function refreshSoon() { setTimeout(refresh, 200); }

window.addEventListener("hashchange", refresh);
refresh();
