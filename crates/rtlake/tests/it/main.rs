//! The integration tests: one test binary, a module per subject, each against real servers (the
//! embedded broker or Apache Kafka, Delta tables read back by Python's deltalake, SeaweedFS,
//! Chromium). One binary because each links the whole stack (DataFusion, delta-rs, librdkafka):
//! 21 binaries took about 18 s and 260 MB each to link.
//!
//! One subject: `cargo test -p rtlake --test it -- bronze::`. The tests that time a recovery,
//! and must not share the two cores with anything else, are in the `recovery` binary.

#[path = "../common/mod.rs"]
mod common;

mod backfill;
mod broker_restart;
mod bronze;
mod cdc;
mod dashboard;
mod declared;
mod demo;
mod engines;
mod evolution;
mod exactly_once;
mod gbfs;
mod gold;
mod group;
mod layers;
mod maintenance;
mod producers;
mod rejected;
mod s3;
mod second_client;
mod security;
mod serve;
mod sources;
mod transactions;
mod typed;
