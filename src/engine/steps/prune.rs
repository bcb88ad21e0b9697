//! `prune`: releases beyond `keep_releases` are removed: never the live one nor the one a
//! rollback would use; failed releases go first and never count as kept.

use super::{Decided, View};
use crate::commands as cmd;
use crate::engine::facts::Facts;
use crate::engine::ops::{Decision, Op, Report};

pub fn decide(v: &View, f: &Facts) -> Decided {
    let live = f.live()?;
    // The release the live pointer serves; `current` normally agrees.
    let current = live
        .version
        .clone()
        .or(live.current.clone())
        .unwrap_or_default();
    let keep = v.plan.app.keep_releases as usize;
    let remove = prune_plan(f.releases()?, &current, keep, v.version());
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
