//! `prune`: releases beyond `keep_releases` are removed: never the live one nor the one a
//! rollback would use; failed releases go first and never count as kept.

use super::{Decided, View};
use crate::commands as cmd;
use crate::facts::Facts;
use crate::ops::{Decision, Op, Report};

pub fn decide(v: &View, f: &Facts) -> Decided {
    let live = f.live()?;
    // The release the live pointer serves; `current` normally agrees.
    let current = live
        .version
        .clone()
        .or(live.current.clone())
        .unwrap_or_default();
    let keep = v.plan.app.keep_releases as usize;
    // Check mode looks at the host as this job would leave it: the release built and live.
    let (listing, current) = if v.check() {
        (
            as_after_deploy(f.releases()?, v.version()),
            v.version().to_string(),
        )
    } else {
        (f.releases()?.to_string(), current)
    };
    let remove = prune_plan(&listing, &current, keep, v.version());
    if remove.is_empty() {
        return Ok(Decision::Done(Report::ok(format!(
            "at most {keep} releases kept"
        ))));
    }
    let list = remove.join(", ");
    if v.check() {
        return Ok(Decision::Done(Report::changed(format!(
            "would remove releases {list}"
        ))));
    }
    Ok(Decision::act(
        vec![
            Op::run(
                cmd::remove_releases(v.paths, &remove),
                "removing old releases",
            )
            .into(),
        ],
        Report::changed(format!("removed releases {list}")),
    ))
}

/// A release listing with `version` complete and newest, as a deploy of it leaves it
/// (unchanged if it is complete already).
fn as_after_deploy(listing: &str, version: &str) -> String {
    let complete = listing.lines().any(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.get(1) == Some(&version) && w.get(2) == Some(&"complete")
    });
    if complete {
        return listing.to_string();
    }
    let mut out: String = listing
        .lines()
        .filter(|l| l.split_whitespace().nth(1) != Some(version))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&format!("{} {version} complete\n", u64::MAX));
    out
}

/// Which releases to remove: keep `keep` complete releases (the live one always among
/// them, then the newest), remove the rest and any unfinished build except `building`.
pub fn prune_plan(listing: &str, current: &str, keep: usize, building: &str) -> Vec<String> {
    let mut complete = Vec::new();
    let mut remove = Vec::new();
    for line in listing.lines() {
        let mut w = line.split_whitespace();
        let (Some(_mtime), Some(name), Some(state)) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        match state {
            "complete" => complete.push(name.to_string()),
            // Failed releases never count as kept ones; partial ones are dead builds.
            _ if name != building && name != current => remove.push(name.to_string()),
            _ => {}
        }
    }
    // `complete` is oldest first; keep current, then the newest others.
    let mut kept: Vec<&String> = complete.iter().filter(|n| *n == current).collect();
    for n in complete.iter().rev() {
        if kept.len() >= keep {
            break;
        }
        if n != current {
            kept.push(n);
        }
    }
    remove.extend(complete.iter().filter(|n| !kept.contains(n)).cloned());
    remove.sort();
    remove
}
