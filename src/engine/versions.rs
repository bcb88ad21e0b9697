//! PEP 440 versions: parsing, ordering, pre-release detection, specifiers (`~=`, `==`,
//! `!=`, `>=`, `<=`, `>`, `<`, `==1.2.*`) and resolving a request such as `latest` or
//! `~=1.4` against the versions an index has.  Pure; the gateway does the I/O.

use std::cmp::Ordering;

/// A parsed version.  Ordering follows PEP 440 (local labels only break ties).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub text: String,
    epoch: u64,
    release: Vec<u64>,
    /// (phase 0=a 1=b 2=rc, number)
    pre: Option<(u8, u64)>,
    post: Option<u64>,
    dev: Option<u64>,
    local: String,
}

fn take_num(s: &str) -> (Option<u64>, &str) {
    let n = s.chars().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 {
        (None, s)
    } else {
        (s[..n].parse().ok(), &s[n..])
    }
}

fn strip_sep(s: &str) -> &str {
    s.strip_prefix(['.', '-', '_']).unwrap_or(s)
}

/// (epoch, release without trailing zeros, pre, post, dev), each phase as (rank, number).
type SortKey = (u64, Vec<u64>, (i8, u64), (i8, u64), (i8, u64));

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        let lower = text.trim().to_ascii_lowercase();
        let (main, local) = match lower.split_once('+') {
            Some((m, l)) => (m.to_string(), l.to_string()),
            None => (lower.clone(), String::new()),
        };
        let mut s = main.strip_prefix('v').unwrap_or(&main);
        let mut epoch = 0;
        if let Some((e, rest)) = s.split_once('!') {
            epoch = e.parse().ok()?;
            s = rest;
        }
        let mut release = Vec::new();
        loop {
            let (n, rest) = take_num(s);
            release.push(n?);
            s = rest;
            match s.strip_prefix('.') {
                Some(r) if r.starts_with(|c: char| c.is_ascii_digit()) => s = r,
                _ => break,
            }
        }
        let mut pre = None;
        let t = strip_sep(s);
        for (names, phase) in [
            (&["alpha", "a"][..], 0u8),
            (&["beta", "b"][..], 1),
            (&["preview", "pre", "rc", "c"][..], 2),
        ] {
            if let Some(name) = names.iter().find(|n| t.starts_with(**n)) {
                let (n, rest) = take_num(strip_sep(&t[name.len()..]));
                pre = Some((phase, n.unwrap_or(0)));
                s = rest;
                break;
            }
        }
        let mut post = None;
        let t = strip_sep(s);
        if let Some(r) = t
            .strip_prefix("post")
            .or_else(|| t.strip_prefix("rev"))
            .or_else(|| t.strip_prefix('r'))
        {
            let (n, rest) = take_num(strip_sep(r));
            post = Some(n.unwrap_or(0));
            s = rest;
        } else if s.starts_with('-') && s[1..].starts_with(|c: char| c.is_ascii_digit()) {
            let (n, rest) = take_num(&s[1..]);
            post = n;
            s = rest;
        }
        let mut dev = None;
        let t = strip_sep(s);
        if let Some(r) = t.strip_prefix("dev") {
            let (n, rest) = take_num(strip_sep(r));
            dev = Some(n.unwrap_or(0));
            s = rest;
        }
        if !s.is_empty() {
            return None;
        }
        Some(Version {
            text: text.trim().to_string(),
            epoch,
            release,
            pre,
            post,
            dev,
            local,
        })
    }

    pub fn is_prerelease(&self) -> bool {
        self.pre.is_some() || self.dev.is_some()
    }

    fn key(&self) -> SortKey {
        let mut release = self.release.clone();
        while release.len() > 1 && release.last() == Some(&0) {
            release.pop();
        }
        let pre = match (self.pre, self.post, self.dev) {
            (None, None, Some(_)) => (-1, 0), // 1.0.dev1 < 1.0a1
            (Some((p, n)), _, _) => (p as i8, n),
            (None, _, _) => (3, 0),
        };
        let post = self.post.map(|n| (0, n)).unwrap_or((-1, 0));
        let dev = self.dev.map(|n| (0, n)).unwrap_or((1, 0));
        (self.epoch, release, pre, post, dev)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key()
            .cmp(&other.key())
            .then_with(|| self.local.cmp(&other.local))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Does `v` satisfy one clause such as `>=1.2` or `~=1.4`?
fn clause(v: &Version, c: &str) -> Result<bool, String> {
    let c = c.trim();
    let ops = ["~=", "==", "!=", ">=", "<=", ">", "<"];
    let op = ops
        .iter()
        .find(|o| c.starts_with(**o))
        .ok_or_else(|| format!("{c:?} is not a version specifier"))?;
    let rhs = c[op.len()..].trim();
    if let Some(prefix) = rhs.strip_suffix(".*") {
        let p = Version::parse(prefix).ok_or_else(|| format!("bad version in {c:?}"))?;
        let matches = v.epoch == p.epoch
            && v.release.len() >= p.release.len()
            && v.release[..p.release.len()] == p.release[..];
        return match *op {
            "==" => Ok(matches),
            "!=" => Ok(!matches),
            _ => Err(format!("{op} does not take a wildcard: {c:?}")),
        };
    }
    let r = Version::parse(rhs).ok_or_else(|| format!("bad version in {c:?}"))?;
    Ok(match *op {
        "~=" => {
            if r.release.len() < 2 {
                return Err(format!("~= needs at least two release numbers: {c:?}"));
            }
            let prefix = &r.release[..r.release.len() - 1];
            v >= &r
                && v.epoch == r.epoch
                && v.release.len() >= prefix.len()
                && v.release[..prefix.len()] == *prefix
        }
        "==" => v.cmp(&r) == Ordering::Equal,
        "!=" => v.cmp(&r) != Ordering::Equal,
        ">=" => v >= &r,
        "<=" => v <= &r,
        ">" => v > &r,
        _ => v < &r,
    })
}

/// Is the request a specifier set (or `latest`) rather than one exact version?
pub fn is_request(request: &str) -> bool {
    let r = request.trim();
    r == "latest" || r.starts_with(['~', '=', '!', '>', '<'])
}

/// Checks what a user asked to deploy, whatever command carries it (release, rollback
/// `--to`, a schedule): `latest`, an exact version (`deploy_wire::names::check_version`)
/// or a specifier set whose every clause parses.  The one check, so no command accepts
/// what another refuses.
pub fn check_request(request: &str) -> Result<(), String> {
    let r = request.trim();
    if r == "latest" {
        return Ok(());
    }
    if !is_request(r) {
        return deploy_wire::names::check_version(r).map_err(|e| e.to_string());
    }
    let any = Version::parse("0").expect("0 is a version");
    for c in r.split(',') {
        clause(&any, c)?;
    }
    Ok(())
}

/// Picks the version a request means among `available`: `latest` is the newest final
/// release; a specifier set (`~=1.4`, `>=1.2,<2`) the newest that satisfies every clause.
/// Pre-releases count only with `pre`, or when the request names one.
pub fn resolve(request: &str, available: &[String], pre: bool) -> Result<String, String> {
    let request = request.trim();
    let mentions_pre = request
        .split(',')
        .filter_map(|c| Version::parse(c.trim().trim_start_matches(['~', '=', '!', '>', '<'])))
        .any(|v| v.is_prerelease());
    let allow_pre = pre || mentions_pre;
    let mut candidates = Vec::new();
    for a in available {
        let Some(v) = Version::parse(a) else { continue };
        if v.is_prerelease() && !allow_pre {
            continue;
        }
        let ok = if request == "latest" {
            true
        } else {
            let mut all = true;
            for c in request.split(',') {
                all &= clause(&v, c)?;
            }
            all
        };
        if ok {
            candidates.push(v);
        }
    }
    match candidates.into_iter().max() {
        Some(v) => Ok(v.text),
        None => {
            let hint = if !allow_pre
                && available
                    .iter()
                    .filter_map(|a| Version::parse(a))
                    .any(|v| v.is_prerelease())
            {
                " (pre-releases are skipped unless asked for with --pre)"
            } else {
                ""
            };
            Err(format!(
                "no version matches {request:?} among {}{hint}",
                if available.is_empty() {
                    "(none)".to_string()
                } else {
                    available.join(", ")
                }
            ))
        }
    }
}

/// Sorts version strings by PEP 440 (unparseable ones first, as text).
pub fn sort(versions: &mut [String]) {
    versions.sort_by(|a, b| match (Version::parse(a), Version::parse(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (None, None) => a.cmp(b),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|| panic!("{s}"))
    }

    #[test]
    fn orders_as_pep440() {
        let ordered = [
            "1.0.dev1",
            "1.0a1",
            "1.0a2.dev1",
            "1.0a2",
            "1.0b1",
            "1.0rc1",
            "1.0",
            "1.0+local",
            "1.0.post1",
            "1.1",
            "1.10",
            "2!0.1",
        ];
        for w in ordered.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(v("1.0").cmp(&v("1.0.0")), Ordering::Equal);
        assert_eq!(v("1.0-alpha-1").cmp(&v("1.0a1")), Ordering::Equal);
        assert!(
            v("1.0rc1").is_prerelease()
                && v("1.0.dev3").is_prerelease()
                && !v("1.0.post1").is_prerelease()
        );
        assert!(Version::parse("1.0;id").is_none() && Version::parse("latest").is_none());
    }

    #[test]
    fn one_check_for_what_to_deploy() {
        for good in ["latest", "1.2.0", "~=1.4", ">=1.2,<2", "==1.*", " 2.0rc1 "] {
            assert_eq!(check_request(good), Ok(()), "{good}");
        }
        for bad in [
            "<img src=x onerror=alert(1)>",
            "~root",
            "",
            "1.0;id",
            ">=1.2,",
            "~=1",
            "=1.0",
            "../1",
        ] {
            assert!(check_request(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn resolves_latest_and_compatible_releases() {
        let avail: Vec<String> = ["1.0.0", "1.1.0", "1.2.0", "1.4.0", "1.10.0", "2.0.0rc1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(resolve("latest", &avail, false).unwrap(), "1.10.0");
        assert_eq!(resolve("latest", &avail, true).unwrap(), "2.0.0rc1");
        assert_eq!(resolve("~=1.1", &avail, false).unwrap(), "1.10.0");
        assert_eq!(resolve("~=1.1.0", &avail, false).unwrap(), "1.1.0");
        assert_eq!(
            resolve(">=1.1,<1.4,!=1.2.0", &avail, false).unwrap(),
            "1.1.0"
        );
        assert_eq!(resolve("==1.*", &avail, false).unwrap(), "1.10.0");
        assert_eq!(
            resolve(">=2.0.0rc1", &avail, false).unwrap(),
            "2.0.0rc1",
            "naming a pre-release allows it"
        );
        let err = resolve(">=2", &avail, false).unwrap_err();
        assert!(err.contains("pre-releases are skipped"), "{err}");
        assert!(
            resolve("~=1", &avail, false)
                .unwrap_err()
                .contains("two release numbers")
        );
        assert!(is_request("latest") && is_request("~=1.4") && !is_request("1.4.0"));
        let mut s = vec![
            "1.10.0".to_string(),
            "1.9.0".into(),
            "1.0rc1".into(),
            "1.0".into(),
        ];
        sort(&mut s);
        assert_eq!(s, ["1.0rc1", "1.0", "1.9.0", "1.10.0"]);
    }
}
