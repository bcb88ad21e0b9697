//! POSIX shell quoting: the only way a value gets into a remote command line.

/// Quotes `s` for a POSIX shell.  Strings of only safe characters are left bare (easier to
/// read in logs); anything else is single-quoted, with `'` written as `'\''`.
pub fn quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '/' | '.' | '_' | '-' | ':' | '=' | '+' | ',' | '@' | '%')
        });
    if safe {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Quotes each argument and joins them with spaces.
pub fn join<S: AsRef<str>>(args: &[S]) -> String {
    args.iter()
        .map(|a| quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(quote("/srv/apps/hello"), "/srv/apps/hello");
        assert_eq!(quote("hello-app==1.0.0"), "hello-app==1.0.0");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(join(&["echo", "$(id)"]), "echo '$(id)'");
    }

    /// The real test of quoting: a shell must give back exactly the original string.
    #[test]
    fn round_trips_hostile_strings_through_a_real_shell() {
        let hostile = [
            "plain",
            "",
            "a b",
            "it's",
            "'",
            "''",
            "\"",
            "$(id)",
            "`id`",
            "a;b",
            "a && b",
            "a|b",
            "x\ny",
            "$HOME",
            "\\",
            "*",
            "~root",
            "-n",
            "é ü ∑",
            "a'b\"c$d`e\\f",
            "!event",
        ];
        for s in hostile {
            let out = Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(s)))
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8(out.stdout).unwrap(),
                s,
                "round trip of {s:?}"
            );
        }
    }
}
