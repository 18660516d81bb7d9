//! `phalanx pg-password --user NAME [--md5]`: reads a password from standard input (without
//! echo on a terminal) and prints the `[[pg_users]]` entry holding its hash, ready to paste
//! into the node configuration. The password itself is never printed or stored.

use std::io::{BufRead, IsTerminal, Write};

use clap::Args;

use super::hash::PasswordHash;

#[derive(Args)]
pub struct PasswordArgs {
    /// The PostgreSQL user name.
    #[arg(long)]
    pub user: String,
    /// An md5 hash (for clients without SCRAM) instead of a SCRAM-SHA-256 verifier.
    #[arg(long)]
    pub md5: bool,
}

/// The password could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("reading the password: {0}")]
    Read(#[from] std::io::Error),
    #[error("the password is empty")]
    Empty,
}

/// Reads the password (prompting on a terminal) and prints the config entry.
pub fn run(args: &PasswordArgs) -> Result<(), PasswordError> {
    let stdin = std::io::stdin();
    let password = if stdin.is_terminal() {
        eprint!("Password for {}: ", args.user);
        let _ = std::io::stderr().flush();
        let echo = EchoOff::new(&stdin);
        let line = read_password(&mut stdin.lock());
        drop(echo);
        eprintln!();
        line?
    } else {
        read_password(&mut stdin.lock())?
    };
    println!("{}", entry(&args.user, &password, args.md5));
    Ok(())
}

/// The first line of `input`, without its line ending.
fn read_password(input: &mut impl BufRead) -> Result<String, PasswordError> {
    let mut line = String::new();
    input.read_line(&mut line)?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(PasswordError::Empty);
    }
    Ok(password.to_owned())
}

/// The `[[pg_users]]` TOML entry.
fn entry(user: &str, password: &str, md5: bool) -> String {
    let hash = if md5 {
        PasswordHash::md5(user, password)
    } else {
        PasswordHash::scram(password)
    };
    // TOML basic strings escape like JSON's for these characters.
    let quoted_user = serde_json::Value::String(user.to_owned()).to_string();
    format!("[[pg_users]]\nname = {quoted_user}\npassword_hash = \"{hash}\"")
}

/// Turns terminal echo off until dropped.
struct EchoOff {
    saved: Option<nix::sys::termios::Termios>,
}

impl EchoOff {
    fn new(stdin: &std::io::Stdin) -> EchoOff {
        use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
        let Ok(saved) = tcgetattr(stdin) else {
            return EchoOff { saved: None };
        };
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        if tcsetattr(stdin, SetArg::TCSANOW, &quiet).is_err() {
            return EchoOff { saved: None };
        }
        EchoOff { saved: Some(saved) }
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        if let Some(saved) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_a_config_entry_that_parses_back() {
        let password = read_password(&mut "s3cret pass\r\nignored\n".as_bytes()).expect("read");
        assert_eq!(password, "s3cret pass");
        assert!(matches!(
            read_password(&mut "\n".as_bytes()),
            Err(PasswordError::Empty)
        ));
        let text = entry("alice", &password, false);
        assert!(!text.contains("s3cret"), "{text}");
        #[derive(serde::Deserialize)]
        struct File {
            pg_users: Vec<crate::config::PgUser>,
        }
        let file: File = toml_parse(&text);
        assert_eq!(file.pg_users[0].name, "alice");
        let hash = PasswordHash::parse(&file.pg_users[0].password_hash).expect("hash");
        assert!(matches!(hash, PasswordHash::Scram(_)));
        let md5: File = toml_parse(&entry("bob", "pw", true));
        assert_eq!(
            md5.pg_users[0].password_hash,
            PasswordHash::md5("bob", "pw").to_string()
        );
    }

    fn toml_parse<T: serde::de::DeserializeOwned>(text: &str) -> T {
        use figment::providers::{Format, Toml};
        figment::Figment::from(Toml::string(text))
            .extract()
            .expect("valid TOML")
    }
}
