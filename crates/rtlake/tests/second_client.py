"""The wire protocol checked by a client that is not librdkafka: kafka-python (pure Python).

  second_client.py produce BOOTSTRAP TOPIC EVENTS.jsonl
      publishes every line, keyed by its stationId, through an idempotent producer; prints JSON
      {"sent": n}
  second_client.py check BOOTSTRAP CHANGES_TOPIC PIPELINE GROUP...
      reads the Kafka sink's topic from the start in a group of its own, commits, and prints
      JSON: the messages, how many carry all three rtlake headers with this pipeline, the
      distinct (partition, offset) origins, a sample; then every group the cluster lists, and
      for each GROUP its committed offsets and lag on every topic it has offsets for.
"""

import json
import sys
import uuid

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition


def produce(bootstrap, topic, path):
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=20, client_id="rtlake-second-client")
    sent = 0
    futures = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            key = json.loads(line)["stationId"].encode()
            futures.append(p.send(topic, key=key, value=line.encode()))
            sent += 1
    for fu in futures:
        fu.get(timeout=60)
    p.flush()
    p.close()
    print(json.dumps({"sent": sent}))


def lag(admin, consumer, group):
    offsets = admin.list_group_offsets({group: None})[group]
    parts = list(offsets.keys())
    ends = consumer.end_offsets(parts) if parts else {}
    out = []
    for tp in sorted(parts, key=lambda t: (t.topic, t.partition)):
        committed = offsets[tp].offset
        out.append({"topic": tp.topic, "partition": tp.partition, "committed": committed, "end": ends[tp], "lag": ends[tp] - committed})
    return out


def check(bootstrap, topic, pipeline, groups):
    mine = "second-client-" + uuid.uuid4().hex[:8]
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=mine, auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=15000, client_id="rtlake-second-client")
    messages = 0
    with_headers = 0
    origins = set()
    sample = None
    for m in c:
        messages += 1
        h = {k: v.decode() for k, v in (m.headers or [])}
        if h.get("rtlake-pipeline") == pipeline and "rtlake-partition" in h and "rtlake-offset" in h:
            with_headers += 1
            origins.add((int(h["rtlake-partition"]), int(h["rtlake-offset"])))
        if sample is None:
            sample = {"key": m.key.decode() if m.key else None, "value": json.loads(m.value), "headers": h}
    c.commit()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="rtlake-second-client")
    listed = sorted(g["group_id"] if isinstance(g, dict) else g[0] for g in admin.list_groups())
    report = {
        "messages": messages,
        "with_headers": with_headers,
        "distinct_origins": len(origins),
        "sample": sample,
        "groups_listed": listed,
        "own_group": mine,
        "lag": {g: lag(admin, c, g) for g in groups + [mine]},
    }
    c.close()
    admin.close()
    print(json.dumps(report))


if __name__ == "__main__":
    if sys.argv[1] == "produce":
        produce(sys.argv[2], sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
    else:
        sys.exit(__doc__)
