//! `host aiven credentials`: the certificates and connection details of
//! Aiven's hosted Kafka and PostgreSQL.

use crate::config::Pipeline;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum AivenCommand {
    /// Fetch the certificates and connection details of the [aiven] services.
    ///
    /// Writes certs/ca.pem (the project CA), certs/service.cert and
    /// certs/service.key (the Kafka access certificate and key, the key
    /// readable by you only) next to the pipeline file, then prints the
    /// [kafka] and [postgres] sections to paste into it; --write sets them in
    /// the file instead, keeping its comments. The PostgreSQL password is never
    /// printed: the sections read it from PGPASSWORD.
    ///
    /// Needs an [aiven] section (project, kafka_service, pg_service) and an API
    /// token in the variable token_env names (AIVEN_TOKEN by default). Make one
    /// in the Aiven console (User information → Tokens) or with
    /// `avn user access-token create`.
    ///
    /// Example: AIVEN_TOKEN=... host aiven credentials pipeline.toml --write
    Credentials {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Set the [kafka] and [postgres] sections in the pipeline file
        /// instead of printing them.
        #[arg(long)]
        write: bool,
    },
}

/// `host aiven ...`.
pub async fn execute(command: AivenCommand) -> anyhow::Result<()> {
    match command {
        AivenCommand::Credentials { pipeline: path, write } => {
            let pipeline = Pipeline::load(&path)?;
            crate::provision::credentials::run(&pipeline, write, &mut std::io::stdout()).await
        }
    }
}
