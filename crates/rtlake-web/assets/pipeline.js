// The pipeline page: per pipeline and partition, lag, events/s, epoch duration, freshness (now
// minus the Kafka timestamp of the newest event the lake holds), outputs' versions and commit
// ages, state size; rejected and late counts.
"use strict";

function lagPill(lag) {
  const cls = lag == null ? "" : lag === 0 ? "ok" : lag < 10000 ? "warn" : "bad";
  return el("span", { class: `pill ${cls}`, text: fmt.int(lag) });
}

function render(data) {
  const main = document.getElementById("pipelines");
  const out = [];
  if (!data.pipelines.length) out.push(el("section", { class: "panel muted", text: "No pipeline has written to this lake yet. Start one with `rtlake run`." }));
  for (const p of data.pipelines) {
    const parts = el("table", { class: "partitions" }, el("thead", {}, el("tr", {},
      ...["partition", "high watermark", "in the lake", "lag", "events/s", "epoch", "last epoch", "freshness", "state"].map((h, i) => el("th", { class: i ? "num" : "", text: h })))));
    const body = el("tbody");
    for (const q of p.partitions) {
      const state = Object.entries(q.state_bytes || {}).map(([k, v]) => `${k} ${fmt.bytes(v)}`).join(", ");
      body.append(el("tr", { "data-partition": q.partition },
        el("td", { text: q.partition }), el("td", { class: "num", text: fmt.int(q.high_watermark) }),
        el("td", { class: "num", text: fmt.int(q.committed) }), el("td", { class: "num lag" }, lagPill(q.lag)),
        el("td", { class: "num", text: q.events_per_sec == null ? "–" : fmt.int(q.events_per_sec) }),
        el("td", { class: "num", text: q.epoch_duration_ms == null ? "–" : `${q.epoch_duration_ms} ms` }),
        el("td", { class: "num", text: q.last_epoch_at_ms ? fmt.ago((Date.now() - q.last_epoch_at_ms) / 1000) : "–" }),
        el("td", { class: "num freshness", text: q.freshness_s == null ? "–" : q.freshness_s < 60 ? `${q.freshness_s.toFixed(2)} s` : fmt.ago(q.freshness_s).replace(" ago", "") }),
        el("td", { class: "num", text: state || "–" })));
    }
    parts.append(body);
    const tables = el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "output" }), el("th", { class: "num", text: "Delta version" }), el("th", { class: "num", text: "last commit" }))),
      el("tbody", {}, ...p.tables.map((t) => el("tr", {}, el("td", { text: t.table }), el("td", { class: "num", text: fmt.int(t.version) }), el("td", { class: "num", text: fmt.ago(t.age_s) })))));
    out.push(el("section", { class: "panel pipeline", "data-pipeline": p.pipeline },
      el("h2", { text: `pipeline ${p.pipeline} · topic ${p.topic}` }), parts, el("h2", { text: "outputs", style: "margin-top:12px" }), tables));
  }
  const rej = el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "refused by" }), el("th", { text: "reason" }), el("th", { class: "num", text: "rows" }))),
    el("tbody", {}, ...(data.rejected.length ? data.rejected.map((r) => el("tr", {}, el("td", { text: r.sink }), el("td", { text: r.reason }), el("td", { class: "num", text: fmt.int(r.n) })))
      : [el("tr", {}, el("td", { colspan: 3, class: "muted", text: "nothing rejected" }))])));
  out.push(el("section", { class: "panel" }, el("h2", { text: "_rejected (late, stale, decode, validation)" }), rej));
  main.replaceChildren(...out);
}

refreshEvery("/api/pipeline", render, "pipelines", 2000);
