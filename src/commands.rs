//! The subcommands: parse arguments, call services, print results. Keys and generated
//! passwords go to stdout (to be piped), everything else to the log on stderr.

use std::io::BufRead;

use crate::{
    auth::random::random_alphanumeric,
    config::{Cli, Command, Settings},
    db::connect_and_migrate,
    services::{
        audit::Actor,
        tokens::{self, Lifetime, NewToken, TokenName},
        users::{self, NewUser, Username},
    },
    startup::Application,
    state::policy_from,
    verify::Revocations,
};

/// A command's failure, shown as one line on stderr.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Startup(#[from] crate::startup::StartupError),
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("{0}")]
    User(#[from] users::UserError),
    #[error("{0}")]
    Token(#[from] tokens::TokenError),
    #[error("invalid {0}")]
    Invalid(#[from] crate::services::Invalid),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub async fn run(cli: Cli) -> Result<(), CommandError> {
    let settings = cli.settings;
    match cli.command {
        Command::Serve => serve(&settings).await,
        Command::Migrate => {
            connect_and_migrate(&settings.database_url).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::CreateUser {
            username,
            admin,
            password_stdin,
        } => create_user(&settings, &username, admin, password_stdin).await,
        Command::CreateToken {
            username,
            token_name,
            expires_in,
        } => {
            let db = connect_and_migrate(&settings.database_url).await?;
            let name = TokenName::parse(&token_name)?;
            let user = users::find_by_username(&db, &username)
                .await
                .map_err(|e| match e {
                    users::UserError::NotFound => {
                        users::UserError::Invalid(crate::services::Invalid::new(
                            "username",
                            format!("no user named '{username}'"),
                        ))
                    }
                    other => other,
                })?;
            let lifetime = expires_in.map_or(Lifetime::Forever, Lifetime::from_duration);
            let issued = tokens::issue(
                &db,
                &Revocations::none(),
                &policy_from(&settings),
                &Actor::command_line(),
                &user,
                NewToken::device(name, lifetime),
            )
            .await?;
            println!("{}", issued.key.reveal());
            Ok(())
        }
        Command::Prune => {
            let db = connect_and_migrate(&settings.database_url).await?;
            println!(
                "{}",
                tokens::prune(&db, &Revocations::none(), &Actor::command_line()).await?
            );
            Ok(())
        }
    }
}

async fn serve(settings: &Settings) -> Result<(), CommandError> {
    let application = Application::build(settings).await?;
    application.run_until_stopped().await?;
    Ok(())
}

async fn create_user(
    settings: &Settings,
    username: &str,
    admin: bool,
    password_stdin: bool,
) -> Result<(), CommandError> {
    let username = Username::parse(username)?;
    let (password, generated) = if password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        (line.trim_end_matches(['\r', '\n']).to_owned(), false)
    } else {
        (random_alphanumeric(20), true)
    };
    users::validate_password(&password)?;
    let db = connect_and_migrate(&settings.database_url).await?;
    let new = NewUser {
        username,
        password: password.clone(),
        is_admin: admin,
    };
    let created = users::create(
        &db,
        &Revocations::none(),
        &policy_from(settings),
        &Actor::command_line(),
        new,
    )
    .await?;
    eprintln!(
        "created user {}{}",
        created.user.username,
        if admin { " (admin)" } else { "" }
    );
    if generated {
        println!("password: {password}");
    }
    if let Some(issued) = created.signup_token {
        println!("token {}: {}", issued.token.name, issued.key.reveal());
    }
    Ok(())
}
