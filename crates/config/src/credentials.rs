//! Where a password comes from besides the config itself: a command's
//! output (`password_command`), and for PostgreSQL servers libpq's own
//! places (`PGPASSWORD`, then the password file `PGPASSFILE` or
//! `~/.pgpass`).
//!
//! The file format is libpq's: `host:port:database:user:password` per
//! line, `*` matching anything in the first four fields, `\:` and `\\`
//! escaping, `#` starting a comment line; the first matching line wins.
//! Parsing is pure ([`pgpass_lookup`]); reading the file and running the
//! command are the only I/O here.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a `password_command` may take: token helpers answer in
/// seconds; one waiting for input that never comes must not hang a job.
pub const PASSWORD_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// What a server connection is for, as libpq's password file matches it.
#[derive(Debug, Clone, Copy)]
pub struct PgLogin<'a> {
    pub host: &'a str,
    pub port: u16,
    pub database: &'a str,
    pub user: &'a str,
}

/// The password of the first line of a libpq password file that matches
/// `login`.
pub fn pgpass_lookup(text: &str, login: PgLogin<'_>) -> Option<String> {
    let port = login.port.to_string();
    let wanted = [login.host, port.as_str(), login.database, login.user];
    text.lines().filter(|l| !l.trim_start().starts_with('#')).find_map(|line| {
        let fields = split_pgpass_line(line.trim_end_matches('\r'))?;
        let matches = fields[..4].iter().zip(wanted).all(|(field, want)| field == "*" || field == want);
        matches.then(|| fields[4].clone())
    })
}

/// The five fields of a line, unescaped; `None` for a line with fewer.
/// Colons after the fourth belong to the password.
fn split_pgpass_line(line: &str) -> Option<[String; 5]> {
    let mut fields: Vec<String> = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut()?.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut()?.push(c),
        }
    }
    <[String; 5]>::try_from(fields).ok()
}

/// The password libpq would use for `login` when none is configured:
/// `PGPASSWORD`, else the password file's matching line. `env` looks up
/// environment variables (the loader's, so tests can set them). `Err`
/// says why a password file that exists was not used.
pub fn libpq_password(login: PgLogin<'_>, env: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    if let Some(password) = env("PGPASSWORD")
        && !password.is_empty()
    {
        return Ok(Some(password));
    }
    let Some(path) = pgpass_path(env) else { return Ok(None) };
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
    // libpq ignores a password file others can read; so do we, and say so.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(&path)
            && meta.permissions().mode() & 0o077 != 0
        {
            return Err(format!(
                "{} is readable by group or others and is ignored, as libpq does (chmod 0600 it)",
                path.display()
            ));
        }
    }
    Ok(pgpass_lookup(&text, login))
}

fn pgpass_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(file) = env("PGPASSFILE") {
        return Some(PathBuf::from(file));
    }
    env("HOME").map(|home| Path::new(&home).join(".pgpass"))
}

/// Runs `command` with `sh -c` (no stdin) and returns the first line it
/// prints. Errors never quote what it printed, on either stream: a helper
/// that fails half-way may have printed the secret.
pub fn run_password_command(command: &str) -> Result<String, String> {
    let mut child = Command::new("sh")
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run it with sh: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("its output could not be captured")?;
    // Read on a thread so a helper printing much cannot block on a full pipe.
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).map(|_| out)
    });
    let deadline = Instant::now() + PASSWORD_COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("did not finish within {} s and was stopped", PASSWORD_COMMAND_TIMEOUT.as_secs()));
            }
            Err(e) => return Err(format!("cannot wait for it: {e}")),
        }
    };
    let out =
        reader.join().map_err(|_| "reading its output failed")?.map_err(|e| format!("reading its output: {e}"))?;
    if !status.success() {
        return Err(format!("failed ({status}); what it printed is not shown, as it may hold the secret"));
    }
    let text = String::from_utf8(out).map_err(|_| "printed something that is not UTF-8")?;
    let first = text.lines().next().unwrap_or("").trim_end_matches('\r');
    if first.is_empty() {
        return Err("printed nothing on its first line".into());
    }
    Ok(first.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOGIN: PgLogin<'static> = PgLogin { host: "db.example", port: 5432, database: "shop", user: "etl" };

    #[test]
    fn the_first_matching_line_wins_with_wildcards_and_escapes() {
        let text = "# comment\n\
                    other:5432:shop:etl:wrong-host\n\
                    db.example:5433:shop:etl:wrong-port\n\
                    db.example:*:shop:etl:pa\\:ss\\\\word:with:colons\n\
                    *:*:*:*:fallback\n";
        assert_eq!(pgpass_lookup(text, LOGIN).as_deref(), Some("pa:ss\\word:with:colons"));
        let other_user = PgLogin { user: "reader", ..LOGIN };
        assert_eq!(pgpass_lookup(text, other_user).as_deref(), Some("fallback"));
        assert_eq!(pgpass_lookup("db.example:5432:shop:etl\n", LOGIN), None, "a line without a password");
        assert_eq!(pgpass_lookup("db.example:5432:shop:etl:crlf\r\n", LOGIN).as_deref(), Some("crlf"));
        assert_eq!(pgpass_lookup("", LOGIN), None);
    }

    #[test]
    fn a_password_command_gives_its_first_line_and_hides_its_output_when_it_fails() {
        assert_eq!(run_password_command("printf 's3cr:et\\nsecond line\\n'").as_deref(), Ok("s3cr:et"));
        let failed = run_password_command("echo leaked-secret; echo leaked-too >&2; exit 3").unwrap_err();
        assert!(failed.contains("exit status: 3"), "{failed}");
        assert!(!failed.contains("leaked"), "{failed}");
        assert!(run_password_command("true").unwrap_err().contains("printed nothing"));
        assert!(run_password_command("printf '\\n'").unwrap_err().contains("printed nothing"));
    }
}
