// The dashboard's charts (Chart.js) and its live events list. No inline script anywhere:
// the pages carry their data in data-* attributes.
"use strict";

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function seriesColours() {
  return cssVar("--series").split(",").map((c) => c.trim());
}

function chartTheme() {
  Chart.defaults.color = cssVar("--muted");
  Chart.defaults.borderColor = cssVar("--line");
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.animation = false;
}

function barChart(canvas, spec) {
  const colours = seriesColours();
  const stacked = spec.kind === "stacked";
  return new Chart(canvas, {
    type: "bar",
    data: {
      labels: spec.labels,
      datasets: spec.series.map((s, i) => ({
        label: s.label, data: s.data, backgroundColor: colours[i % colours.length],
      })),
    },
    options: {
      responsive: true, maintainAspectRatio: false,
      plugins: { legend: { display: spec.series.length > 1, position: "bottom" } },
      scales: {
        x: { stacked: stacked, ticks: { autoSkip: true, maxRotation: 0 } },
        y: {
          stacked: stacked, beginAtZero: true,
          title: { display: true, text: spec.unit === "cost" ? "AI cost" : "billable minutes" },
        },
      },
    },
  });
}

function timelineChart(canvas, spec) {
  const toTime = (iso) => (iso ? Date.parse(iso) : null);
  const start = toTime(spec.start);
  const end = toTime(spec.end);
  // One row per person; each series holds one stay per person (null when they had fewer).
  const span = (pair) => (pair ? [toTime(pair[0]), toTime(pair[1]) ?? end ?? toTime(pair[0])] : null);
  canvas.parentElement.style.height = `${Math.max(8, spec.labels.length * 2.2 + 4)}rem`;
  const clock = (v) => new Date(v).toISOString().slice(11, 16);
  return new Chart(canvas, {
    type: "bar",
    data: {
      labels: spec.labels,
      datasets: spec.series.map((s) => ({
        label: s.label, data: s.data.map(span), backgroundColor: seriesColours()[0],
        borderSkipped: false, grouped: false,
      })),
    },
    options: {
      indexAxis: "y", responsive: true, maintainAspectRatio: false,
      plugins: {
        legend: { display: false },
        tooltip: { callbacks: { label: (c) => `${clock(c.raw[0])} – ${clock(c.raw[1])} UTC` } },
      },
      scales: {
        x: {
          type: "linear", min: start ?? undefined, max: end ?? undefined,
          ticks: { callback: (v) => clock(v), maxTicksLimit: 8 },
          title: { display: true, text: "time (UTC)" },
        },
      },
    },
  });
}

function drawCharts() {
  if (typeof Chart === "undefined") return;
  chartTheme();
  for (const canvas of document.querySelectorAll("canvas[data-chart]")) {
    const spec = JSON.parse(canvas.dataset.chart);
    if (!spec.labels.length) {
      canvas.parentElement.replaceWith(Object.assign(document.createElement("p"), {
        textContent: "Nothing to draw in this period.",
      }));
      continue;
    }
    if (spec.kind === "timeline") timelineChart(canvas, spec);
    else barChart(canvas, spec);
  }
}

function cell(row, text, tag = "td") {
  const td = document.createElement(tag);
  if (tag === "th") td.scope = "row";
  td.textContent = text ?? "–";
  row.appendChild(td);
  return td;
}

function eventRow(e) {
  const tr = document.createElement("tr");
  tr.className = `fresh${e.handler_status === "failed" ? " failed" : ""}`;
  const th = cell(tr, "", "th");
  const link = document.createElement("a");
  link.href = e.url;
  link.textContent = String(e.id);
  th.appendChild(link);
  cell(tr, e.received);
  cell(tr, e.tenant);
  cell(tr, e.event);
  const source = cell(tr, e.source === "api" ? "" : e.source_label);
  if (e.source === "api") {
    const badge = document.createElement("span");
    badge.className = "badge api";
    badge.textContent = e.source_label;
    source.appendChild(badge);
  }
  cell(tr, e.room_id).className = "mono";
  cell(tr, e.event_id).className = "mono";
  const status = document.createElement("span");
  status.className = `status ${e.handler_status}`;
  status.textContent = e.handler_status;
  cell(tr, "").appendChild(status);
  return tr;
}

function followEvents() {
  const table = document.getElementById("events");
  if (!table) return;
  const live = document.getElementById("live");
  if (table.dataset.live !== "true") return;
  let newest = Number(table.dataset.newest || 0);
  let lastCount = 0;
  const page = Number(table.dataset.page || 50);
  const poll = async () => {
    try {
      const url = new URL(table.dataset.feed, window.location.href);
      url.searchParams.set("after", String(newest));
      const answer = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
      const { rows } = await answer.json();
      lastCount = rows.length;
      const body = table.tBodies[0];
      for (const e of rows) { // oldest first: each goes on top
        body.querySelector("tr.empty")?.remove();
        body.insertBefore(eventRow(e), body.firstChild);
        newest = Math.max(newest, e.id);
      }
      if (rows.length) live.textContent = `${rows.length} new ${rows.length === 1 ? "delivery" : "deliveries"}.`;
    } catch (error) {
      live.textContent = "Live updates paused: the server did not answer. Retrying.";
    }
    // A full page means more are waiting: fetch them at once.
    window.setTimeout(poll, lastCount >= page ? 50 : 2000);
  };
  window.setTimeout(poll, 2000);
}

document.addEventListener("DOMContentLoaded", () => {
  drawCharts();
  followEvents();
});
