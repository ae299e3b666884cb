"""Apache Spark with delta-spark as an SQL engine for the tests: one local Spark session, started
once, that runs the statements it reads from stdin, one JSON string a line, and answers each
with one JSON line: {"columns": [...], "rows": [[...], ...]} or {"error": "..."}. Values are JSON numbers, strings
(dates and timestamps in ISO 8601) or null.

    python spark_sql.py JARS WAREHOUSE [ICEBERG_REST]
    (JARS: delta-spark's and Iceberg's jars, comma-separated, as scripts/spark.sh jars prints
    them; WAREHOUSE: a folder for the session's catalog; ICEBERG_REST: an Iceberg REST catalog's
    URL, Spark's catalog `ice`)
"""
import datetime
import decimal
import json
import sys

from pyspark.sql import SparkSession


def value(v):
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, (datetime.datetime, datetime.date)):
        return v.isoformat()
    return v


spark = (
    SparkSession.builder.master("local[2]")
    .appName("rtlake-test-reader")
    .config("spark.jars", sys.argv[1])
    .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
    .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
    .config("spark.sql.session.timeZone", "UTC")
    .config("spark.sql.shuffle.partitions", "2")
    .config("spark.ui.enabled", "false")
    .config("spark.ui.showConsoleProgress", "false")
    # A test's tables are small: Delta's default of 50 partitions to read a log is 50 tasks.
    .config("spark.databricks.delta.snapshotPartitions", "2")
    .config("spark.driver.host", "127.0.0.1")
    .config("spark.driver.bindAddress", "127.0.0.1")
    .config("spark.sql.warehouse.dir", sys.argv[2])
)
if len(sys.argv) > 3 and sys.argv[3]:
    spark = (
        spark.config("spark.sql.catalog.ice", "org.apache.iceberg.spark.SparkCatalog")
        .config("spark.sql.catalog.ice.type", "rest")
        .config("spark.sql.catalog.ice.uri", sys.argv[3])
        # A table is read again as it is now, not as the session first loaded it.
        .config("spark.sql.catalog.ice.cache-enabled", "false")
    )
spark = spark.getOrCreate()
spark.sparkContext.setLogLevel("ERROR")
print(json.dumps({"ready": spark.version}), flush=True)

for line in sys.stdin:
    if not line.strip():
        continue
    statement = json.loads(line)
    try:
        df = spark.sql(statement)
        out = {"columns": df.columns, "rows": [[value(v) for v in r] for r in df.collect()]}
    except Exception as e:  # the test prints Spark's message, naming the statement
        out = {"error": f"{type(e).__name__}: {e}".splitlines()[0][:2000]}
    print(json.dumps(out), flush=True)
spark.stop()
