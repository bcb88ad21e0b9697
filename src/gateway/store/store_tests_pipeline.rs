//! The store's contract tests of the pipeline's records: builds (commit -> CI build ->
//! wheel), the file each job installed, and the CI builds build jobs follow.

use super::super::Db;
use super::tests::{each, job, job_in, lease, lease_until};
use super::*;
use deploy_wire::api::JobState;

fn build(app: &str, commit: &str, number: &str, version: &str) -> BuildRecord {
    BuildRecord {
        app: app.into(),
        commit: commit.into(),
        number: number.into(),
        url: format!("https://ci.example/{number}"),
        version: version.into(),
        file: format!("{app}-{version}-py3-none-any.whl"),
        sha256: format!("sha-{number}"),
        job_id: format!("b{number}"),
        ts_ms: 100 + number.parse::<u64>().unwrap(),
    }
}

fn artifact(file: &str, sha256: &str, made_by: Option<(&str, &str)>) -> ArtifactRef {
    ArtifactRef {
        file: file.into(),
        sha256: sha256.into(),
        commit: made_by.map(|(commit, _)| commit.into()),
        build: made_by.map(|(_, number)| number.into()),
    }
}

#[test]
fn builds_are_found_by_commit_and_by_version_newest_first_per_app() {
    each(|at| {
        let s = Db::open(at).unwrap();
        assert!(s.builds("hello", 10).unwrap().is_empty());
        assert_eq!(s.build_of_commit("hello", "c1").unwrap(), None);
        assert_eq!(s.build_of_version("hello", "1.0").unwrap(), None);
        let b1 = build("hello", "c1", "1", "1.0");
        let b2 = build("hello", "c2", "2", "1.1");
        let b3 = build("hello", "c1", "3", "1.0"); // c1 built again
        let b4 = build("shop", "c1", "4", "1.0");
        for b in [&b1, &b2, &b3, &b4] {
            s.add_build(b).unwrap();
        }
        assert_eq!(s.builds("hello", 10).unwrap(), [b3.clone(), b2.clone(), b1]);
        assert_eq!(s.builds("hello", 2).unwrap(), [b3.clone(), b2.clone()]);
        assert_eq!(s.builds("shop", 10).unwrap(), std::slice::from_ref(&b4));
        assert!(s.builds("nope", 10).unwrap().is_empty());
        assert_eq!(s.build_of_commit("hello", "c1").unwrap(), Some(b3.clone()));
        assert_eq!(s.build_of_commit("hello", "c2").unwrap(), Some(b2.clone()));
        assert_eq!(s.build_of_commit("shop", "c1").unwrap(), Some(b4.clone()));
        assert_eq!(s.build_of_commit("shop", "c2").unwrap(), None, "per app");
        assert_eq!(s.build_of_commit("hello", "1.0").unwrap(), None);
        assert_eq!(s.build_of_version("hello", "1.0").unwrap(), Some(b3));
        assert_eq!(s.build_of_version("hello", "1.1").unwrap(), Some(b2));
        assert_eq!(s.build_of_version("shop", "1.0").unwrap(), Some(b4));
        assert_eq!(s.build_of_version("shop", "1.1").unwrap(), None, "per app");
        assert_eq!(s.build_of_version("hello", "c1").unwrap(), None);
    });
}

#[test]
fn a_jobs_artifact_is_replaced_and_joined_with_the_newest_build_of_its_version_and_sha256() {
    each(|at| {
        let s = Db::open(at).unwrap();
        s.start_job(&job("j1", "ann"), &lease("g"))
            .unwrap()
            .unwrap();
        assert_eq!(s.job_artifact("j1").unwrap(), None);
        s.set_job_artifact("j1", "a.whl", "s1").unwrap();
        assert_eq!(
            s.job_artifact("j1").unwrap(),
            Some(artifact("a.whl", "s1", None)),
            "not built by the gateway"
        );
        s.set_job_artifact("j1", "b.whl", "s2").unwrap();
        assert_eq!(
            s.job_artifact("j1").unwrap(),
            Some(artifact("b.whl", "s2", None)),
            "replaced"
        );
        // j1 installs hello 1.0.0 with sha s2: the newest build of that version, of that
        // app, whose wheel has that very SHA-256 (issue 26: a build of another file of
        // the same version is no link).
        let with_sha = |b: BuildRecord, sha: &str| BuildRecord {
            sha256: sha.into(),
            ..b
        };
        s.add_build(&with_sha(build("hello", "c7", "7", "1.0.0"), "s2"))
            .unwrap();
        s.add_build(&with_sha(build("hello", "c8", "8", "1.0.0"), "s2"))
            .unwrap();
        s.add_build(&build("hello", "c9", "9", "2.0.0")).unwrap();
        s.add_build(&with_sha(build("shop", "c10", "10", "1.0.0"), "s2"))
            .unwrap();
        s.add_build(&build("hello", "c11", "11", "1.0.0")).unwrap();
        assert_eq!(
            s.job_artifact("j1").unwrap(),
            Some(artifact("b.whl", "s2", Some(("c8", "8"))))
        );
        assert_eq!(s.job_artifact("nope").unwrap(), None);
    });
}

#[test]
fn a_versions_artifact_is_the_one_of_its_newest_job_of_that_app() {
    each(|at| {
        let s = Db::open(at).unwrap();
        assert_eq!(s.version_artifact("hello", "1.0.0").unwrap(), None);
        let jobs = [
            ("old", "staging", "hello", "1.0.0", 1_000),
            ("new", "production", "hello", "1.0.0", 2_000),
            ("two", "qa", "hello", "2.0.0", 3_000),
            ("shop", "staging", "shop", "1.0.0", 4_000),
        ];
        for (id, env, app, version, created_ms) in jobs {
            let j = JobInfo {
                app: app.into(),
                version: version.into(),
                created_ms,
                ..job_in(id, env)
            };
            s.start_job(&j, &lease("g")).unwrap().unwrap();
            s.set_job_artifact(id, &format!("{id}.whl"), &format!("sha-{id}"))
                .unwrap();
        }
        let file = |app: &str, version: &str| s.version_artifact(app, version).unwrap();
        let named = |id: &str| Some((format!("{id}.whl"), format!("sha-{id}")));
        assert_eq!(file("hello", "1.0.0"), named("new"));
        assert_eq!(file("hello", "2.0.0"), named("two"));
        assert_eq!(file("shop", "1.0.0"), named("shop"));
        assert_eq!(file("shop", "2.0.0"), None, "per app");
        assert_eq!(file("hello", "9.9.9"), None);
        // A job that installed nothing recorded leaves the last file as it was.
        let newer = JobInfo {
            created_ms: 5_000,
            ..job_in("bare", "dev")
        };
        s.start_job(&newer, &lease("g")).unwrap().unwrap();
        assert_eq!(file("hello", "1.0.0"), named("new"));
    });
}

fn build_job(id: &str, owner: &str, until_ms: u64, s: &Db) {
    let j = JobInfo {
        kind: deploy_wire::api::JobKind::Build,
        env: String::new(),
        version: "c0ffee".into(),
        ..job(id, "ann")
    };
    s.start_job(&j, &lease_until(owner, until_ms))
        .unwrap()
        .unwrap();
}

fn follow(job_id: &str) -> BuildFollow {
    BuildFollow {
        job_id: job_id.into(),
        app: "hello".into(),
        commit: "c0ffee".into(),
        builder_id: format!("q-{job_id}"),
        build: None,
        offset: 0,
        queued_ms: 10,
    }
}

#[test]
fn a_followed_build_is_recorded_updated_adopted_once_and_ended() {
    each(|at| {
        let s = Db::open(at).unwrap();
        build_job("b1", "gw-a", 1_000, &s);
        assert_eq!(s.build_follow("b1").unwrap(), None);
        s.set_build_follow(&follow("b1")).unwrap();
        let later = BuildFollow {
            build: Some(("7".into(), "http://ci/job/hello/7/".into())),
            offset: 420,
            ..follow("b1")
        };
        s.set_build_follow(&later).unwrap();
        assert_eq!(s.build_follow("b1").unwrap(), Some(later));
        assert_eq!(
            s.unfollowed_build("hello", "c0ffee").unwrap(),
            None,
            "its job runs"
        );
        // A deploy job with an expired lease is never adopted; the build job once.
        s.start_job(&job_in("d1", "production"), &lease_until("gw-a", 1_000))
            .unwrap()
            .unwrap();
        let b = lease_until("gw-b", 5_000);
        assert!(
            s.adopt_builds(&b, &Adopt::Expired(999)).unwrap().is_empty(),
            "not yet"
        );
        let took = s.adopt_builds(&b, &Adopt::Expired(2_000)).unwrap();
        assert_eq!(
            took.iter().map(|(j, _)| j.id.as_str()).collect::<Vec<_>>(),
            ["b1"]
        );
        assert!(
            s.adopt_builds(&b, &Adopt::Expired(2_000))
                .unwrap()
                .is_empty(),
            "once"
        );
        assert_eq!(s.renew_leases(&b).unwrap(), ["b1"], "gw-b holds it now");
        assert!(s.job_epoch("b1").unwrap() == Some(took[0].1));
        // A gateway's previous life's build jobs, for its next life.
        let c = lease_until("gw-b", 9_000);
        assert_eq!(
            s.adopt_builds(&c, &Adopt::Owner("gw-b".into()))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            s.adopt_builds(&c, &Adopt::Orphans(Orphans::Gateway))
                .unwrap()
                .len(),
            1
        );
        // Ended: nobody adopts it.
        s.end_build_follow("b1").unwrap();
        assert!(
            s.adopt_builds(&c, &Adopt::Orphans(Orphans::All))
                .unwrap()
                .is_empty()
        );
    });
}

#[test]
fn a_build_nobody_followed_to_its_end_is_found_by_its_commit() {
    each(|at| {
        let s = Db::open(at).unwrap();
        build_job("b1", "gw-a", 1_000, &s);
        s.set_build_follow(&follow("b1")).unwrap();
        assert!(
            s.finish_job("b1", &JobEnd::plain(JobState::Interrupted, None))
                .unwrap()
        );
        let found = s.unfollowed_build("hello", "c0ffee").unwrap();
        assert_eq!(found.map(|f| f.job_id), Some("b1".into()));
        assert_eq!(s.unfollowed_build("hello", "other").unwrap(), None);
        s.end_build_follow("b1").unwrap();
        assert_eq!(
            s.unfollowed_build("hello", "c0ffee").unwrap(),
            None,
            "seen to its end"
        );
    });
}
