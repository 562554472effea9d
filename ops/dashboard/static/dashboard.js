// embedq dashboard: polls api/figures and draws tables and small line charts on canvases.
// No libraries, so the page works offline and ships in the wheel.
"use strict";

const POLL_MS = 2000;
const COLOURS = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#1b7c83", "#d1242f",
                 "#57606a", "#e16f24", "#6639ba"];

function fmt(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toFixed(digits);
}

function fmtSeconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 1) return `${Math.round(value * 1000)} ms`;
  if (value < 120) return `${value.toFixed(1)} s`;
  return `${Math.round(value / 60)} min`;
}

function fmtBytes(value) {
  if (!value) return "–";
  return `${Math.round(value / (1024 * 1024))} MiB`;
}

function fmtHits(rates) {
  const tiers = Object.keys(rates || {});
  if (!tiers.length) return "–";
  return tiers.map((tier) => `${tier} ${Math.round(rates[tier] * 100)}%`).join(", ");
}

// Table columns: [field, text of a row, class of the cell (for alignment and alarms)].
const QUEUE_COLUMNS = [
  ["queue", (q) => q.queue, () => "text"],
  ["routes", (q) => q.routes.join(", "), () => "text"],
  ["broker", (q) => q.broker, () => "text"],
  ["depth", (q) => String(q.depth)],
  ["oldest", (q) => fmtSeconds(q.oldest_age_s)],
  ["consumers", (q) => String(q.consumers), (q) => (q.consumers === 0 ? "bad" : "")],
  ["unacked", (q) => String(q.unacked)],
  ["texts_per_s", (q) => fmt(q.texts_per_s)],
  ["expired_per_s", (q) => fmt(q.expired_per_s), (q) => (q.expired_per_s > 0 ? "bad" : "")],
  ["latency", (q) => `${fmtSeconds(q.latency_p50_s)} / ${fmtSeconds(q.latency_p95_s)}`],
  ["queue_wait", (q) => fmtSeconds(q.queue_wait_p95_s)],
  ["batch", (q) => fmt(q.batch_texts_mean)],
  ["cache", (q) => fmtHits(q.cache_hit_rate), () => "text"],
  ["failed", (q) => fmt(q.failed_per_min), (q) => (q.failed_per_min > 0 ? "bad" : "")],
  ["dead_letters", (q) => String(q.dead_letters), (q) => (q.dead_letters > 0 ? "bad" : "")],
  ["memory", (q) => fmtBytes(q.memory_bytes)],
];
const EVALUATION_COLUMNS = [
  ["task", (r) => r.task, () => "text"],
  ["route", (r) => r.route, () => "text"],
  ["model", (r) => r.model, () => "text"],
  ["precision", (r) => r.precision, () => "text"],
  ["metrics", (r) => Object.entries(r.metrics).map(([k, v]) => `${k} ${fmt(v, 4)}`).join(", "),
   () => "text"],
  ["texts_per_s", (r) => fmt(r.texts_per_s)],
  ["memory", (r) => fmtBytes(r.worker_memory_bytes)],
  ["data", (r) => r.data, () => "text"],
  ["time", (r) => new Date(r.time * 1000).toLocaleString(), () => "text"],
];

// Replaces a table's rows; each row carries data-<key> and each cell data-field (tests use them).
function renderTable(selector, items, columns, key) {
  const body = document.querySelector(`${selector} tbody`);
  body.replaceChildren();
  for (const item of items) {
    const row = body.insertRow();
    row.dataset[key] = item[key];
    for (const [field, text, style] of columns) {
      const td = row.insertCell();
      td.textContent = text(item);
      td.dataset.field = field;
      td.className = style ? style(item) : "";
    }
  }
}

function drawChart(canvas, times, lines) {
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  const pad = { left: 44, right: 8, top: 8, bottom: 18 };
  ctx.clearRect(0, 0, width, height);
  const values = lines.flatMap((line) => line.values.filter((v) => v !== null));
  const top = (Math.max(0, ...values) || 1) * 1.1;
  const start = times[0] ?? 0;
  const span = Math.max(1, (times[times.length - 1] ?? 1) - start);
  const x = (t) => pad.left + ((t - start) / span) * (width - pad.left - pad.right);
  const y = (v) => height - pad.bottom - (v / top) * (height - pad.top - pad.bottom);
  ctx.strokeStyle = "#d9dee3";
  ctx.fillStyle = "#68737d";
  ctx.font = "11px system-ui, sans-serif";
  for (const frac of [0, 0.5, 1]) {
    const v = (top / 1.1) * frac;
    ctx.beginPath();
    ctx.moveTo(pad.left, y(v));
    ctx.lineTo(width - pad.right, y(v));
    ctx.stroke();
    ctx.fillText(v >= 10 ? v.toFixed(0) : v.toFixed(2), 2, y(v) + 4);
  }
  ctx.fillText(span < 120 ? `last ${Math.round(span)} s` : `last ${Math.round(span / 60)} min`,
               pad.left, height - 4);
  for (const line of lines) {
    ctx.strokeStyle = line.colour;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let drawing = false;
    line.values.forEach((v, i) => {
      if (v === null) { drawing = false; return; }
      if (drawing) ctx.lineTo(x(times[i]), y(v)); else ctx.moveTo(x(times[i]), y(v));
      drawing = true;
    });
    ctx.stroke();
  }
}

function renderCharts(series) {
  const names = Object.keys(series.queues);
  const colour = (i) => COLOURS[i % COLOURS.length];
  const lines = (key) => names.map((name, i) => ({ colour: colour(i), values: series.queues[name][key] }));
  drawChart(document.getElementById("chart-depth"), series.t, lines("depth"));
  drawChart(document.getElementById("chart-throughput"), series.t, lines("texts_per_s"));
  drawChart(document.getElementById("chart-latency"), series.t, lines("latency_p95_s"));
  drawChart(document.getElementById("chart-consumers"), series.t, lines("consumers"));
  const legend = document.getElementById("legend");
  legend.replaceChildren(...names.map((name, i) => {
    const span = document.createElement("span");
    span.textContent = name;
    span.style.setProperty("--swatch", colour(i));
    return span;
  }));
}

async function poll() {
  const status = document.getElementById("status");
  try {
    const response = await fetch("api/figures", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const figures = await response.json();
    renderTable("#queues", figures.queues, QUEUE_COLUMNS, "queue");
    renderCharts(figures.series);
    renderTable("#evaluation", figures.evaluation, EVALUATION_COLUMNS, "route");
    status.textContent = `updated ${new Date(figures.time * 1000).toLocaleTimeString()}`;
    status.className = "status ok";
  } catch (error) {
    status.textContent = `no data: ${error.message}`;
    status.className = "status bad";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
