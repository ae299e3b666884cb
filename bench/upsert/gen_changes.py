"""Changes for the upsert benchmark (bench/upsert/run.sh), as JSON Lines.

    python3 gen_changes.py load    --keys 1000000 > load.jsonl     # every key once, in key order
    python3 gen_changes.py random  --keys 1000000 --changes 200000 --seed 1 > random.jsonl
    python3 gen_changes.py recent  --keys 1000000 --changes 200000 --seed 1 > recent.jsonl
    python3 gen_changes.py state random --keys 1000000 --changes 200000 --seed 1   # the table after: id,v lines

`random` changes keys drawn from the whole key space (every file of the table holds some);
`recent` changes keys among the newest 2% (as a database's recently written rows are the ones
updated again): the two ends of what an upsert costs. Every change carries a `seq` that grows, so
the sink's `order-by = "seq"` sees them in order; one in 20 changes is a delete (`op = "d"`).
"""
import argparse
import json
import random
import sys

ap = argparse.ArgumentParser()
ap.add_argument("kind", choices=["load", "random", "recent", "state"])
ap.add_argument("of", nargs="?", choices=["random", "recent"])
ap.add_argument("--keys", type=int, default=1_000_000)
ap.add_argument("--changes", type=int, default=200_000)
ap.add_argument("--seed", type=int, default=1)
a = ap.parse_args()
out = sys.stdout
if a.kind == "load":
    for k in range(a.keys):
        out.write(json.dumps({"id": k, "v": k % 1000, "name": f"row {k}", "seq": k, "op": "c"}) + "\n")
else:
    kind = a.of if a.kind == "state" else a.kind
    rng = random.Random(a.seed)
    lo = 0 if kind == "random" else a.keys - a.keys // 50
    state = {k: k % 1000 for k in range(a.keys)}
    for i in range(a.changes):
        k = rng.randrange(lo, a.keys)
        op = "d" if i % 20 == 19 else "u"
        if a.kind == "state":
            if op == "d":
                state.pop(k, None)
            else:
                state[k] = i
        else:
            out.write(json.dumps({"id": k, "v": i, "name": f"changed {i}", "seq": a.keys + i, "op": op}) + "\n")
    if a.kind == "state":
        for k in sorted(state):
            out.write(f"{k},{state[k]}\n")
