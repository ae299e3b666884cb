"""Outside readers against rtlake: every table of a lake read by Python deltalake, polars, DuckDB
(over deltalake's Arrow dataset) and `rtlake sql`; each prints the row count and a checksum of the
table's content, and the script says whether they all agree.

    scripts/readers.sh LAKE [RTLAKE_BINARY]

The checksum is engine-neutral: the row count, the sum of every integer column, the sums of every
timestamp column's seconds and microseconds within the second, and the number of distinct values of every string column,
hashed together. Exit status 1 if any reader disagrees.
"""

import hashlib
import json
import os
import subprocess
import sys

import deltalake
import duckdb
import polars as pl
import pyarrow as pa


def tables(lake):
    """(SQL name, path) of every Delta table under the lake root."""
    out = []
    for dirpath, dirnames, _ in os.walk(lake):
        if "_delta_log" in dirnames:
            rel = os.path.relpath(dirpath, lake)
            if not rel.startswith("_checkpoints") and not rel.startswith("_maintenance"):
                out.append((rel.replace(os.sep, "."), dirpath))
            dirnames.clear()
    return sorted(out)


def kinds(schema):
    """Column name -> 'int', 'ts' or 'str' for the columns the checksum uses."""
    out = {}
    for f in schema:
        t = f.type
        if pa.types.is_integer(t):
            out[f.name] = "int"
        elif pa.types.is_timestamp(t):
            out[f.name] = "ts"
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            out[f.name] = "str"
    return out


def digest(rows, parts):
    h = hashlib.sha256(json.dumps([int(rows)] + [int(p or 0) for p in parts]).encode())
    return rows, h.hexdigest()[:16]


def sql_for(name, cols, micros, div="/"):
    """The checksum's SQL; `micros` turns a timestamp column into microseconds, `div` is the
    dialect's integer division."""
    exprs = ["count(*)"]
    for c, k in cols.items():
        q = f'"{c}"'
        if k == "int":
            exprs.append(f"sum({q})")
        elif k == "ts":
            # Seconds and the microseconds within them, summed apart: a sum of raw
            # microseconds overflows 64 bits on a big table (DuckDB widens, others wrap).
            exprs.append(f"sum({micros(q)} {div} 1000000)")
            exprs.append(f"sum({micros(q)} % 1000000)")
        else:
            exprs.append(f"count(DISTINCT {q})")
    return f"SELECT {', '.join(exprs)} FROM {name}"


def with_deltalake(path, cols):
    t = deltalake.DeltaTable(path).to_pyarrow_table()
    import pyarrow.compute as pc

    parts = []
    for c, k in cols.items():
        col = t.column(c)
        if k == "int":
            parts.append(pc.sum(col).as_py())
        elif k == "ts":
            us = col.cast(pa.timestamp("us", tz=col.type.tz)).cast(pa.int64())
            parts.append(pc.sum(pc.divide(us, 1_000_000)).as_py())
            parts.append(pc.sum(pc.subtract(us, pc.multiply(pc.divide(us, 1_000_000), 1_000_000))).as_py())
        else:
            parts.append(pc.count_distinct(col).as_py())
    return digest(t.num_rows, parts)


def with_polars(path, cols):
    df = pl.read_delta(path)
    parts = []
    for c, k in cols.items():
        s = df.get_column(c)
        if k == "int":
            parts.append(s.sum())
        elif k == "ts":
            us = s.dt.cast_time_unit("us").cast(pl.Int64)
            parts.append((us // 1_000_000).sum())
            parts.append((us % 1_000_000).sum())
        else:
            parts.append(s.drop_nulls().n_unique())
    return digest(df.height, parts)


def with_duckdb(path, cols):
    con = duckdb.connect()
    con.register("dataset", deltalake.DeltaTable(path).to_pyarrow_dataset())
    row = con.execute(sql_for("dataset", cols, lambda c: f"epoch_us({c})", "//")).fetchone()
    return digest(row[0], row[1:])


def with_rtlake(binary, lake, name, cols):
    # DataFusion: a microsecond timestamp cast to BIGINT is its microseconds since the epoch.
    q = sql_for(name, cols, lambda c: f"CAST({c} AS BIGINT)")
    out = subprocess.run(
        [binary, "sql", "--lake", lake, "--format", "csv", q],
        capture_output=True,
        text=True,
        env={**os.environ, "RTLAKE_LOG": "error"},
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip())
    # The header, then one row of numbers; NULL (the sum of no rows) is empty.
    row = [int(v) if v else 0 for v in out.stdout.strip().splitlines()[1].split(",")]
    return digest(row[0], row[1:])


def main():
    lake = sys.argv[1]
    binary = sys.argv[2] if len(sys.argv) > 2 else "rtlake"
    bad = 0
    print(f"{'table':28} {'reader':10} {'rows':>10}  checksum")
    for name, path in tables(lake):
        cols = kinds(deltalake.DeltaTable(path).to_pyarrow_dataset().schema)
        results = {}
        for reader, f in [
            ("deltalake", lambda: with_deltalake(path, cols)),
            ("polars", lambda: with_polars(path, cols)),
            ("duckdb", lambda: with_duckdb(path, cols)),
            ("rtlake", lambda: with_rtlake(binary, lake, name, cols)),
        ]:
            try:
                results[reader] = f()
            except Exception as e:  # a reader that fails is a disagreement, reported
                results[reader] = (None, f"error: {e}"[:60])
        agree = len(set(results.values())) == 1
        bad += not agree
        for reader, (rows, h) in results.items():
            print(f"{name:28} {reader:10} {rows if rows is not None else '-':>10}  {h}")
        print(f"{name:28} {'':10} {'':>10}  {'agree' if agree else 'DISAGREE'}")
    sys.stdout.flush()
    os._exit(1 if bad else 0)  # deltalake's wheel can abort in interpreter teardown


if __name__ == "__main__":
    main()
