// The job page: polls /api/v1 and draws the graph, tables and the chart.
// Plain DOM and SVG; every string from the job goes in as text, never HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const $ = (id) => document.getElementById(id);

function el(tag, attrs, text) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function num(n) {
  if (n === null || n === undefined) return "–";
  if (Math.abs(n) >= 1e9) return (n / 1e9).toFixed(2) + " G";
  if (Math.abs(n) >= 1e6) return (n / 1e6).toFixed(2) + " M";
  if (Math.abs(n) >= 1e4) return (n / 1e3).toFixed(1) + " k";
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}
const rate = (r) => (r === null || r === undefined ? "–" : num(r) + "/s");
const pct = (r) => (r === null || r === undefined ? "–" : Math.round(r * 100) + " %");
const time = (ms) => (ms === null || ms === undefined ? "–" : new Date(ms).toISOString().replace(".000Z", "Z"));
function duration(s) {
  s = Math.floor(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return (h ? h + " h " : "") + (h || m ? m + " min " : "") + (s % 60) + " s";
}

async function get(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + " answered " + r.status);
  return r.json();
}

function rows(tbody, items, cells) {
  const body = document.querySelector(tbody);
  body.replaceChildren(...items.map((it) => {
    const tr = el("tr");
    for (const [text, cls] of cells(it)) tr.appendChild(el("td", cls ? { class: cls } : {}, text));
    return tr;
  }));
}

async function refreshJob() {
  const j = await get("/api/v1/job");
  $("job-name").textContent = j.name;
  document.title = j.name + " · Flowline";
  const st = $("job-state");
  st.textContent = j.state;
  st.className = "state " + j.state;
  $("uptime").textContent = duration(j.uptime_seconds);
  $("records-in").textContent = num(j.records_in);
  $("watermark").textContent = time(j.watermark_ms);
  const h = $("health");
  h.hidden = j.health.healthy;
  h.textContent = j.health.reasons.join("; ");
}

const NODE_W = 170, NODE_H = 64, GAP_X = 60, GAP_Y = 24;

function drawGraph(g) {
  // The source and the chain's stages (a sink stage hands records to the
  // sink task of the same name), then the outputs.
  const inChain = (n) => n.kind === "source" || n.task === "chain";
  const chain = g.nodes.filter(inChain);
  const outs = g.nodes.filter((n) => !inChain(n));
  // The chain in rows that fit the page, the outputs in a column at the right.
  const avail = Math.max(600, $("graph").clientWidth || 1200);
  const perRow = Math.max(2, Math.min(chain.length, Math.floor((avail - NODE_W - 20) / (NODE_W + GAP_X))));
  const pos = new Map();
  chain.forEach((n, i) => pos.set(n.id, [10 + (i % perRow) * (NODE_W + GAP_X), 10 + Math.floor(i / perRow) * (NODE_H + 2 * GAP_Y)]));
  const x = 10 + perRow * (NODE_W + GAP_X);
  outs.forEach((n, i) => pos.set(n.id, [x, 10 + i * (NODE_H + GAP_Y)]));
  const rowsUsed = Math.ceil(chain.length / perRow);
  const width = x + NODE_W + 10;
  const height = Math.max(rowsUsed * (NODE_H + 2 * GAP_Y), Math.max(1, outs.length) * (NODE_H + GAP_Y)) + 10;
  const svg = el("svg:svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "job graph" });
  const defs = el("svg:defs");
  const marker = el("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto" });
  marker.appendChild(el("svg:path", { d: "M0,0 L10,5 L0,10 z", fill: "#98a2b3" }));
  defs.appendChild(marker);
  svg.appendChild(defs);
  for (const e of g.edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    if (!a || !b) continue;
    const label = (x, y) => svg.appendChild(el("svg:text", { class: "edge-label", x, y, "text-anchor": "middle", "data-edge": `${e.from}-${e.to}` }, rate(e.rate_10s)));
    if (b[0] <= a[0]) {
      // The chain wrapped to the next row: from the bottom of one to the top of the next.
      const x1 = a[0] + NODE_W / 2, y1 = a[1] + NODE_H, x2 = b[0] + NODE_W / 2, y2 = b[1];
      svg.appendChild(el("svg:path", { class: "edge", d: `M${x1},${y1} C${x1},${y2} ${x2},${y1} ${x2},${y2}` }));
      label((x1 + x2) / 2, (y1 + y2) / 2 - 4);
      continue;
    }
    const x1 = a[0] + NODE_W, y1 = a[1] + NODE_H / 2, x2 = b[0], y2 = b[1] + NODE_H / 2;
    const mx = (x1 + x2) / 2;
    svg.appendChild(el("svg:path", { class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}` }));
    label(b[1] === a[1] ? mx : x2 - 30, (b[1] === a[1] ? y1 : y2) - 6);
  }
  for (const n of g.nodes) {
    const [nx, ny] = pos.get(n.id);
    const cls = ["node"];
    if (n.busy_ratio > 0.8) cls.push("busy");
    if (n.backpressured_ratio > 0.5) cls.push("backpressured");
    const grp = el("svg:g", { class: cls.join(" "), transform: `translate(${nx},${ny})`, "data-kind": n.kind, "data-name": n.name });
    grp.appendChild(el("svg:title", {}, `${n.name}\n${n.kind}, task ${n.task ?? "–"}\nrecords in ${n.records_in}\n10 s ${rate(n.rate_10s)}, 1 min ${rate(n.rate_1m)}`));
    grp.appendChild(el("svg:rect", { width: NODE_W, height: NODE_H }));
    const name = n.name.length > 24 ? n.name.slice(0, 23) + "…" : n.name;
    grp.appendChild(el("svg:text", { x: 8, y: 16 }, name));
    grp.appendChild(el("svg:text", { x: 8, y: 33, class: "muted", "data-field": "records" }, `in ${num(n.records_in)} · ${rate(n.rate_10s)}`));
    const ratios = n.busy_ratio === null && n.backpressured_ratio === null ? n.kind : `busy ${pct(n.busy_ratio)} · bp ${pct(n.backpressured_ratio)}`;
    grp.appendChild(el("svg:text", { x: 8, y: 50, class: "muted" }, ratios));
    svg.appendChild(grp);
  }
  $("graph").replaceChildren(svg);
  const src = g.nodes.find((n) => n.kind === "source");
  $("rate-in").textContent = src ? rate(src.rate_10s) : "–";
}

async function refreshGraph() { drawGraph(await get("/api/v1/graph")); }

async function refreshPartitions() {
  const p = await get("/api/v1/partitions");
  rows("#partitions tbody", p.partitions, (r) => [[r.id], [num(r.next_offset)], [time(r.watermark_ms)], [r.lag === null ? "–" : num(r.lag)], [r.idle ? "idle" : ""], [r.owner]]);
}

async function refreshCheckpoints() {
  const c = await get("/api/v1/checkpoints");
  $("checkpoint-store").textContent = c.store ? "store: " + (c.store.store || JSON.stringify(c.store)) : "no checkpoint store configured";
  rows("#checkpoints tbody", c.checkpoints.slice(0, 15), (r) => [[r.id], [time(r.created_ms)], [r.duration_ms + " ms"], [num(r.size_bytes) + "B"]]);
}

async function refreshDead() {
  const d = await get("/api/v1/dead-letters");
  rows("#dead-counts tbody", d.counts.slice(0, 20), (r) => [[r.stage], [r.kind], [r.reason, "reason"], [num(r.count)]]);
  rows("#dead-last tbody", d.last, (r) => [[time(r.at_ms)], [r.stage], [r.partition ?? "–"], [r.offset ?? "–"], [r.reason, "reason"]]);
}

// The chart: the chosen key's recent windows (avg line, min-max band,
// anomalies as red dots).
const chosen = { key: null, metric: null };

async function refreshKeys() {
  const prefix = $("chart-key").value;
  const k = await get("/api/v1/keys?limit=50&prefix=" + encodeURIComponent(prefix));
  const keys = [...new Set(k.keys.map((x) => x.key))];
  const metrics = [...new Set(k.keys.filter((x) => !prefix || x.key === prefix).map((x) => x.metric))];
  $("key-list").replaceChildren(...keys.map((v) => el("option", { value: v })));
  $("metric-list").replaceChildren(...metrics.map((v) => el("option", { value: v })));
  if (!chosen.key && k.keys.length) {
    chosen.key = k.keys[0].key;
    chosen.metric = k.keys[0].metric;
    $("chart-key").value = chosen.key;
    $("chart-metric").value = chosen.metric;
  }
}

function drawChart(s) {
  const W = 900, H = 240, L = 60, B = 24, T = 8;
  const pts = s.points;
  const svg = el("svg:svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "window chart" });
  $("chart-note").textContent = pts.length
    ? `${s.key} · ${s.metric}: ${pts.length} windows, avg line with the min–max band; red: anomalies`
    : `${s.key} · ${s.metric}: watched from now on; points appear as its windows fire`;
  if (pts.length) {
    const t0 = pts[0].window_start_ms, t1 = Math.max(pts[pts.length - 1].window_start_ms, t0 + 1);
    let lo = Math.min(...pts.map((p) => p.min)), hi = Math.max(...pts.map((p) => p.max));
    if (hi === lo) { hi += 1; lo -= 1; }
    const X = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - 10);
    const Y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
    svg.appendChild(el("svg:line", { class: "axis", x1: L, y1: H - B, x2: W - 10, y2: H - B }));
    svg.appendChild(el("svg:text", { x: 4, y: T + 10, class: "muted" }, num(hi)));
    svg.appendChild(el("svg:text", { x: 4, y: H - B, class: "muted" }, num(lo)));
    svg.appendChild(el("svg:text", { x: L, y: H - 6, class: "muted" }, time(t0)));
    svg.appendChild(el("svg:text", { x: W - 10, y: H - 6, class: "muted", "text-anchor": "end" }, time(t1)));
    const band = pts.map((p) => `${X(p.window_start_ms)},${Y(p.max)}`).concat(pts.slice().reverse().map((p) => `${X(p.window_start_ms)},${Y(p.min)}`));
    svg.appendChild(el("svg:polygon", { class: "band", points: band.join(" ") }));
    svg.appendChild(el("svg:polyline", { class: "avg", points: pts.map((p) => `${X(p.window_start_ms)},${Y(p.avg)}`).join(" ") }));
    for (const p of pts) svg.appendChild(el("svg:circle", { class: "point", cx: X(p.window_start_ms), cy: Y(p.avg), r: 1.5, fill: "#2e63d6" }));
    for (const a of s.anomalies) {
      const t = Date.parse(a.window_start);
      if (t >= t0 && t <= t1) svg.appendChild(el("svg:circle", { class: "anomaly", cx: X(t), cy: Y(a.value), r: 5 }, undefined));
    }
  }
  $("chart").replaceChildren(svg);
}

async function refreshChart() {
  await refreshKeys();
  if (!chosen.key || !chosen.metric) {
    $("chart-note").textContent = "no window results yet";
    return;
  }
  const w = await get(`/api/v1/windows?limit=1&key=${encodeURIComponent(chosen.key)}&metric=${encodeURIComponent(chosen.metric)}`);
  if (w.series) drawChart(w.series);
}

$("chart-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  chosen.key = $("chart-key").value.trim() || null;
  chosen.metric = $("chart-metric").value.trim() || null;
  refreshChart().catch(show);
});

function show(e) {
  const box = $("error");
  box.hidden = !e;
  box.textContent = e ? "cannot reach the job: " + e.message : "";
}

async function tick(n) {
  try {
    await Promise.all([refreshJob(), refreshGraph(), refreshPartitions()]);
    if (n % 2 === 0) await Promise.all([refreshCheckpoints(), refreshDead(), refreshChart()]);
    show(null);
  } catch (e) {
    show(e);
  }
}

let n = 0;
tick(n);
setInterval(() => tick(++n), 1000);
