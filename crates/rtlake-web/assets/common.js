// Shared helpers of the rtlake pages: the SQL API, formatting, SVG charts.
"use strict";

// The API token, when the server needs one: opened as /#token=TOKEN, kept for this tab.
const apiToken = (() => {
  const m = location.hash.match(/(?:^#|&)token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("rtlake-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("rtlake-token");
})();

function authHeaders(extra = {}) {
  return apiToken ? { ...extra, Authorization: `Bearer ${apiToken}` } : extra;
}

// An API URL for EventSource, which cannot send headers.
function withToken(url) {
  return apiToken ? `${url}${url.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(apiToken)}` : url;
}

async function sql(query, limit) {
  const r = await fetch("/api/sql", { method: "POST", headers: authHeaders({ "Content-Type": "application/json" }), body: JSON.stringify({ sql: query, limit }) });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body.rows;
}

async function getJson(url) {
  const r = await fetch(url, { headers: authHeaders() });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

// Renders `url`'s JSON now and every `ms`; a failure shows in the element `errorTarget`.
function refreshEvery(url, render, errorTarget, ms) {
  const tick = async () => {
    try {
      render(await getJson(url));
    } catch (e) {
      document.getElementById(errorTarget).replaceChildren(el("section", { class: "panel error", text: String(e.message || e) }));
    }
  };
  tick();
  setInterval(tick, ms);
}

const fmt = {
  int: (n) => (n == null ? "–" : Number(n).toLocaleString("en-US")),
  // In the zone a page names (<html data-tz="...">, a domain's), else the browser's own.
  time: (ms) => (ms == null ? "–" : new Date(ms).toLocaleTimeString("en-GB", { timeZone: document.documentElement.dataset.tz || undefined })),
  ago: (s) => (s == null ? "–" : s < 60 ? `${s.toFixed(1)} s ago` : `${(s / 60).toFixed(1)} min ago`),
  bytes: (b) => (b == null ? "–" : b < 1024 ? `${b} B` : b < 1048576 ? `${(b / 1024).toFixed(1)} KiB` : `${(b / 1048576).toFixed(1)} MiB`),
};

function el(tag, attrs = {}, ...children) {
  const ns = ["svg", "path", "circle", "line", "polyline", "text", "g", "rect"].includes(tag) ? "http://www.w3.org/2000/svg" : null;
  const e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

// A line chart: series = [{name, color, points: [[x, y], ...]}], x in ms.
function lineChart(svg, series, opts = {}) {
  const W = 600, H = 180, L = 36, B = 20, T = 8, R = 8;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.replaceChildren();
  const pts = series.flatMap((s) => s.points);
  if (!pts.length) {
    svg.append(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", text: opts.empty || "no data yet" }));
    return;
  }
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1), y1 = Math.max(...ys, 1);
  const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R), Y = (y) => H - B - (y / y1) * (H - B - T);
  svg.append(el("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }), el("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  svg.append(el("text", { x: L - 4, y: T + 8, "text-anchor": "end", text: String(Math.round(y1)) }), el("text", { x: L - 4, y: H - B, "text-anchor": "end", text: "0" }));
  svg.append(el("text", { x: L, y: H - 4, text: fmt.time(x0) }), el("text", { x: W - R, y: H - 4, "text-anchor": "end", text: fmt.time(x1) }));
  series.forEach((s, i) => {
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join("");
    svg.append(el("path", { d, fill: "none", stroke: s.color, "stroke-width": 1.6, class: `series series-${i}` }));
    if (s.points.length < 40) s.points.forEach((p) => svg.append(el("circle", { cx: X(p[0]).toFixed(1), cy: Y(p[1]).toFixed(1), r: 2, fill: s.color })));
    svg.append(el("text", { x: W - R - 4, y: T + 10 + i * 12, "text-anchor": "end", fill: s.color, text: s.name }));
  });
}
