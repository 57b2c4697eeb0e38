//! CONTRACT STUB.
#![allow(missing_docs, unused_variables)]
#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenArgs {}
pub async fn run(args: LoadgenArgs) -> anyhow::Result<()> {
    unimplemented!()
}
