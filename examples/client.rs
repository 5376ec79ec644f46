//! The async client against a running server (`cargo run --release -- serve` in another shell).
//!
//! Run with `cargo run --example client [ADDR]`.

use sluice::client::{Client, LogSettings, QueueSettings, Record, Source, Start, SubscribeOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7450".into());
    let client = Client::builder(addr)
        .client_name("sluice-example")
        .connect()
        .await?;

    // Topics: publish a batch, read it back as a named subscriber.
    if let Err(e) = client.create_topic("example", LogSettings::default()).await {
        eprintln!("create_topic: {e}");
    }
    let batch: Vec<Record> = (0..5)
        .map(|i| Record::from_value(format!("hello {i}")))
        .collect();
    let published = client.publish("example", &batch).await?;
    println!(
        "published offsets {}..={}",
        published.base_offset, published.last_offset
    );
    let mut sub = client
        .subscribe(
            "example",
            SubscribeOptions::named("reader").from(Start::Offset(published.base_offset)),
        )
        .await?;
    while let Some(msg) = sub.next().await {
        let msg = msg?;
        println!(
            "read {}: {}",
            msg.offset,
            String::from_utf8_lossy(&msg.record.value)
        );
        if msg.offset == published.last_offset {
            sub.commit_message(&msg).await?;
            break;
        }
    }

    // Queues: a competing consumer acking each message.
    if let Err(e) = client
        .create_queue("example-jobs", QueueSettings::default())
        .await
    {
        eprintln!("create_queue: {e}");
    }
    client
        .publish("example-jobs", &[Record::from_value("job")])
        .await?;
    let mut consumer = client
        .consume(Source::Queue("example-jobs".into()), 10)
        .await?;
    if let Some(job) = consumer.next().await {
        let job = job?;
        println!("job {} attempt {}", job.offset, job.attempt);
        job.ack().await?;
    }

    let t = client.describe_topic("example").await?;
    for p in &t.partitions {
        println!(
            "topic example (id {}), partition {}: offsets {}..{}, {} bytes",
            t.id, p.partition, p.start_offset, p.end_offset, p.size_bytes
        );
    }
    Ok(())
}
