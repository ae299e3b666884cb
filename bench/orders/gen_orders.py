#!/usr/bin/env python3
"""Shop orders for the declared-pipeline benchmark (bench/orders/orders.toml): JSON Lines of
orders (amounts sometimes as strings, about 1% undecodable, every 250th order 20 minutes
late) and customers.csv for the join. Deterministic: the same --orders gives the same bytes.

    python3 bench/orders/gen_orders.py --orders 1000000 --out /tmp/orders
"""
import argparse
import datetime
import os

BASE = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
CUSTOMERS = 2000
REGIONS = ["north", "south", "east", "west", "centre"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=1_000_000)
    ap.add_argument("--out", required=True, help="a folder: orders.jsonl and customers.csv go there")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "customers.csv"), "w") as f:
        f.write("id,region\n")
        for c in range(CUSTOMERS - 10):  # the last ten are unknown: the join drops them
            f.write(f"c{c},{REGIONS[c % len(REGIONS)]}\n")
    with open(os.path.join(a.out, "orders.jsonl"), "w") as f:
        for i in range(a.orders):
            c = (i * 7919) % CUSTOMERS
            us = i * 50_000 + ((i * 13) % 7) * 1_000_000  # 20 orders a second, a little out of order
            if i % 250 == 249:
                us -= 1_200_000_000
            at = (BASE + datetime.timedelta(microseconds=us)).isoformat()
            amount = (i * 37) % 2000 / 4 - 5
            if i % 97 == 13:
                f.write(f'{{"order_id":"o-{i}","customer":"c{c}","amount":"lots","ordered_at":"{at}"}}\n')
            elif i % 2 == 0:
                f.write(f'{{"order_id":"o-{i}","customer":"c{c}","amount":"{amount}","ordered_at":"{at}","note":"x"}}\n')
            else:
                f.write(f'{{"order_id":"o-{i}","customer":"c{c}","amount":{amount},"ordered_at":"{at}"}}\n')


if __name__ == "__main__":
    main()
