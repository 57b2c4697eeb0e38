//! CONTRACT STUB.
#![allow(missing_docs, unused_variables)]
#[derive(Debug, Clone, clap::Args)]
pub struct SinkArgs {}
pub async fn run(args: SinkArgs) -> anyhow::Result<()> {
    unimplemented!()
}
