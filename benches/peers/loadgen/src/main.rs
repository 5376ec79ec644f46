//! Load generators for the brokers sluice is compared with, one subcommand per broker, each
//! driving the broker's own client crate on loopback. `benches/peers/run.sh` starts the brokers
//! and calls this; every run prints one JSON line (`report::Report`) on stdout.
//!
//! # Layout
//! - `report.rs`: the shared options, the latency histogram and the JSON result line.
//! - `rabbitmq.rs`: quorum and classic durable queues over AMQP 0-9-1 with publisher confirms
//!   (lapin); consume with one ack per message.
//! - `nats.rs`: JetStream file-storage streams (async-nats); publish with acks, consume from a
//!   pull consumer with one ack per message.

mod nats;
mod rabbitmq;
mod report;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "load generators for peer brokers")]
struct Cli {
    #[command(subcommand)]
    broker: Broker,
}

#[derive(Subcommand)]
enum Broker {
    /// RabbitMQ: a quorum or classic durable queue, publisher confirms, per-message acks.
    Rabbitmq(rabbitmq::Args),
    /// NATS JetStream: a file-storage stream, publish acks, per-message acks.
    Nats(nats::Args),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = rt.block_on(async {
        match cli.broker {
            Broker::Rabbitmq(a) => rabbitmq::run(a).await,
            Broker::Nats(a) => nats::run(a).await,
        }
    })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
