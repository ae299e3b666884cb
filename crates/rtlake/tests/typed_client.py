"""A typed topic written by Confluent's own serializers (confluent-kafka's SchemaRegistryClient
and AvroSerializer or JSONSerializer), for crates/rtlake/tests/it/typed.rs.

  typed_client.py produce BOOTSTRAP TOPIC REGISTRY VERSION FIRST COUNT
      registers the orders schema VERSION (1, or 2: 1 plus an optional `note`) under
      TOPIC-value, and publishes orders FIRST..FIRST+COUNT in the wire format, keyed by order
      id, over 3 partitions; prints JSON {"sent": n, "schema_id": id}
  typed_client.py bad BOOTSTRAP TOPIC REGISTRY
      publishes three messages rtlake must refuse: one framed with a schema id the registry
      does not hold, one whose Avro body is cut short, one in a schema (registered under
      TOPIC-other) whose `quantity` is a string; prints JSON {"sent": 3}
  typed_client.py consume BOOTSTRAP TOPIC REGISTRY COUNT
      reads TOPIC (read_committed) with AvroDeserializer until COUNT distinct order ids came, or
      60 s passed; prints JSON {"messages": n, "orders": [[order_id, quantity, status, city,
      price, note], ...]} (one row per distinct order id)
  typed_client.py produce-proto ... / bad-proto ...
      the same in Protobuf (ProtobufSerializer, its message class compiled by grpcio-tools'
      protoc); the third bad message is one whose body is cut short
  typed_client.py produce-json ... / bad-json ...
      the same in JSON Schema (JSONSerializer); orders have no `price`, and the third bad
      message is one framed with version 1's id whose `quantity` is not a number

The registry's credentials, if any, come from RTLAKE_SCHEMA_REGISTRY_USER and _PASSWORD (the
variables rtlake reads). Every field of an order is a function of its number (order(i) below):
the test computes the same rows to compare the lake with.
"""

import json
import os
import sys
import time
from decimal import Decimal

from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.json_schema import JSONSerializer
from fastavro import parse_schema, schemaless_writer
from io import BytesIO
from confluent_kafka.serialization import MessageField, SerializationContext

FIELDS_V1 = [
    {"name": "order_id", "type": "string"},
    {"name": "customer", "type": "string"},
    {"name": "quantity", "type": "int"},
    {"name": "amount", "type": "double"},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
    {"name": "ordered_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID", "SHIPPED"]}},
    {"name": "address", "type": {"type": "record", "name": "Address", "fields": [
        {"name": "city", "type": "string"},
        {"name": "zip", "type": ["null", "string"], "default": None},
    ]}},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "attrs", "type": {"type": "map", "values": "long"}},
    {"name": "coupon", "type": ["null", "string"], "default": None},
]
# Version 2 adds an optional field, as a backward-compatible change does.
FIELDS_V2 = FIELDS_V1 + [{"name": "note", "type": ["null", "string"], "default": None}]
BASE_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z

# The same orders in JSON Schema, without `price`.
PROPERTIES_V1 = {
    "order_id": {"type": "string"},
    "customer": {"type": "string"},
    "quantity": {"type": "integer"},
    "amount": {"type": "number"},
    "ordered_at": {"type": "string", "format": "date-time"},
    "status": {"enum": ["NEW", "PAID", "SHIPPED"]},
    "address": {"$ref": "#/definitions/Address"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "attrs": {"type": "object", "additionalProperties": {"type": "integer"}},
    "coupon": {"type": ["string", "null"]},
}
ADDRESS = {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": ["string", "null"]}}, "required": ["city"]}


def json_schema(version, quantity="integer"):
    props = dict(PROPERTIES_V1, quantity={"type": quantity})
    if version == 2:
        props["note"] = {"type": ["string", "null"]}
    return json.dumps({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Order",
        "type": "object",
        "properties": props,
        "required": ["order_id", "customer", "quantity", "amount", "ordered_at", "status", "address", "tags", "attrs"],
        "definitions": {"Address": ADDRESS},
    })


PROTO = """syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
message Order {
  string order_id = 1;
  string customer = 2;
  QUANTITY quantity = 3;
  double amount = 4;
  google.protobuf.Timestamp ordered_at = 5;
  Status status = 6;
  Address address = 7;
  repeated string tags = 8;
  map<string, int64> attrs = 9;
  optional string coupon = 10;NOTE
  message Address { string city = 1; optional string zip = 2; }
  enum Status { NEW = 0; PAID = 1; SHIPPED = 2; }
}
"""


def order_class(version, quantity="int32"):
    """The Order message class of schema `version`, compiled by protoc (grpcio-tools)."""
    import importlib
    import tempfile
    import grpc_tools
    from grpc_tools import protoc

    d = tempfile.mkdtemp()
    note = "\n  optional string note = 11;" if version == 2 else ""
    with open(f"{d}/orders.proto", "w") as f:
        f.write(PROTO.replace("QUANTITY", quantity).replace("NOTE", note))
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    if protoc.main(["protoc", f"-I{d}", f"-I{well_known}", f"--python_out={d}", f"{d}/orders.proto"]):
        sys.exit("protoc failed")
    sys.path.insert(0, d)
    return importlib.import_module("orders_pb2").Order


def proto_order(cls, i, version):
    o = order(i, version)
    m = cls(order_id=o["order_id"], customer=o["customer"], quantity=o["quantity"], amount=o["amount"],
            status=cls.Status.Value(o["status"]), tags=o["tags"])
    m.ordered_at.FromMilliseconds(o["ordered_at"])
    m.address.city = o["address"]["city"]
    if o["address"]["zip"] is not None:
        m.address.zip = o["address"]["zip"]
    m.attrs.update(o["attrs"])
    if o["coupon"] is not None:
        m.coupon = o["coupon"]
    if version == 2 and o["note"] is not None:
        m.note = o["note"]
    return m


def json_order(i, version):
    o = order(i, version)
    del o["price"]
    o["ordered_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(BASE_MS / 1000 + i))
    return o


def schema(version):
    fields = FIELDS_V1 if version == 1 else FIELDS_V2
    return json.dumps({"type": "record", "name": "Order", "namespace": "shop", "fields": fields})


def order(i, version):
    o = {
        "order_id": f"o-{i:05d}",
        "customer": f"c{i % 7}",
        "quantity": i % 5 + 1,
        "amount": (i % 200) / 4.0,
        "price": Decimal(i % 1000) / Decimal(100),
        "ordered_at": BASE_MS + i * 1000,
        "status": ["NEW", "PAID", "SHIPPED"][i % 3],
        "address": {"city": ["Seoul", "Busan", "Incheon"][i % 3], "zip": None if i % 4 == 0 else f"{i % 100:05d}"},
        "tags": [f"t{j}" for j in range(i % 3)],
        "attrs": {"weight": i % 11, "box": i % 2},
        "coupon": None if i % 5 else f"SAVE{i % 50}",
    }
    if version == 2:
        o["note"] = None if i % 2 else f"note {i}"
    return o


def registry(url):
    conf = {"url": url}
    user, password = os.environ.get("RTLAKE_SCHEMA_REGISTRY_USER"), os.environ.get("RTLAKE_SCHEMA_REGISTRY_PASSWORD")
    if user:
        conf["basic.auth.user.info"] = f"{user}:{password}"
    return SchemaRegistryClient(conf)


def producer(bootstrap):
    return Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20})


def produce(bootstrap, topic, url, version, first, count, fmt="avro"):
    sr = registry(url)
    ctx = SerializationContext(topic, MessageField.VALUE)
    if fmt == "avro":
        schema_id = sr.register_schema(f"{topic}-value", Schema(schema(version), "AVRO"))
        ser, make = AvroSerializer(sr, schema(version)), order
    elif fmt == "proto":
        from confluent_kafka.schema_registry.protobuf import ProtobufSerializer, _schema_to_str
        cls = order_class(version)
        schema_id = sr.register_schema(f"{topic}-value", Schema(_schema_to_str(cls.DESCRIPTOR.file), "PROTOBUF"))
        ser = ProtobufSerializer(cls, sr, {"subject.name.strategy": lambda ctx, record: f"{ctx.topic}-value"})

        def make(i, version):
            return proto_order(cls, i, version)
    else:
        schema_id = sr.register_schema(f"{topic}-value", Schema(json_schema(version), "JSON"))
        ser, make = JSONSerializer(json_schema(version), sr), json_order
    p = producer(bootstrap)
    errors = []

    def done(err, _msg):
        if err is not None:
            errors.append(str(err))

    for i in range(first, first + count):
        p.produce(topic, key=f"o-{i:05d}", value=ser(make(i, version), ctx), partition=i % 3, on_delivery=done)
        p.poll(0)
    left = p.flush(60)
    if errors or left:
        sys.exit(f"not delivered: {left} left, errors {errors[:3]}")
    print(json.dumps({"sent": count, "schema_id": schema_id}))


def framed(schema_id, body):
    return b"\x00" + schema_id.to_bytes(4, "big") + body


def bad(bootstrap, topic, url):
    sr = registry(url)
    ser = AvroSerializer(sr, schema(1))
    good = ser(order(99_999, 1), SerializationContext(topic, MessageField.VALUE))
    cut = good[: len(good) - 3]
    # A schema the registry took under another subject, which does not resolve to the topic's.
    other = json.loads(schema(1))
    other["fields"][2] = {"name": "quantity", "type": "string"}
    other_id = sr.register_schema(f"{topic}-other", Schema(json.dumps(other), "AVRO"))
    o = order(99_998, 1)
    o["quantity"] = "many"
    body = BytesIO()
    schemaless_writer(body, parse_schema(other), o)
    send(bootstrap, topic, [framed(999_999, good[5:]), cut, framed(other_id, body.getvalue())])


def bad_json(bootstrap, topic, url):
    sr = registry(url)
    v1 = sr.register_schema(f"{topic}-value", Schema(json_schema(1), "JSON"))
    other_id = sr.register_schema(f"{topic}-other", Schema(json_schema(1, quantity="string"), "JSON"))
    o = json_order(99_998, 1)
    o["quantity"] = "many"
    body = json.dumps(o).encode()
    send(bootstrap, topic, [framed(999_999, body), framed(other_id, body), framed(v1, body)])


def consume(bootstrap, topic, url, count):
    de = AvroDeserializer(registry(url))
    ctx = SerializationContext(topic, MessageField.VALUE)
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"typed-check-{topic}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })
    c.subscribe([topic])
    orders, messages = {}, 0
    deadline = time.time() + 60
    while len(orders) < count and time.time() < deadline:
        m = c.poll(1.0)
        if m is None or m.error():
            continue
        messages += 1
        v = de(m.value(), ctx)
        orders[v["order_id"]] = [v["order_id"], v["quantity"], v["status"], v["address"]["city"], str(v["price"]), v.get("note")]
    c.close()
    print(json.dumps({"messages": messages, "orders": sorted(orders.values())}))


def bad_proto(bootstrap, topic, url):
    from confluent_kafka.schema_registry.protobuf import _schema_to_str
    sr = registry(url)
    cls = order_class(1)
    v1 = sr.register_schema(f"{topic}-value", Schema(_schema_to_str(cls.DESCRIPTOR.file), "PROTOBUF"))
    text = PROTO.replace("QUANTITY", "string").replace("NOTE", "")
    other_id = sr.register_schema(f"{topic}-other", Schema(text, "PROTOBUF"))
    body = proto_order(cls, 99_998, 1).SerializeToString()
    # After the schema id: the message indexes, here a count of 0 (the file's first message).
    send(bootstrap, topic, [framed(999_999, b"\x00" + body), framed(other_id, b"\x00" + body),
                            framed(v1, b"\x00" + body[:5])])


def send(bootstrap, topic, values):
    p = producer(bootstrap)
    for n, v in enumerate(values):
        p.produce(topic, key=f"bad-{n + 1}", value=v, partition=n % 3)
    if p.flush(60):
        sys.exit("not delivered")
    print(json.dumps({"sent": len(values)}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "produce":
        produce(args[0], args[1], args[2], int(args[3]), int(args[4]), int(args[5]))
    elif cmd == "produce-json":
        produce(args[0], args[1], args[2], int(args[3]), int(args[4]), int(args[5]), fmt="json")
    elif cmd == "bad":
        bad(args[0], args[1], args[2])
    elif cmd == "produce-proto":
        produce(args[0], args[1], args[2], int(args[3]), int(args[4]), int(args[5]), fmt="proto")
    elif cmd == "bad-proto":
        bad_proto(args[0], args[1], args[2])
    elif cmd == "consume":
        consume(args[0], args[1], args[2], int(args[3]))
    elif cmd == "bad-json":
        bad_json(args[0], args[1], args[2])
    else:
        sys.exit(__doc__)
