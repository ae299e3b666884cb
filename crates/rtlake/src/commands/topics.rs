//! `rtlake topics create|list|describe|delete`: topic administration on any Kafka cluster.

use super::load;
use crate::cli::{Cli, TopicsCommand};
use anyhow::{Context, Result, bail};

/// Runs a topics subcommand.
pub async fn topics(cli: &Cli, op: &TopicsCommand) -> Result<()> {
    match op {
        TopicsCommand::Create {
            name,
            kafka,
            partitions,
            replication_factor,
            retention,
            cleanup_policy,
            entries,
        } => {
            let cfg = load(cli, |c, o| kafka.clone().apply(&mut c.kafka, o))?;
            let mut config = Vec::new();
            if let Some(r) = retention {
                let ms = if r.trim() == "-1" {
                    "-1".to_string()
                } else {
                    let d: rtlake_core::units::HumanDuration = r
                        .parse()
                        .map_err(|e: String| anyhow::anyhow!("--retention: {e}"))?;
                    d.get().as_millis().to_string()
                };
                config.push(("retention.ms".to_string(), ms));
            }
            if let Some(p) = cleanup_policy {
                if !matches!(
                    p.as_str(),
                    "delete" | "compact" | "compact,delete" | "delete,compact"
                ) {
                    bail!("--cleanup-policy: `{p}` is not delete, compact or compact,delete");
                }
                config.push(("cleanup.policy".to_string(), p.clone()));
            }
            for e in entries {
                let (k, v) = e
                    .split_once('=')
                    .with_context(|| format!("--config-entry `{e}` is not KEY=VALUE"))?;
                config.push((k.trim().to_string(), v.trim().to_string()));
            }
            let spec = rtlake_kafka::admin::TopicSpec {
                name: name.clone(),
                partitions: partitions.unwrap_or(cfg.kafka.partitions),
                replication_factor: replication_factor.unwrap_or(cfg.kafka.replication_factor),
                config,
            };
            if spec.partitions < 1 || (spec.replication_factor < 1 && spec.replication_factor != -1)
            {
                bail!(
                    "--partitions must be at least 1, and --replication-factor at least 1 (or -1: the cluster's default)"
                );
            }
            if rtlake_kafka::Cluster::connect(&cfg.kafka)?
                .create_topic(&spec)
                .await?
            {
                let rf = if spec.replication_factor == -1 {
                    "the cluster's default".to_string()
                } else {
                    spec.replication_factor.to_string()
                };
                out!(
                    "created topic {name} ({} partitions, replication factor {rf})",
                    spec.partitions
                );
            } else {
                out!("topic {name} already exists");
            }
        }
        TopicsCommand::List { kafka } => {
            let cfg = load(cli, |c, o| kafka.clone().apply(&mut c.kafka, o))?;
            let list = rtlake_kafka::Cluster::connect(&cfg.kafka)?
                .list_topics()
                .await?;
            out!("{:<40} {:>10} {:>12}", "TOPIC", "PARTITIONS", "MESSAGES");
            for t in list {
                out!("{:<40} {:>10} {:>12}", t.name, t.partitions, t.messages);
            }
        }
        TopicsCommand::Describe {
            name,
            kafka,
            groups,
        } => {
            let cfg = load(cli, |c, o| kafka.clone().apply(&mut c.kafka, o))?;
            let mut groups = groups.clone();
            groups.push(cfg.run.group());
            let d = rtlake_kafka::Cluster::connect(&cfg.kafka)?
                .describe_topic(name, &groups)
                .await?;
            out!("topic {} ({} partitions)", d.name, d.partitions.len());
            out!(
                "\n{:>9} {:>7} {:<10} {:>12} {:>12} {:>10}",
                "PARTITION",
                "LEADER",
                "REPLICAS",
                "LOW",
                "HIGH",
                "MESSAGES"
            );
            for p in &d.partitions {
                let replicas = p
                    .replicas
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(",");
                out!(
                    "{:>9} {:>7} {:<10} {:>12} {:>12} {:>10}",
                    p.id,
                    p.leader,
                    replicas,
                    p.low,
                    p.high,
                    p.high - p.low
                );
            }
            if !d.config.is_empty() {
                out!("\nCONFIG");
                for (k, v) in &d.config {
                    out!("  {k} = {v}");
                }
            }
            out!(
                "\n{:<30} {:>9} {:>12} {:>10}",
                "CONSUMER GROUP",
                "PARTITION",
                "COMMITTED",
                "LAG"
            );
            if d.groups.is_empty() {
                out!("  (no group has committed offsets on this topic)");
            }
            for n in &d.notes {
                out!("note: {n}");
            }
            for g in &d.groups {
                let c = g.committed.map_or("-".to_string(), |c| c.to_string());
                out!("{:<30} {:>9} {:>12} {:>10}", g.group, g.partition, c, g.lag);
            }
            if !d.members.is_empty() {
                out!("\n{:<30} {:<40} {:<20} HOST", "GROUP", "MEMBER", "CLIENT");
                for m in &d.members {
                    out!(
                        "{:<30} {:<40} {:<20} {}",
                        m.group,
                        m.member_id,
                        m.client_id,
                        m.host
                    );
                }
            }
        }
    }
    Ok(())
}
