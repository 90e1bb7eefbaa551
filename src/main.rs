use std::process::ExitCode;

use multitoken::{
    commands,
    config::{Cli, Command},
};

#[tokio::main]
async fn main() -> ExitCode {
    multitoken::auth::password::return_freed_hash_memory();
    let cli = match Cli::parse_or_explain() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    // A server logs what it does; a one-shot command speaks only through its output and errors.
    let default_filter = match cli.command {
        Command::Serve => "info,sqlx=warn",
        _ => "warn",
    };
    multitoken::logging::init(cli.settings.log_format, default_filter);
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
