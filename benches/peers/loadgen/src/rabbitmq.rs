//! rabbitmq load generator (to be written).

use crate::report::{Report, Workload};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub workload: Workload,
}

pub async fn run(_a: Args) -> anyhow::Result<Report> {
    anyhow::bail!("not written yet")
}
