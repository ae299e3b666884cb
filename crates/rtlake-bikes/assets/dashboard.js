// The live dashboard: districts and stations on a map, updated from /api/live (server-sent
// events); charts and tables from the SQL API.
"use strict";

const W = 600;
let project = null;
const stations = new Map(); // id -> station
let updates = 0;
let selected = null;

function colour(s) {
  if (s.bikes <= 0) return "#dc2626";
  const full = s.racks > 0 ? s.bikes / s.racks : 1;
  if (full < 0.3) return "#f59e0b";
  if (full < 0.9) return "#16a34a";
  return "#2563eb";
}

function rings(geometry) {
  if (geometry.type === "Polygon") return geometry.coordinates;
  if (geometry.type === "MultiPolygon") return geometry.coordinates.flat();
  return [];
}

async function drawDistricts() {
  const geo = await getJson("/api/districts");
  const all = geo.features.flatMap((f) => rings(f.geometry).flat());
  const lons = all.map((c) => c[0]), lats = all.map((c) => c[1]);
  const lon0 = Math.min(...lons), lon1 = Math.max(...lons), lat0 = Math.min(...lats), lat1 = Math.max(...lats);
  const k = Math.cos(((lat0 + lat1) / 2) * Math.PI / 180);
  const scale = (W - 20) / ((lon1 - lon0) * k);
  const H = Math.ceil((lat1 - lat0) * scale) + 20;
  project = (lon, lat) => [10 + (lon - lon0) * k * scale, 10 + (lat1 - lat) * scale];
  const svg = document.getElementById("map-svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const g = el("g", { id: "districts" });
  const pick = document.getElementById("district-pick");
  const names = [];
  for (const f of geo.features) {
    const name = f.properties.name_eng || f.properties.name || "";
    names.push(name);
    const d = rings(f.geometry).map((r) => r.map((c, i) => (i ? "L" : "M") + project(c[0], c[1]).map((v) => v.toFixed(1)).join(",")).join("") + "Z").join("");
    g.append(el("path", { class: "district", d, "data-name": name }, el("title", { text: name })));
    const cs = rings(f.geometry)[0] || [];
    const cx = cs.reduce((a, c) => a + c[0], 0) / (cs.length || 1), cy = cs.reduce((a, c) => a + c[1], 0) / (cs.length || 1);
    const [x, y] = project(cx, cy);
    g.append(el("text", { x: x.toFixed(1), y: y.toFixed(1), "text-anchor": "middle", text: name.replace(/-gu$/, "") }));
  }
  for (const n of names.sort()) pick.append(el("option", { value: n, text: n }));
  svg.append(g, el("g", { id: "stations" }));
}

function upsert(s) {
  const layer = document.getElementById("stations");
  let c = document.getElementById(`st-${s.id}`);
  const old = stations.get(s.id);
  stations.set(s.id, s);
  if (!c) {
    const [x, y] = project(s.lon, s.lat);
    c = el("circle", { id: `st-${s.id}`, class: "station", cx: x.toFixed(1), cy: y.toFixed(1), r: 2.2, "data-id": s.id });
    c.append(el("title"));
    c.addEventListener("click", () => showHistory(s.id));
    layer.append(c);
  } else if (old && old.bikes !== s.bikes) {
    c.classList.remove("flash");
    void c.getBBox();
    c.classList.add("flash");
  }
  c.setAttribute("fill", colour(s));
  c.setAttribute("data-bikes", s.bikes);
  c.firstChild.textContent = `${s.name} (${s.id}): ${s.bikes} of ${s.racks} racks`;
}

function refreshFigures() {
  let bikes = 0, newest = 0;
  for (const s of stations.values()) {
    bikes += s.bikes;
    newest = Math.max(newest, s.polled_at);
  }
  document.getElementById("bikes-total").textContent = fmt.int(bikes);
  document.getElementById("bikes-total").dataset.value = bikes;
  document.getElementById("station-count").textContent = fmt.int(stations.size);
  document.getElementById("last-poll").textContent = newest ? fmt.time(newest) : "–";
  document.getElementById("last-poll").dataset.value = newest;
  document.getElementById("updates").textContent = fmt.int(updates);
}

async function loadSnapshot() {
  const snap = await getJson("/api/stations");
  snap.stations.forEach(upsert);
  refreshFigures();
}

function connect() {
  const status = document.getElementById("live-status");
  const es = new EventSource(withToken("/api/live"));
  es.onopen = () => { status.textContent = "live"; status.classList.remove("down"); };
  es.onerror = () => { status.textContent = "reconnecting…"; status.classList.add("down"); };
  es.addEventListener("stations", (e) => {
    const burst = JSON.parse(e.data);
    burst.stations.forEach(upsert);
    updates += 1;
    refreshFigures();
    window.rtlakeLastBurst = { at: Date.now(), count: burst.stations.length, sent_at: burst.sent_at };
    // Kafka timestamp of the burst's oldest event to its arrival here (kept for tests and tools).
    if (burst.oldest_kafka_ts) (window.rtlakeLatencies ||= []).push(Date.now() - burst.oldest_kafka_ts);
  });
  es.addEventListener("resync", () => loadSnapshot());
}

function quote(s) {
  return "'" + String(s).replace(/'/g, "''") + "'";
}

async function drawDistrictChart() {
  const district = document.getElementById("district-pick").value;
  const where = district ? `WHERE district = ${quote(district)}` : "";
  const svg = document.getElementById("district-chart");
  try {
    const rows = await sql(`SELECT CAST(window_start AS BIGINT) / 1000 AS t, sum(rentals) AS rentals, sum(returns) AS returns
      FROM gold.district_5min_total ${where} GROUP BY 1 ORDER BY 1 DESC LIMIT 48`);
    rows.reverse();
    lineChart(svg, [
      { name: "rentals", color: "#dc2626", points: rows.map((r) => [r.t, r.rentals]) },
      { name: "returns", color: "#2563eb", points: rows.map((r) => [r.t, r.returns]) },
    ], { empty: "no final 5-minute window yet" });
  } catch (e) {
    lineChart(svg, [], { empty: "no district windows yet" });
  }
}

async function drawBusiest() {
  const body = document.querySelector("#busiest tbody");
  try {
    const rows = await sql(`SELECT station_id, district, rentals, returns FROM (
        SELECT station_id, max(district) AS district, sum(rentals) AS rentals, sum(returns) AS returns
        FROM silver.station_changes
        WHERE polled_at >= (SELECT max(polled_at) FROM silver.station_changes) - INTERVAL '1 hour'
        GROUP BY station_id) ORDER BY rentals + returns DESC, station_id LIMIT 10`);
    body.replaceChildren(...rows.map((r) => {
      const s = stations.get(r.station_id);
      const tr = el("tr", { onclick: () => showHistory(r.station_id), style: "cursor:pointer" },
        el("td", { text: s ? `${s.name} (${r.station_id})` : r.station_id }), el("td", { text: r.district || "" }),
        el("td", { class: "num", text: fmt.int(r.rentals) }), el("td", { class: "num", text: fmt.int(r.returns) }));
      return tr;
    }));
  } catch (e) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 4, class: "muted", text: "no changes yet" })));
  }
}

async function showHistory(id) {
  if (selected) document.getElementById(`st-${selected}`)?.classList.remove("selected");
  selected = id;
  document.getElementById(`st-${id}`)?.classList.add("selected");
  const s = stations.get(id);
  document.getElementById("history-title").textContent = `Station history: ${s ? s.name : ""} (${id})`;
  const rows = await sql(`SELECT CAST(polled_at AS BIGINT) / 1000 AS t, bikes_parked FROM bronze.station_status
    WHERE station_id = ${quote(id)} ORDER BY polled_at DESC LIMIT 720`);
  rows.reverse();
  lineChart(document.getElementById("history-chart"), [{ name: "bikes parked", color: "#16a34a", points: rows.map((r) => [r.t, r.bikes_parked]) }]);
  const note = document.getElementById("history-note");
  note.textContent = `${rows.length} snapshots in the lake` + (s ? `; now ${s.bikes} of ${s.racks} racks` : "");
  note.dataset.snapshots = rows.length;
}

(async function main() {
  await drawDistricts();
  await loadSnapshot();
  connect();
  document.getElementById("district-pick").addEventListener("change", drawDistrictChart);
  const slow = () => { drawDistrictChart(); drawBusiest(); };
  slow();
  setInterval(slow, 15000);
  window.rtlakeReady = true;
})();
