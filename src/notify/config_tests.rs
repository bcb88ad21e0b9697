//! Tests of `[[notify]]` parsing: routes, defaults, errors that name the field and
//! never a secret.

use super::*;

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(d.path().join(name), text).unwrap();
    }
    d
}

fn parse_str(toml_text: &str, base: &Path) -> Result<Vec<Route>, String> {
    let v: Value = toml::from_str(toml_text).unwrap();
    parse(&v, base)
}

const ALL_THREE: &str = r#"
[[notify]]
kind = "webhook"
url = "https://ci.acme.com/hook"
secret_file = "hook-key"
apps = ["hello"]

[[notify]]
kind = "slack"
url_file = "slack-url"
envs = ["production"]
events = ["failed"]

[[notify]]
kind = "jira"
url = "https://acme.atlassian.net"
user = "bot@acme.com"
token_file = "jira-token"
"#;

#[test]
fn parses_routes_with_defaults() {
    let d = dir_with(&[
        ("hook-key", "hook-K3Y\n"),
        (
            "slack-url",
            "https://hooks.slack.com/services/T1/B1/SLACKSECRET\n",
        ),
        ("jira-token", "JIRA-T0KEN"),
    ]);
    let routes = parse_str(ALL_THREE, d.path()).unwrap();
    let described: Vec<_> = routes.iter().map(|r| r.notifier.describe()).collect();
    assert_eq!(
        described,
        [
            "webhook (ci.acme.com)",
            "slack (hooks.slack.com)",
            "jira (acme.atlassian.net)"
        ]
    );
    assert_eq!(routes[0].filter.apps, ["hello"]);
    assert_eq!(routes[0].filter.events, NoticeKind::ALL);
    assert_eq!(routes[1].filter.envs, ["production"]);
    assert_eq!(routes[1].filter.events, [NoticeKind::Failed]);
    assert_eq!(
        routes[2].filter.events,
        [NoticeKind::Succeeded, NoticeKind::Failed]
    );
    // The probe: the secrets are what was configured ...
    let secrets: Vec<String> = routes
        .iter()
        .flat_map(|r| r.notifier.secrets())
        .map(|s| s.expose().to_string())
        .collect();
    assert_eq!(
        secrets,
        [
            "hook-K3Y",
            "https://hooks.slack.com/services/T1/B1/SLACKSECRET",
            "JIRA-T0KEN"
        ]
    );
    // ... and none of them shows in Debug.
    let shown = format!("{routes:?}");
    for s in ["hook-K3Y", "SLACKSECRET", "JIRA-T0KEN"] {
        assert!(!shown.contains(s), "{s} in {shown}");
    }
}

#[test]
fn the_whole_file_or_the_array() {
    let d = dir_with(&[]);
    assert!(parse_str("[other]\nx = 1\n", d.path()).unwrap().is_empty());
    let v: Value = toml::from_str("notify = []").unwrap();
    assert!(parse(&v["notify"], d.path()).unwrap().is_empty());
    let e = parse_str("notify = 3", d.path()).unwrap_err();
    assert!(e.starts_with("notify: expected an array"), "{e}");
    let e = parse_str("notify = [1]", d.path()).unwrap_err();
    assert_eq!(e, "notify[0]: expected a table");
}

#[test]
fn errors_name_the_field() {
    let d = dir_with(&[("key", "k")]);
    let cases = [
        ("[[notify]]\nurl = \"http://x/\"", "notify[0].kind: missing"),
        (
            "[[notify]]\nkind = \"email\"",
            "notify[0].kind: unknown kind `email`",
        ),
        (
            "[[notify]]\nkind = \"webhook\"\nurl = \"http://x/\"\nsecret_file = \"key\"\ntoken_env = \"X\"",
            "notify[0].token_env: unknown field for kind webhook",
        ),
        (
            "[[notify]]\nkind = \"webhook\"\nsecret_file = \"key\"",
            "notify[0].url: missing",
        ),
        (
            "[[notify]]\nkind = \"webhook\"\nurl = \"ftp://x/\"\nsecret_file = \"key\"",
            "notify[0].url: must be an http(s) URL",
        ),
        (
            "[[notify]]\nkind = \"webhook\"\nurl = \"http://x/\"",
            "notify[0].secret_env: missing",
        ),
        (
            "[[notify]]\nkind = \"webhook\"\nurl = \"http://x/\"\nsecret_file = \"key\"\nsecret_env = \"X\"",
            "notify[0].secret_env: give either secret_env or secret_file, not both",
        ),
        (
            "[[notify]]\nkind = \"webhook\"\nurl = \"http://x/\"\nsecret_env = \"DEPLOY_TEST_UNSET_VAR\"",
            "notify[0].secret_env: the environment variable DEPLOY_TEST_UNSET_VAR is not set",
        ),
        (
            "[[notify]]\nkind = \"jira\"\nurl = \"http://j/\"\ntoken_file = \"nope\"",
            "notify[0].token_file: cannot read",
        ),
        (
            "[[notify]]\nkind = \"jira\"\nurl = \"http://j/\"\ntoken_file = \"key\"\nevents = [\"done\"]",
            "notify[0].events: unknown event `done`",
        ),
        (
            "[[notify]]\nkind = \"jira\"\nurl = \"http://j/\"\ntoken_file = \"key\"\nevents = []",
            "notify[0].events: empty",
        ),
        (
            "[[notify]]\nkind = \"jira\"\nurl = \"http://j/\"\ntoken_file = \"key\"\napps = \"hello\"",
            "notify[0].apps: expected a list",
        ),
        ("[[notify]]\nkind = \"slack\"", "notify[0].url_env: missing"),
    ];
    for (text, want) in cases {
        let e = parse_str(text, d.path()).unwrap_err();
        assert!(e.starts_with(want), "{text}\n=> {e}\nwanted {want}");
    }
    let two = "[[notify]]\nkind = \"slack\"\nurl_file = \"key\"\n[[notify]]\nkind = \"x\"";
    let e = parse_str(two, d.path()).unwrap_err();
    assert!(
        e.starts_with("notify[0].url_file: the webhook URL is not a valid URL"),
        "{e}"
    );
}

#[test]
fn errors_never_show_a_secret() {
    let d = dir_with(&[("bad-url", "not a url SLACKSECRET\n")]);
    let inline =
        "[[notify]]\nkind = \"slack\"\nurl = \"https://hooks.slack.com/services/INLINESECRET\"";
    let e = parse_str(inline, d.path()).unwrap_err();
    assert!(
        e.starts_with("notify[0].url: a Slack webhook URL is a secret"),
        "{e}"
    );
    assert!(!e.contains("INLINESECRET"));
    let from_file = "[[notify]]\nkind = \"slack\"\nurl_file = \"bad-url\"";
    let e = parse_str(from_file, d.path()).unwrap_err();
    assert_eq!(e, "notify[0].url_file: the webhook URL is not a valid URL");
    let bad_type = "[[notify]]\nkind = \"jira\"\nurl = \"http://j/\"\ntoken_file = \"bad-url\"\nuser = [\"TYPOSECRET\"]";
    let e = parse_str(bad_type, d.path()).unwrap_err();
    assert_eq!(e, "notify[0].user: expected a string");
}

#[test]
fn jira_without_user_is_bearer() {
    let d = dir_with(&[("t", "pat-1\n")]);
    let text =
        "[[notify]]\nkind = \"jira\"\nurl = \"https://jira.acme.com/jira\"\ntoken_file = \"t\"";
    let routes = parse_str(text, d.path()).unwrap();
    assert!(format!("{:?}", routes[0].notifier).contains("Bearer(***)"));
}

#[test]
fn filters_match() {
    let f = Filter {
        apps: vec!["hello".into()],
        envs: vec![],
        events: vec![NoticeKind::Failed],
    };
    let mut n = super::super::fake::notice(NoticeKind::Failed, vec![]);
    assert!(f.matches(&n));
    n.event = NoticeKind::Started;
    assert!(!f.matches(&n));
    n.event = NoticeKind::Failed;
    n.app = "other".into();
    assert!(!f.matches(&n));
    assert!(Filter::default().matches(&n));
}

#[test]
fn route_ids_are_the_same_for_the_same_entry_and_differ_otherwise() {
    let d = dir_with(&[
        ("hook-key", "hook-K3Y\n"),
        (
            "slack-url",
            "https://hooks.slack.com/services/T1/B1/SLACKSECRET\n",
        ),
        ("jira-token", "JIRA-T0KEN"),
    ]);
    let ids = |text: &str| -> Vec<String> {
        parse_str(text, d.path())
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect()
    };
    let first = ids(ALL_THREE);
    assert_eq!(
        first,
        ids(ALL_THREE),
        "read again (another gateway, a restart)"
    );
    assert!(first[0].starts_with("webhook-") && first[0].len() == "webhook-".len() + 12);
    assert!(first[1].starts_with("slack-") && first[2].starts_with("jira-"));
    for id in &first {
        assert!(!id.contains("SLACKSECRET") && !id.contains("K3Y"), "{id}");
    }
    // Tuning the retries keeps the id; another receiver or filter makes another.
    let tuned = ALL_THREE.replace("apps = [\"hello\"]", "apps = [\"hello\"]\nattempts = 3");
    assert_eq!(ids(&tuned)[0], first[0]);
    let moved = ALL_THREE.replace("ci.acme.com/hook", "ci.acme.com/other");
    assert_ne!(ids(&moved)[0], first[0]);
    // The same entry twice: two routes, two ids.
    let twice =
        "[[notify]]\nkind = \"webhook\"\nurl = \"https://h/x\"\nsecret_file = \"hook-key\"\n";
    let two = ids(&format!("{twice}{twice}{twice}"));
    assert_eq!(two[1], format!("{}-2", two[0]));
    assert_eq!(two[2], format!("{}-3", two[0]));
}

#[test]
fn retries_default_and_may_be_tuned_per_route() {
    let d = dir_with(&[("key", "k")]);
    let base = "[[notify]]\nkind = \"webhook\"\nurl = \"http://x/\"\nsecret_file = \"key\"\n";
    let r = parse_str(base, d.path()).unwrap().remove(0).retry;
    assert_eq!(r, Retry::default());
    let tuned = format!("{base}attempts = 4\nretry_ms = 500\nmax_retry_secs = 1\n");
    let r = parse_str(&tuned, d.path()).unwrap().remove(0).retry;
    assert_eq!(r.attempts, 4);
    assert_eq!(r.delay_after(1), std::time::Duration::from_millis(500));
    assert_eq!(
        r.delay_after(3),
        std::time::Duration::from_secs(1),
        "capped"
    );
    for bad in ["attempts = 0", "retry_ms = -1", "max_retry_secs = \"x\""] {
        let e = parse_str(&format!("{base}{bad}\n"), d.path()).unwrap_err();
        let field = bad.split(' ').next().unwrap();
        assert!(
            e.starts_with(&format!("notify[0].{field}: expected a whole number")),
            "{e}"
        );
    }
}
