use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    doorman::cli::run().await
}
