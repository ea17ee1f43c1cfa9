//! `leukoscope user`: the operators who may sign in to the device's web page (`DATA/users`, argon2id).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use leukoscope::web::auth::Users;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    /// The device's data folder (as `serve --data`).
    #[arg(long, global = true)]
    data: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Adds an operator; the password is read from the terminal (twice), or as one line from stdin.
    Add {
        /// Letters, digits, '.', '_' or '-', at most 32.
        name: String,
    },
    /// Sets an operator's password.
    Passwd {
        /// The operator.
        name: String,
    },
    /// Removes an operator.
    Remove {
        /// The operator.
        name: String,
    },
    /// Lists the operators.
    List,
}

fn password(name: &str) -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password(format!("password for {name}: "))?;
        let b = rpassword::prompt_password("again: ")?;
        anyhow::ensure!(a == b, "the two passwords differ; nothing changed");
        return Ok(a);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let Some(data) = &args.data else {
        anyhow::bail!("say which data folder: --data DIR (the one `serve --data` uses)");
    };
    let users = Users::new(data);
    match &args.action {
        Action::Add { name } => {
            std::fs::create_dir_all(data)?;
            users.add(name, &password(name)?)?;
            eprintln!("operator {name} added");
        }
        Action::Passwd { name } => {
            users.set_password(name, &password(name)?)?;
            eprintln!(
                "password of {name} changed (sessions already signed in stay until they end)"
            );
        }
        Action::Remove { name } => {
            users.remove(name)?;
            eprintln!("operator {name} removed");
        }
        Action::List => {
            for (name, _) in users.list()? {
                println!("{name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
