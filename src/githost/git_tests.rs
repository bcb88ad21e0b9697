//! Tests of `PlainGit`'s pure parts: remote URLs, refused references, `git log`
//! parsing, what messages show and mirror names.

use super::*;

#[test]
fn joins_base_and_repo() {
    let j = |b, r| remote_url(b, r).unwrap();
    assert_eq!(
        j("https://git.example.com/scm/", "/PROJ/app"),
        "https://git.example.com/scm/PROJ/app"
    );
    assert_eq!(
        j("git://127.0.0.1:9418", "PROJ/app.git"),
        "git://127.0.0.1:9418/PROJ/app.git"
    );
    assert_eq!(j("git@host:", "team/app.git"), "git@host:team/app.git");
    assert_eq!(j("ssh://git@host/srv", "app"), "ssh://git@host/srv/app");
    assert_eq!(
        j("https://x/scm", "https://other/app.git"),
        "https://other/app.git"
    );
    assert_eq!(j("https://x/scm", "git@other:app.git"), "git@other:app.git");
    assert_eq!(j("", "git@other:app.git"), "git@other:app.git");
    for bad in ["", "-uhack", "a/../b", "a b", "a\nb"] {
        assert!(remote_url("https://x", bad).is_err(), "{bad:?}");
    }
    assert!(remote_url("", "PROJ/app").is_err());
}

#[test]
fn refuses_references_git_could_misread() {
    for ok in ["main", "release/1.0", "v1.0.0", "0123abc", "feature/x_y-z"] {
        assert!(check_reference(ok).is_ok(), "{ok}");
    }
    for bad in [
        "",
        "-n",
        "--upload-pack=x",
        "a..b",
        "main~1",
        "a b",
        "HEAD@{1}",
        "x:y",
        "a\tb",
        "/x",
    ] {
        assert!(check_reference(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn parses_log_records() {
    let a = "a".repeat(40);
    let b = "b".repeat(40);
    let out = format!(
        "{a}\x1fJane Doe\x1fAdd login\n\nLonger text.\n\0\n{b}\x1fBo\x1fFirst line\nsecond line\n\0"
    );
    let commits = parse_log(&out).unwrap();
    assert_eq!(commits.len(), 2);
    assert_eq!(
        commits[0],
        Commit {
            id: a,
            author: "Jane Doe".into(),
            subject: "Add login".into()
        }
    );
    assert_eq!(commits[1].subject, "First line");
    assert_eq!(parse_log("").unwrap(), vec![]);
    assert!(parse_log("nonsense").is_err());
    assert!(parse_log("xyz\x1fa\x1fb").is_err());
}

#[test]
fn hides_passwords_and_names_mirrors_safely() {
    assert_eq!(shown("https://u:secret@h/x"), "https://u:***@h/x");
    assert_eq!(shown("ssh://git@h/x"), "ssh://git@h/x");
    let n = mirror_name("https://h/scm/PROJ/my-app.git");
    assert!(n.starts_with("my-app-") && n.ends_with(".git"), "{n}");
    assert_ne!(n, mirror_name("https://other/scm/PROJ/my-app.git"));
    assert!(!mirror_name("git@h:..").contains('/'));
}
