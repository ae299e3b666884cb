// The Kafka page: brokers, topics (partitions, offsets, config), consumer groups and their
// lag, and a peek at a topic's newest messages.
"use strict";

function render(data) {
  document.getElementById("brokers").replaceChildren(el("h2", { text: `Brokers (bootstrap ${data.bootstrap})` }),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "id" }), el("th", { text: "host" }), el("th", { text: "port" }))),
      el("tbody", {}, ...data.brokers.map((b) => el("tr", {}, el("td", { text: b.id }), el("td", { text: b.host }), el("td", { text: b.port }))))));
  const topics = data.topics.map((t) => {
    if (t.error) return el("section", { class: "panel" }, el("h2", { text: t.name }), el("div", { class: "error", text: t.error }));
    const msgs = t.partitions.reduce((a, p) => a + (p.high - p.low), 0);
    const parts = el("table", {}, el("thead", {}, el("tr", {}, ...["partition", "leader", "replicas", "low", "high", "messages"].map((h, i) => el("th", { class: i > 2 ? "num" : "", text: h })))),
      el("tbody", {}, ...t.partitions.map((p) => el("tr", {}, el("td", { text: p.id }), el("td", { text: p.leader }), el("td", { text: p.replicas.join(",") }),
        el("td", { class: "num", text: fmt.int(p.low) }), el("td", { class: "num", text: fmt.int(p.high) }), el("td", { class: "num", text: fmt.int(p.high - p.low) })))));
    const groups = t.groups.length ? el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "group" }), el("th", { text: "partition" }), el("th", { class: "num", text: "committed" }), el("th", { class: "num", text: "lag" }))),
      el("tbody", {}, ...t.groups.map((g) => el("tr", {}, el("td", { text: g.group }), el("td", { text: g.partition }), el("td", { class: "num", text: fmt.int(g.committed) }), el("td", { class: "num", text: fmt.int(g.lag) })))))
      : el("div", { class: "muted", text: "no consumer group has committed offsets" });
    const members = (t.members || []).length ? el("table", {}, el("thead", {}, el("tr", {}, ...["group", "member", "client", "host"].map((h) => el("th", { text: h })))),
      el("tbody", {}, ...t.members.map((m) => el("tr", {}, el("td", { text: m.group }), el("td", { text: m.member_id }), el("td", { text: m.client_id }), el("td", { text: m.host })))))
      : el("div", { class: "muted", text: "members: not listed by this cluster" });
    const config = el("details", {}, el("summary", { text: `config (${t.config.length} entries)` }),
      el("table", {}, el("tbody", {}, ...t.config.map(([k, v]) => el("tr", {}, el("td", { text: k }), el("td", { text: v }))))));
    const notes = (t.notes || []).map((n) => el("div", { class: "muted", text: n }));
    return el("section", { class: "panel topic", "data-topic": t.name },
      el("h2", {}, `topic ${t.name} · ${t.partitions.length} partitions · ${fmt.int(msgs)} messages `, el("button", { onclick: () => peek(t.name), text: "peek" })),
      parts, el("h2", { text: "consumer groups", style: "margin-top:10px" }), groups, members, config, ...notes);
  });
  document.getElementById("topics").replaceChildren(...topics);
}

async function peek(topic) {
  const box = document.getElementById("peek");
  box.replaceChildren(el("h2", { text: `Last messages of ${topic}` }), el("div", { class: "muted", text: "reading…" }));
  try {
    const msgs = await getJson(`/api/kafka/topics/${encodeURIComponent(topic)}/messages?limit=5`);
    box.replaceChildren(el("h2", { text: `Last messages of ${topic}` }), el("table", {},
      el("thead", {}, el("tr", {}, ...["partition", "offset", "time (KST)", "key", "value"].map((h) => el("th", { text: h })))),
      el("tbody", {}, ...msgs.map((m) => el("tr", {}, el("td", { text: m.partition }), el("td", { text: m.offset }), el("td", { text: fmt.time(m.timestamp) }),
        el("td", { text: m.key || "" }), el("td", {}, el("code", { text: (m.value || "").slice(0, 300) })))))));
  } catch (e) {
    box.append(el("div", { class: "error", text: String(e.message || e) }));
  }
}

refreshEvery("/api/kafka", render, "topics", 5000);
