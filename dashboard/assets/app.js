// pushworker dashboard: polls /ui/api/state every second and renders it. Every value from
// the server is set as text (never as HTML): results and DLQ entries hold what producers sent.
"use strict";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 1000;
const COLORS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2", "#ca8a04", "#db2777", "#6b7280"];

// el builds an element: attrs are properties (className, title, ...) or dataset entries
// (data-*), children are nodes or text.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k.startsWith("data-")) e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function fill(tbody, rows, emptyText, cols) {
  tbody.replaceChildren(...rows);
  if (rows.length === 0 && emptyText) {
    tbody.append(el("tr", {}, el("td", { colSpan: cols, className: "muted" }, emptyText)));
  }
}

const fmtInt = (n) => Number(n || 0).toLocaleString("en-US");
const fmtRate = (n) => (n >= 100 ? Math.round(n).toLocaleString("en-US") : (Math.round(n * 10) / 10).toString());
function fmtTime(s) {
  if (!s) return "";
  const d = new Date(s);
  if (isNaN(d) || d.getFullYear() < 2000) return "";
  return d.toLocaleTimeString("en-GB", { hour12: false }) + "." + String(d.getMilliseconds()).padStart(3, "0");
}
function fmtAge(ms) {
  if (ms < 1000) return "now";
  if (ms < 60000) return Math.round(ms / 1000) + " s ago";
  return Math.round(ms / 60000) + " min ago";
}
function upstreamText(u) {
  if (!u) return "";
  let s = "HTTP " + u.http_status;
  if (u.code) s += " code " + u.code;
  if (u.message) s += " " + JSON.stringify(u.message);
  return s;
}
const statusCell = (s) => el("td", { className: "st-" + (s || "other") }, s || "?");

async function api(path, opts) {
  const o = Object.assign({ credentials: "same-origin", headers: {} }, opts || {});
  if (o.method === "POST") {
    o.headers["Content-Type"] = "application/json";
    o.headers["X-Pushworker-UI"] = "1";
  }
  const r = await fetch(path, o);
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) {
    const msg = body && body.error ? body.error : r.statusText;
    const err = new Error(r.status + ": " + msg);
    err.status = r.status;
    throw err;
  }
  return body;
}

// ---- state ----

let last = null;
let typesFilled = false;

function resultsQuery() {
  const p = new URLSearchParams();
  if ($("filter-status").value) p.set("status", $("filter-status").value);
  if ($("filter-type").value) p.set("type", $("filter-type").value);
  if ($("filter-app").value.trim()) p.set("app", $("filter-app").value.trim());
  return p.toString();
}

async function refresh() {
  try {
    const s = await api("/ui/api/state?" + resultsQuery());
    last = s;
    $("banner").hidden = true;
    render(s);
  } catch (e) {
    $("banner").textContent = "cannot reach this replica: " + e.message;
    $("banner").hidden = false;
  } finally {
    setTimeout(refresh, REFRESH_MS);
  }
}

function render(s) {
  $("replica").textContent = s.replica + " · " + s.version;
  $("sandbox-badge").hidden = !s.sandbox;
  $("updated").textContent = "updated " + fmtTime(s.now);
  renderAuth(s.auth);
  if (!typesFilled) {
    for (const t of s.backlog.types) {
      if (t === "other") continue;
      $("filter-type").append(el("option", {}, t));
      $("dlq-type").append(el("option", {}, t));
    }
    typesFilled = true;
  }
  renderBacklog(s.backlog);
  renderBudgets(s.budgets);
  renderGates(s.gates);
  renderReplicas(s.replicas);
  renderResults(s.results);
  renderNotify(s.notify);
  dlqChanged(s.dlq);
}

function renderAuth(a) {
  const st = $("auth-state");
  if (readOnly !== !a.token_set) {
    readOnly = !a.token_set;
    updateReplayButton();
  }
  if (!a.token_set) {
    st.textContent = "read-only (no PUSH_UI_ADMIN_TOKEN)";
    $("login-form").hidden = true;
    $("logout").hidden = true;
  } else if (a.admin) {
    st.textContent = "admin";
    $("login-form").hidden = true;
    $("logout").hidden = false;
  } else {
    st.textContent = "read-only";
    $("login-form").hidden = false;
    $("logout").hidden = true;
  }
}

function renderBacklog(b) {
  const rows = [];
  let total = 0, inflight = 0;
  const cur = new Map(b.current.map((c) => [c.type, c]));
  for (const t of b.types) {
    const c = cur.get(t);
    if (t === "other" && !c) continue;
    const v = c || { stored: 0, in_flight: 0, redelivered: 0 };
    total += v.stored; inflight += v.in_flight;
    rows.push(el("tr", { "data-type": t },
      el("td", {}, t), el("td", { className: "num backlog-stored" }, fmtInt(v.stored)),
      el("td", { className: "num" }, fmtInt(v.in_flight)), el("td", { className: "num" }, fmtInt(v.redelivered))));
  }
  // Unknown types waiting for the sweeper.
  for (const c of b.current) {
    if (!b.types.includes(c.type)) {
      total += c.stored;
      rows.push(el("tr", { "data-type": c.type }, el("td", {}, c.type), el("td", { className: "num backlog-stored" }, fmtInt(c.stored)), el("td", { className: "num" }, fmtInt(c.in_flight)), el("td", { className: "num" }, "")));
    }
  }
  fill($("backlog").tBodies[0], rows);
  $("backlog-total").textContent = fmtInt(total);
  $("inflight-total").textContent = fmtInt(inflight);
  drawChart(b);
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

// niceMax rounds a chart's top up to 1, 2 or 5 times a power of ten (at least 4).
function niceMax(v) {
  if (v <= 4) return 4;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function drawChart(b) {
  const box = $("chart");
  const W = Math.max(300, box.clientWidth || 600), H = 150, L = 52, B = 18, T = 6;
  const s = svg("svg", { viewBox: `0 0 ${W} ${H + B}`, role: "img" });
  const series = b.series;
  const now = series.length ? series[series.length - 1][0] : Date.now();
  // The last 10 minutes, or since the first sample (at least a minute) after a start.
  const span = Math.min(10 * 60000, Math.max(60000, series.length ? now - series[0][0] : 0));
  const t0 = now - span;
  let max = 0;
  for (const row of series) {
    let sum = 0;
    for (let i = 1; i < row.length; i++) sum += row[i];
    max = Math.max(max, sum);
  }
  max = niceMax(max);
  const x = (t) => L + ((t - t0) / (now - t0 || 1)) * (W - L - 4);
  const y = (v) => T + (1 - v / max) * (H - T);
  // axes and grid
  for (const f of [0, 0.5, 1]) {
    s.append(svg("line", { x1: L, x2: W - 4, y1: y(max * f), y2: y(max * f), stroke: "#e5e7eb" }));
    const lbl = svg("text", { x: L - 4, y: y(max * f) + 4, "text-anchor": "end", "font-size": 10, fill: "#6b7280" });
    lbl.textContent = fmtInt(Math.round(max * f));
    s.append(lbl);
  }
  const ago = (ms) => (ms >= 60000 && ms % 60000 === 0 ? "-" + ms / 60000 + " min" : "-" + Math.round(ms / 1000) + " s");
  for (const f of [1, 0.5, 0]) {
    const lbl = svg("text", { x: x(now - f * span), y: H + B - 4, "text-anchor": f === 0 ? "end" : (f === 1 ? "start" : "middle"), "font-size": 10, fill: "#6b7280" });
    lbl.textContent = f === 0 ? "now" : ago(Math.round(f * span / 1000) * 1000);
    s.append(lbl);
  }
  const legend = el("div", { className: "legend" });
  const lines = [];
  b.types.forEach((t, i) => {
    if (!series.some((r) => r[1 + i] > 0)) return;
    lines.push({ name: t, color: COLORS[i % COLORS.length], idx: 1 + i });
  });
  if (lines.length > 1) lines.push({ name: "total", color: "#111827", idx: -1 });
  for (const ln of lines) {
    const pts = series.map((r) => {
      let v = 0;
      if (ln.idx < 0) { for (let i = 1; i < r.length; i++) v += r[i]; } else v = r[ln.idx];
      return x(r[0]).toFixed(1) + "," + y(v).toFixed(1);
    });
    if (pts.length === 1) pts.push(pts[0]);
    s.append(svg("polyline", { points: pts.join(" "), fill: "none", stroke: ln.color, "stroke-width": ln.idx < 0 ? 2 : 1.5 }));
    legend.append(el("span", {}, el("i", { style: "background:" + ln.color }), ln.name));
  }
  if (lines.length === 0) legend.append(el("span", {}, "no backlog in the last 10 minutes"));
  box.replaceChildren(s, legend);
}

function renderBudgets(rows) {
  const out = [];
  for (const r of rows) {
    const shares = el("td", { className: "wrap" });
    for (const p of r.replicas) {
      shares.append(el("span", { className: "share", title: p.replica + ": used " + fmtRate(p.used) + "/s" + (p.hungry ? ", jobs waiting for budget" : "") },
        el("span", { className: "bar", style: "width:" + Math.max(2, Math.round(p.share * 60)) + "px" }),
        Math.round(p.share * 100) + "% " + p.replica.slice(-8) + (p.hungry ? " (waiting)" : "")));
    }
    if (r.replicas.length === 0) shares.append(el("span", { className: "muted" }, "idle"));
    out.push(el("tr", { "data-app": r.app, "data-class": r.class },
      el("td", {}, r.app), el("td", {}, r.class), el("td", { className: "num" }, fmtRate(r.rate)),
      el("td", { className: "num" }, fmtRate(r.used)), el("td", { className: "num" }, fmtRate(r.asked)), shares));
  }
  fill($("budgets").tBodies[0], out, "no apps configured", 6);
}

function renderGates(gates) {
  const out = gates.map((g) => {
    let state = g.state;
    if (g.state === "held") state = "held by another replica until " + fmtTime(g.held_until);
    if (g.state !== "closed" && g.since) state += " since " + fmtTime(g.since);
    const fail = [];
    if (g.detail) fail.push(g.detail);
    if (g.last_failure && g.last_failure !== g.detail) fail.push(g.last_failure);
    if (g.last_answer) fail.push(upstreamText(g.last_answer));
    if (g.last_failure_at) fail.push("at " + fmtTime(g.last_failure_at));
    return el("tr", { "data-app": g.app, "data-upstream": g.upstream },
      el("td", {}, g.app), el("td", { title: g.host }, g.upstream),
      el("td", { className: "st-" + g.state }, state), el("td", { className: "wrap" }, fail.join(" · ")));
  });
  fill($("gates").tBodies[0], out, "no upstream called yet", 4);
}

function renderReplicas(reps) {
  const out = reps.map((r) => el("tr", { "data-replica": r.replica },
    el("td", {}, r.replica + (r.self ? " (this page)" : "")),
    el("td", { className: r.alive ? "" : "error" }, r.alive ? fmtAge(r.age_ms) : "silent " + fmtAge(r.age_ms)),
    el("td", { className: "num" }, r.budgets)));
  fill($("replicas").tBodies[0], out, "no heartbeat seen yet", 3);
}

function renderResults(r) {
  const rates = $("rates");
  rates.replaceChildren();
  r.statuses.forEach((st, i) => {
    if (r.totals[i] === 0 && st === "other") return;
    rates.append(el("span", { className: "rate" }, el("span", { className: "st-" + st }, st), " " + fmtRate(r.per_second[i]) + "/s (" + fmtInt(r.totals[i]) + ")"));
  });
  let note = "since " + fmtTime(r.since);
  if (r.sampled) note += " · sampled: counts are complete, the list keeps a few per second";
  if (r.dropped > 0) note += " · " + fmtInt(r.dropped) + " not even counted (too many)";
  $("results-note").textContent = note;
  const out = r.recent.map((k) => {
    const x = k.result;
    return el("tr", { "data-request-id": x.request_id, "data-status": x.status },
      el("td", {}, fmtTime(x.completed_at || k.at)),
      el("td", {}, el("a", { href: "#lookup", className: "lookup-link", "data-id": x.request_id }, x.request_id)),
      el("td", {}, x.type), el("td", {}, x.app), statusCell(x.status + (x.duplicate ? " (dup)" : "")),
      el("td", { className: "num" }, x.attempts), el("td", {}, upstreamText(x.upstream)),
      el("td", { className: "wrap" }, x.error ? x.error.kind + ": " + x.error.detail : ""));
  });
  fill($("results").tBodies[0], out, "no results yet", 8);
}

function renderNotify(tasks) {
  const out = tasks.map((t) => {
    const ch = Object.entries(t.channels || {}).filter(([, c]) => c.target || c.sent || c.received)
      .map(([n, c]) => n + " " + c.target + "/" + c.sent + "/" + c.received).join(" · ");
    return el("tr", { "data-task": t.task_id }, el("td", { className: "num" }, t.task_id), el("td", {}, t.request_id),
      el("td", {}, t.app || ""), el("td", {}, fmtTime(t.received_at)), el("td", { className: "wrap" }, ch || "nothing delivered yet"));
  });
  fill($("notify").tBodies[0], out, "no notify task stats yet", 5);
}

// ---- lookup ----

async function lookup(id) {
  const out = $("lookup-out");
  out.replaceChildren(el("span", { className: "muted" }, "looking…"));
  try {
    const v = await api("/ui/api/lookup?request_id=" + encodeURIComponent(id));
    out.replaceChildren(...renderLookup(v));
  } catch (e) {
    out.replaceChildren(el("span", { className: "error" }, e.message));
  }
}

function resultLine(x) {
  const parts = [x.type, "app " + x.app, "attempts " + x.attempts];
  if (x.upstream) parts.push("upstream " + upstreamText(x.upstream));
  if (x.error) parts.push(x.error.kind + ": " + x.error.detail);
  if (x.packet_id) parts.push("packet " + x.packet_id);
  if (x.task_id) parts.push("task " + x.task_id);
  if (x.duplicate) parts.push("duplicate");
  parts.push("completed " + fmtTime(x.completed_at));
  return el("div", { className: "lookup-result", "data-status": x.status }, el("span", { className: "st-" + x.status }, x.status), " · " + parts.join(" · "));
}

function renderLookup(v) {
  const blocks = [];
  if (!v.found) blocks.push(el("p", { className: "muted" }, "not found in the recent results, the dedup bucket, the newest " + fmtInt(v.searched.results) + " results or the newest " + fmtInt(v.searched.dlq) + " DLQ entries"));
  if (v.results.length) {
    const b = el("div", { className: "lookup-block" }, el("h3", {}, "Results (PUSH_RESULTS, newest first)"));
    for (const m of v.results) {
      b.append(el("div", {}, el("span", { className: "muted" }, "seq " + m.seq + " on " + m.subject + " · ")));
      b.append(resultLine(m.data));
      b.append(el("details", {}, el("summary", {}, "JSON"), el("pre", {}, JSON.stringify(m.data, null, 2))));
    }
    blocks.push(b);
  } else if (v.recent.length) {
    const b = el("div", { className: "lookup-block" }, el("h3", {}, "Recent results"));
    for (const k of v.recent) b.append(resultLine(k.result));
    blocks.push(b);
  }
  if (v.record) {
    const r = v.record;
    const b = el("div", { className: "lookup-block" }, el("h3", {}, "Dedup record (PUSH_DEDUP)"));
    let text = r.state === "done" ? "accepted; copies get this result again" : "in flight: " + r.failures + " failed attempt(s) so far";
    if (r.last_answer) text += " · last upstream answer " + upstreamText(r.last_answer);
    if (r.last_error) text += " · " + r.last_error.kind + ": " + r.last_error.detail;
    text += " · updated " + fmtTime(r.updated);
    b.append(el("div", { id: "lookup-record" }, text));
    blocks.push(b);
  }
  if (v.dlq.length) {
    const b = el("div", { className: "lookup-block" }, el("h3", {}, "Dead-letter entries"));
    for (const d of v.dlq) b.append(el("div", { "data-seq": d.seq }, "seq " + d.seq + " · " + d.status + " · " + d.kind + ": " + d.detail + " · attempts " + d.attempts));
    blocks.push(b);
  }
  for (const e of v.errors || []) blocks.push(el("p", { className: "error" }, e));
  return blocks;
}

// ---- DLQ ----

let dlqSeen = null, dlqLoading = false, dlqLastLoad = 0;
const selected = new Set();

function dlqChanged(info) {
  const key = info.messages + "/" + info.last_seq;
  $("dlq-summary").textContent = fmtInt(info.messages) + (info.messages === 1 ? " entry" : " entries");
  if (key !== dlqSeen && Date.now() - dlqLastLoad > 1000) {
    dlqSeen = key;
    loadDLQ(false);
  }
}

let dlqRows = [];
async function loadDLQ(more) {
  if (dlqLoading) return;
  dlqLoading = true;
  dlqLastLoad = Date.now();
  const p = new URLSearchParams({ limit: "50" });
  if ($("dlq-type").value) p.set("type", $("dlq-type").value);
  if ($("dlq-kind").value) p.set("kind", $("dlq-kind").value);
  if (more && dlqRows.length) p.set("before", dlqRows[dlqRows.length - 1].seq);
  try {
    const page = await api("/ui/api/dlq?" + p);
    dlqRows = more ? dlqRows.concat(page.entries) : page.entries;
    $("dlq-more").hidden = !page.more;
    renderDLQ();
  } catch (e) {
    setMsg(e.message, true);
  } finally {
    dlqLoading = false;
  }
}

function renderDLQ() {
  const present = new Set(dlqRows.map((r) => r.seq));
  for (const s of [...selected]) if (!present.has(s)) selected.delete(s);
  const out = dlqRows.map((r) => {
    const box = el("input", { type: "checkbox", className: "dlq-select", checked: selected.has(r.seq), "data-seq": r.seq });
    box.addEventListener("change", () => { box.checked ? selected.add(r.seq) : selected.delete(r.seq); updateReplayButton(); });
    const show = el("button", { type: "button", className: "dlq-show" }, "show");
    show.addEventListener("click", () => showDLQ(r.seq));
    return el("tr", { "data-seq": r.seq, "data-request-id": r.request_id || "" },
      el("td", {}, box), el("td", { className: "num" }, r.seq), el("td", {}, fmtTime(r.time)), el("td", {}, r.type),
      el("td", {}, r.request_id || ""), el("td", {}, r.app || ""), statusCell(r.status || "other"),
      el("td", { className: "num" }, r.attempts || ""), el("td", { className: "wrap" }, r.broken ? "not a DLQ entry: " + r.broken : r.kind + ": " + r.detail), el("td", {}, show));
  });
  fill($("dlq").tBodies[0], out, "the dead-letter stream is empty", 10);
  $("dlq-all").checked = dlqRows.length > 0 && selected.size === dlqRows.length;
  updateReplayButton();
}

let readOnly = false;

function updateReplayButton() {
  const b = $("dlq-replay");
  b.disabled = selected.size === 0 || readOnly;
  b.title = readOnly ? "read-only: this replica has no PUSH_UI_ADMIN_TOKEN (use pushctl dlq replay)" : "";
  b.textContent = selected.size > 1 ? "Replay " + selected.size + " selected" : "Replay selected";
}

async function showDLQ(seq) {
  const box = $("dlq-show");
  try {
    const e = await api("/ui/api/dlq/" + seq);
    box.replaceChildren(el("h3", {}, "DLQ entry " + seq), el("pre", { id: "dlq-show-json" }, JSON.stringify(e, null, 2)));
  } catch (err) {
    box.replaceChildren(el("p", { className: "error" }, err.message));
  }
}

function setMsg(text, isError) {
  const m = $("dlq-msg");
  m.textContent = text;
  m.className = isError ? "error" : "ok";
}

function confirmReplay(seqs) {
  return new Promise((resolve) => {
    $("confirm-text").textContent = "Replay " + seqs.length + " DLQ " + (seqs.length === 1 ? "entry" : "entries") +
      " (" + seqs.slice(0, 10).join(", ") + (seqs.length > 10 ? ", …" : "") + ")? Each job is published again to its original subject and its entry is deleted.";
    $("confirm").hidden = false;
    const done = (v) => { $("confirm").hidden = true; $("confirm-yes").onclick = $("confirm-no").onclick = null; resolve(v); };
    $("confirm-yes").onclick = () => done(true);
    $("confirm-no").onclick = () => done(false);
  });
}

async function replaySelected() {
  const seqs = [...selected].sort((a, b) => a - b);
  if (!seqs.length || !(await confirmReplay(seqs))) return;
  try {
    const r = await api("/ui/api/dlq/replay", { method: "POST", body: JSON.stringify({ seqs }) });
    const errs = r.entries.filter((e) => e.error).map((e) => e.error);
    setMsg("replayed " + r.replayed + ", failed " + r.failed + (errs.length ? ": " + errs.join("; ") : ""), r.failed > 0);
    for (const e of r.entries) if (e.ok) selected.delete(e.seq);
    loadDLQ(false);
  } catch (e) {
    setMsg("replay refused: " + e.message, true);
  }
}

// ---- wiring ----

$("results-filter").addEventListener("change", () => { if (last) refreshSoon(); });
$("filter-app").addEventListener("input", () => refreshSoon());
$("results-filter").addEventListener("submit", (e) => e.preventDefault());
$("lookup-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const id = $("lookup-input").value.trim();
  if (id) lookup(id);
});
document.addEventListener("click", (e) => {
  const a = e.target.closest && e.target.closest("a.lookup-link");
  if (a) {
    e.preventDefault();
    $("lookup-input").value = a.dataset.id;
    lookup(a.dataset.id);
    $("lookup-section").scrollIntoView({ behavior: "smooth" });
  }
});
$("dlq-filter").addEventListener("change", (e) => { if (e.target.tagName === "SELECT") { selected.clear(); loadDLQ(false); } });
$("dlq-all").addEventListener("change", () => {
  selected.clear();
  if ($("dlq-all").checked) for (const r of dlqRows) selected.add(r.seq);
  renderDLQ();
});
$("dlq-replay").addEventListener("click", replaySelected);
$("dlq-more").addEventListener("click", () => loadDLQ(true));
$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    await api("/ui/api/login", { method: "POST", body: JSON.stringify({ token: $("login-token").value }) });
    $("login-token").value = "";
    setMsg("logged in", false);
    refreshSoon();
  } catch (err) {
    setMsg("login failed: " + err.message, true);
  }
});
$("logout").addEventListener("click", async () => {
  try { await api("/ui/api/logout", { method: "POST", body: "{}" }); } catch (e) { /* shown on the next refresh */ }
  refreshSoon();
});

let soon = null;
function refreshSoon() {
  clearTimeout(soon);
  soon = setTimeout(async () => {
    try { const s = await api("/ui/api/state?" + resultsQuery()); last = s; render(s); } catch (e) { /* the poll shows it */ }
  }, 150);
}

refresh();
