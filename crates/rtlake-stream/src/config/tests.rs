//! Tests of the `[run]` section: its layers, flags and checks.

use super::*;
use crate::registry::Registry;
use rtlake_core::config::{Layers, Origins, Section};

fn sink(op: &str) -> toml::Value {
    let mut t = toml::Table::new();
    t.insert("operator".into(), op.into());
    t.insert("table".into(), "gold.t".into());
    toml::Value::Array(vec![toml::Value::Table(t)])
}

/// A registry with operators of a domain of its own.
fn orders() -> Registry {
    let mut r = Registry::new();
    for name in ["bronze", "orders-by-shop"] {
        r.operator(name, rtlake_core::schema::REJECTED, None, |_| {
            Err(crate::Error::new(crate::Kind::Config, "not built in tests"))
        });
    }
    r
}

#[test]
fn layers_apply_in_order_defaults_file_env_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rtlake.toml");
    std::fs::write(
        &file,
        "[run]\nmax-batch-events = 10\nlateness = \"1m\"\ntrigger = \"low-latency\"\n",
    )
    .unwrap();
    let mut layers = Layers::new().file(&file).unwrap().env(
        [
            ("RTLAKE_RUN_MAX_BATCH_EVENTS".to_string(), "20".to_string()),
            ("RTLAKE_RUN_LATENESS".to_string(), "2m".to_string()),
            ("RTLAKE_LOG".to_string(), "debug".to_string()),
        ],
        &["run"],
    );
    let mut run: RunConfig = layers.parse().unwrap();
    use clap::Parser;
    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        run: RunFlags,
    }
    let flags = Cmd::parse_from([
        "run",
        "--lateness",
        "3m",
        "--group",
        "g1",
        "--partitions",
        "0,2",
        "--assignment",
        "static",
        "--no-fail-on-data-loss",
    ]);
    flags.run.apply(&mut run, layers.origins_mut());
    run.check(layers.origins()).unwrap();
    assert_eq!(run.max_batch_events, 20, "the environment beats the file");
    assert_eq!(
        run.lateness.get().as_secs(),
        180,
        "a flag beats the environment"
    );
    assert_eq!(
        run.trigger,
        Trigger::LowLatency,
        "the file beats the default"
    );
    assert_eq!(run.group(), "g1");
    assert_eq!(run.partitions, Some(vec![0, 2]));
    assert!(!run.fail_on_data_loss);
    assert_eq!(layers.origins().of("run.group-id"), "flag --group");
    assert_eq!(
        layers.origins().of("run.max-batch-events"),
        "variable RTLAKE_RUN_MAX_BATCH_EVENTS"
    );
    assert!(layers.origins().of("run.trigger").starts_with("file "));
}

#[test]
fn a_flag_sets_its_field_and_is_its_origin() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        run: RunFlags,
    }
    let (mut run, mut at) = (RunConfig::default(), Origins::default());
    Cmd::parse_from(["run", "--rejected-value-max", "64KiB"])
        .run
        .apply(&mut run, &mut at);
    assert_eq!(run.rejected_value_max, ByteSize(64 << 10));
    assert_eq!(at.of("run.rejected-value-max"), "flag --rejected-value-max");
}

#[test]
fn a_bad_flag_value_is_named_with_the_flag() {
    let mut run = RunConfig::default();
    let mut at = Origins::default();
    use clap::Parser;
    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        run: RunFlags,
    }
    Cmd::parse_from(["run", "--partitions", "1"])
        .run
        .apply(&mut run, &mut at);
    let e = run.check(&at).unwrap_err().to_string();
    assert!(
        e.contains("run.partitions") && e.contains("flag --partitions") && e.contains("static"),
        "{e}"
    );
    let e = Cmd::try_parse_from(["run", "--lateness", "10"])
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("--lateness") && e.contains("no unit"), "{e}");
}

#[test]
fn sinks_name_the_operators_the_domain_registered() {
    let with = |op: &str| {
        let layers = Layers::new().set("run.sinks", sink(op), "pipeline file p.toml");
        let run: RunConfig = layers.section().unwrap();
        run.check_pipeline(layers.origins(), &orders())
    };
    // A name the domain registered passes.
    with("orders-by-shop").expect("a registered operator");
    let e = with("changes").unwrap_err().to_string();
    assert!(
        e.contains("run.sinks[0]")
            && e.contains("\"changes\" is not one of bronze, orders-by-shop"),
        "{e}"
    );
    let e = RunConfig::default()
        .check_pipeline(&Origins::default(), &orders())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("at least one sink"),
        "no sinks and no default: {e}"
    );
}

#[test]
fn the_domains_pipeline_is_the_default_and_a_file_source_drops_its_topics() {
    let default = vec![
        SinkConfig {
            value_format: None,
            schema_registry: None,
            operator: "bronze".into(),
            table: None,
            topic: None,
            key: None,
            sql: None,
            format: None,
            mode: SinkMode::Append,
            primary_key: Vec::new(),
            delete_when: None,
            order_by: None,
        },
        SinkConfig {
            value_format: None,
            schema_registry: None,
            operator: "bronze".into(),
            table: None,
            topic: Some("out".into()),
            key: None,
            sql: None,
            format: None,
            mode: SinkMode::Append,
            primary_key: Vec::new(),
            delete_when: None,
            order_by: None,
        },
    ];
    let run = RunConfig::default();
    assert_eq!(run.sinks(&default), default);
    let run = RunConfig {
        source: "file:x.jsonl".into(),
        ..RunConfig::default()
    };
    assert_eq!(run.sinks(&default), default[..1]);
}

#[test]
fn an_upsert_sink_names_its_key_and_only_upsert_sinks_take_upsert_keys() {
    let check = |extra: &[(&str, toml::Value)]| {
        let mut t = toml::Table::new();
        t.insert("operator".into(), "bronze".into());
        t.insert("table".into(), "gold.t".into());
        for (k, v) in extra {
            t.insert((*k).into(), v.clone());
        }
        let sinks = toml::Value::Array(vec![toml::Value::Table(t)]);
        let layers = Layers::new().set("run.sinks", sinks, "pipeline file p.toml");
        let run: RunConfig = layers.section().map_err(|e| e.to_string())?;
        run.check_pipeline(layers.origins(), &orders())
            .map_err(|e| e.to_string())
    };
    let key = || toml::Value::Array(vec!["id".into()]);
    check(&[("mode", "upsert".into()), ("primary-key", key())]).expect("a keyed upsert sink");
    check(&[
        ("mode", "upsert".into()),
        ("primary-key", key()),
        ("delete-when", "op = 'd'".into()),
        ("order-by", "seq".into()),
    ])
    .expect("with deletes and an order");
    let e = check(&[("mode", "upsert".into())]).unwrap_err();
    assert!(
        e.contains("run.sinks[0]") && e.contains("primary-key"),
        "{e}"
    );
    let e = check(&[("order-by", "seq".into())]).unwrap_err();
    assert!(e.contains("set mode = \"upsert\""), "{e}");
    let e = check(&[("mode", "merge".into())]).unwrap_err();
    assert!(
        e.contains("`merge`") && e.contains("`append` or `upsert`"),
        "{e}"
    );
    let mut topic = toml::Table::new();
    topic.insert("operator".into(), "bronze".into());
    topic.insert("topic".into(), "out".into());
    topic.insert("mode".into(), "upsert".into());
    topic.insert("primary-key".into(), key());
    let layers = Layers::new().set(
        "run.sinks",
        toml::Value::Array(vec![toml::Value::Table(topic)]),
        "p.toml",
    );
    let e = layers
        .section::<RunConfig>()
        .map_err(|e| e.to_string())
        .and_then(|run| {
            run.check_pipeline(layers.origins(), &orders())
                .map_err(|e| e.to_string())
        })
        .unwrap_err();
    assert!(e.contains("for table sinks"), "{e}");
}
