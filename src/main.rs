use std::process::ExitCode;

use multitoken::{commands, config::Cli};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::parse_or_explain() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info,sqlx=warn"))
        .init();
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
