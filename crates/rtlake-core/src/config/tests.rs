//! Tests of the layered configuration and its validation.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_default_pipeline_is_pipelines_bikes_toml() {
    let sinks = SinkConfig::bike_pipeline();
    let ops: Vec<(&str, Option<&str>)> = sinks
        .iter()
        .map(|s| (s.operator.as_str(), s.topic.as_deref()))
        .collect();
    assert_eq!(
        ops,
        [
            ("bronze", None),
            ("changes", None),
            ("station-hourly", None),
            ("district-5min", None),
            ("changes", Some("bike.station-changes")),
        ]
    );
    assert_eq!(Config::default().run.sinks(), sinks);
}

#[test]
fn layers_apply_in_order_defaults_file_env_flags() {
    let dir = std::env::temp_dir().join(format!("rtlake-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rtlake.toml");
    std::fs::write(
        &file,
        "[kafka]\nbrokers = \"file:1\"\npartitions = 6\n[run]\nmax-batch-events = 10\n",
    )
    .unwrap();
    let cfg = ConfigLoader::new()
        .file(&file)
        .unwrap()
        .env(env(&[
            ("RTLAKE_KAFKA_BROKERS", "env:2"),
            ("RTLAKE_RUN_MAX_BATCH_EVENTS", "20"),
            ("RTLAKE_LOG", "debug"),
        ]))
        .set("kafka.brokers", "flag:3", "flag --brokers")
        .build()
        .unwrap();
    assert_eq!(cfg.kafka.brokers, "flag:3");
    assert_eq!(cfg.kafka.partitions, 6);
    assert_eq!(cfg.run.max_batch_events, 20);
    assert_eq!(cfg.kafka.topic, "bike.station-status");
}

#[test]
fn kafka_options_pass_through_and_no_secret_is_ever_shown() {
    let dir = std::env::temp_dir().join(format!("rtlake-cfg-opt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rtlake.toml");
    std::fs::write(
        &file,
        "[kafka.options]\n\"security.protocol\" = \"SASL_SSL\"\n\"sasl.password\" = \"sasl-pw-0123\"\n[lake.storage-options]\naws_secret_access_key = \"s3-secret-0123\"\n",
    )
    .unwrap();
    let cfg = ConfigLoader::new()
        .file(&file)
        .unwrap()
        .env(env(&[(
            "RTLAKE_SERVE_AUTH_TOKEN",
            "0123456789abcdef-token",
        )]))
        .build()
        .unwrap();
    assert_eq!(cfg.kafka.properties["security.protocol"], "SASL_SSL");
    assert_eq!(cfg.kafka.properties["sasl.password"], "sasl-pw-0123");
    assert_eq!(
        cfg.lake.storage_options["aws_secret_access_key"],
        "s3-secret-0123"
    );
    let token = cfg.serve.auth_token.as_ref().unwrap();
    assert_eq!(token.expose(), "0123456789abcdef-token");
    let shown = format!("{cfg:?} {}", toml::to_string(&cfg).unwrap());
    for secret in ["0123456789abcdef-token", "sasl-pw-0123", "s3-secret-0123"] {
        assert!(!shown.contains(secret), "{secret} shows in {shown}");
    }
    assert!(shown.contains("SASL_SSL"), "other options show: {shown}");
    let e = ConfigLoader::new()
        .env(env(&[("RTLAKE_SERVE_AUTH_TOKEN", "tooshort")]))
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("serve.auth-token") && !e.contains("tooshort"),
        "{e}"
    );
}

#[test]
fn errors_name_the_key_the_value_and_the_origin() {
    let e = ConfigLoader::new()
        .set_str("producer.max-in-flight", "9", "flag --max-in-flight")
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("producer.max-in-flight")
            && e.contains('9')
            && e.contains("flag --max-in-flight"),
        "{e}"
    );

    let e = ConfigLoader::new()
        .env(env(&[("RTLAKE_KAFKA_BROKERS", "localhost")]))
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("kafka.brokers")
            && e.contains("localhost")
            && e.contains("RTLAKE_KAFKA_BROKERS"),
        "{e}"
    );

    let e = ConfigLoader::new()
        .set_str("producer.linger", "20", "flag --linger")
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("no unit") && e.contains("linger"), "{e}");

    let e = ConfigLoader::new()
        .set_str("producer.compression", "lz5", "flag")
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("lz5") && e.contains("zstd"), "{e}");

    let e = ConfigLoader::new()
        .env(env(&[("RTLAKE_KAFKA_BROKER", "x:1")]))
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("broker"), "unknown keys are refused: {e}");

    let e = ConfigLoader::new()
        .set_str("source.start", "yesterday", "flag --start")
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("source.start") && e.contains("yesterday"), "{e}");
}

#[test]
fn speed_takes_max_or_a_factor() {
    let c = ConfigLoader::new()
        .set_str("source.speed", "max", "flag")
        .build()
        .unwrap();
    assert_eq!(c.source.speed, Speed::Max);
    let c = ConfigLoader::new()
        .set_str("source.speed", "60", "flag")
        .build()
        .unwrap();
    assert_eq!(c.source.speed, Speed::Factor(60.0));
    let c = ConfigLoader::new()
        .set_str("source.speed", "60x", "flag")
        .build()
        .unwrap();
    assert_eq!(c.source.speed, Speed::Factor(60.0));
    assert!(
        ConfigLoader::new()
            .set_str("source.speed", "0", "flag")
            .build()
            .is_err()
    );
}

#[test]
fn sinks_name_the_operators_the_binary_registered() {
    let sink = |op: &str| {
        let mut t = toml::Table::new();
        t.insert("operator".into(), op.into());
        t.insert("table".into(), "gold.t".into());
        toml::Value::Array(vec![toml::Value::Table(t)])
    };
    let with = |op: &str| {
        ConfigLoader::new()
            .set("run.sinks", sink(op), "pipeline file p.toml")
            .operators(["bronze", "orders-by-shop"])
    };
    // A name another domain crate registered passes; it is not a bike operator.
    with("orders-by-shop")
        .build()
        .expect("a registered operator");
    let e = with("changes").build().unwrap_err().to_string();
    assert!(
        e.contains("run.sinks[0]")
            && e.contains("\"changes\" is not one of bronze, orders-by-shop"),
        "{e}"
    );
    // Without the registry's names, the pipeline's builder judges the name.
    ConfigLoader::new()
        .set("run.sinks", sink("anything"), "test")
        .build()
        .expect("no registry given");
}
