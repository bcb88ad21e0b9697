//! Names that end up in paths and commands on servers: applications, environments,
//! hosts, Python package names, versions and WSGI entry points.
//!
//! Each is checked against a small allow-list of characters before anything runs, so a
//! name can never smuggle shell syntax, a path separator or a newline onto a server.
//! (Commands are *also* built with proper quoting; this is the second wall, and it makes
//! the error a user sees say which name is wrong and why.)

use std::fmt;

/// Why a name was refused: what kind of name, the value, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} {:?}: expected {}",
            self.kind, self.value, self.expected
        )
    }
}

impl std::error::Error for NameError {}

fn check(
    kind: &'static str,
    value: &str,
    expected: &'static str,
    max: usize,
    first: fn(char) -> bool,
    rest: fn(char) -> bool,
) -> Result<(), NameError> {
    let mut chars = value.chars();
    let ok = match chars.next() {
        None => false,
        Some(c) => first(c) && chars.all(rest) && value.len() <= max,
    };
    if ok {
        Ok(())
    } else {
        Err(NameError {
            kind,
            value: value.to_string(),
            expected,
        })
    }
}

/// Application, environment and host names: `[a-z0-9][a-z0-9_-]*`, at most 63 characters.
/// They become directory names (`/srv/apps/<app>`) and the process manager's program names.
pub fn check_ident(kind: &'static str, value: &str) -> Result<(), NameError> {
    check(
        kind,
        value,
        "lowercase letters, digits, '-' and '_', starting with a letter or digit (at most 63)",
        63,
        |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
        |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_',
    )
}

/// A Python distribution name (PEP 508): letters, digits, `.`, `_`, `-`, starting and
/// ending with a letter or digit.
pub fn check_package(value: &str) -> Result<(), NameError> {
    const EXPECTED: &str = "a Python package name (letters, digits, '.', '_', '-'; PEP 508)";
    check(
        "package name",
        value,
        EXPECTED,
        100,
        |c| c.is_ascii_alphanumeric(),
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'),
    )?;
    if value.ends_with(['.', '_', '-']) {
        return Err(NameError {
            kind: "package name",
            value: value.into(),
            expected: EXPECTED,
        });
    }
    Ok(())
}

/// A release version as PEP 440 spells it (`1.2.0`, `2.0rc1`, `1.0.post1+local.3`):
/// letters, digits, `.`, `+`, `!`, `_`, `-`, starting with a digit or `v`.  It becomes a
/// directory name (`releases/<version>`), so `..`  and `/` are refused.
pub fn check_version(value: &str) -> Result<(), NameError> {
    const EXPECTED: &str =
        "a PEP 440 version such as 1.2.0 (digits, letters, '.', '+', '!', '_', '-')";
    check(
        "version",
        value,
        EXPECTED,
        64,
        |c| c.is_ascii_digit() || c == 'v',
        |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '!' | '_' | '-'),
    )?;
    if value.contains("..") {
        return Err(NameError {
            kind: "version",
            value: value.into(),
            expected: EXPECTED,
        });
    }
    Ok(())
}

/// A WSGI/ASGI entry point, `module.path:callable`.
pub fn check_entry_point(value: &str) -> Result<(), NameError> {
    const EXPECTED: &str = "a Python entry point `package.module:callable`";
    check(
        "entry point",
        value,
        EXPECTED,
        200,
        |c| c.is_ascii_alphabetic() || c == '_',
        |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':'),
    )?;
    if value.matches(':').count() != 1 || value.ends_with(':') {
        return Err(NameError {
            kind: "entry point",
            value: value.into(),
            expected: EXPECTED,
        });
    }
    Ok(())
}

/// A DNS name or IP address (host address, nginx server name).  `*.` wildcards are
/// allowed where `wildcard` is set (nginx server names).
pub fn check_hostname(kind: &'static str, value: &str, wildcard: bool) -> Result<(), NameError> {
    let body = if wildcard {
        value.strip_prefix("*.").unwrap_or(value)
    } else {
        value
    };
    // A DNS name: labels of 1 to 63 characters, 253 in all (RFC 1035); an IPv6 address
    // has no dots and is taken as one label of at most 39.
    let labels_ok = body
        .trim_end_matches('.')
        .split('.')
        .all(|l| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-'));
    let ok = !body.is_empty()
        && body.len() <= 253
        && labels_ok
        && body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
        && !body.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(NameError {
            kind,
            value: value.into(),
            expected: "a DNS name or IP address (letters, digits, '.', '-', ':'; labels of at most 63 characters, at most 253 in all)",
        })
    }
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn check_env_key(value: &str) -> Result<(), NameError> {
    check(
        "environment variable name",
        value,
        "letters, digits and '_', not starting with a digit",
        128,
        |c| c.is_ascii_alphabetic() || c == '_',
        |c| c.is_ascii_alphanumeric() || c == '_',
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idents_refuse_shell_and_paths() {
        assert!(check_ident("application", "hello").is_ok());
        assert!(check_ident("application", "hello-api_2").is_ok());
        for bad in [
            "",
            "Hello",
            "a b",
            "a;rm -rf /",
            "../x",
            "$(id)",
            "a\nb",
            "-x",
            &"a".repeat(64),
        ] {
            assert!(
                check_ident("application", bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn versions_follow_pep440_characters() {
        for good in ["1.0.0", "2.0rc1", "1.0.post1+local.3", "1!2.0", "v1.2"] {
            assert!(check_version(good).is_ok(), "{good}");
        }
        for bad in [
            "", "1.0;id", "1.0 && x", "../1", "1..0", "1.0/x", "`id`", "1.0\n", "latest'",
        ] {
            assert!(check_version(bad).is_err(), "{bad:?}");
        }
        let err = check_version("1.0;id").unwrap_err().to_string();
        assert!(err.contains("invalid version \"1.0;id\""), "{err}");
    }

    #[test]
    fn packages_entry_points_hostnames_env_keys() {
        assert!(check_package("hello-app").is_ok());
        assert!(check_package("Hello_App.x").is_ok());
        assert!(check_package("hello-").is_err());
        assert!(check_package("a b").is_err());
        assert!(check_entry_point("hello_app:app").is_ok());
        assert!(check_entry_point("pkg.wsgi:application").is_ok());
        assert!(check_entry_point("hello_app").is_err());
        assert!(check_entry_point("x:y; id").is_err());
        assert!(check_hostname("server name", "*.example.com", true).is_ok());
        assert!(check_hostname("address", "*.example.com", false).is_err());
        assert!(check_hostname("address", "10.0.0.1", false).is_ok());
        assert!(check_hostname("address", "a b", false).is_err());
        // Issue 26: a 140-character name passed and failed `nginx -t` at deploy time.
        let long = format!("{}.example.com", "a".repeat(140));
        assert!(check_hostname("server name", &long, true).is_err());
        let label63 = format!("{}.example.com", "a".repeat(63));
        assert!(check_hostname("server name", &label63, true).is_ok());
        let total = vec!["a".repeat(63); 4].join(".");
        assert!(total.len() > 253 && check_hostname("server name", &total, true).is_err());
        for bad in ["a..b", "a-.b", "x.-y", "a.b-"] {
            assert!(check_hostname("server name", bad, true).is_err(), "{bad}");
        }
        assert!(check_hostname("address", "::1", false).is_ok());
        assert!(check_env_key("DATABASE_URL").is_ok());
        assert!(check_env_key("1X").is_err());
        assert!(check_env_key("A-B").is_err());
    }
}
