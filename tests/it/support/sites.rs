//! A two-site bed: the test bed's servers split over two Docker networks that cannot
//! reach each other (`<bed>-a`: web1..web3, `<bed>-b`: the rest), each server known there
//! by its name (`webN`) only; a runner container per site (the test's `deploy-gateway`
//! binary, on its site's network and on the bed's own network, where the index and the
//! PostgreSQL container are); a front-door gateway on this machine, which cannot even
//! resolve a server's name.  Every container and network carries the bed's labels, so
//! `ci/testbed.sh down`/`gc` removes them.

use std::path::Path;
use std::process::Command;

use super::{Gateway, GatewayOpts, Testbed, gateway_bin, pg, root};

/// The sites and which servers (1-based) each has.
pub const SITES: [(&str, [usize; 3]); 2] = [("a", [1, 2, 3]), ("b", [4, 5, 6])];

pub struct SitesBed {
    pub tb: Testbed,
    pub front: Gateway,
    pub runners: Vec<Runner>,
    /// The Artifactory stub's token (the front door and the runners hold it).
    pub token: String,
}

pub struct Runner {
    pub site: String,
    pub container: String,
}

fn docker(args: &[&str]) -> std::process::Output {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The site of server `webN`.
pub fn site_of(server: &str) -> &'static str {
    let n: usize = server.trim_start_matches("web").parse().unwrap();
    SITES
        .iter()
        .find(|(_, s)| s.contains(&n))
        .map(|(site, _)| *site)
        .unwrap()
}

impl SitesBed {
    /// Six servers over two sites, a runner per site, a front door; `extra`: top-level
    /// TOML lines for the front door (`site_wait_secs = 10`).
    pub fn up(test: &str, extra: &str) -> SitesBed {
        let tb = Testbed::up_with_db(test, 6);
        let (db, password) = tb.db.clone().unwrap();
        let labels = [
            format!("deploy.testbed={}", tb.name),
            format!("deploy.testbed.owner={}", std::process::id()),
        ];
        let label_args: Vec<&str> = labels.iter().flat_map(|l| ["--label", l]).collect();
        // The servers leave the bed's network for their site's.
        let mut pins = String::new();
        let old_pins = std::fs::read_to_string(tb.path("known_hosts")).unwrap();
        for (site, servers) in SITES {
            let net = format!("deploy-tb-{}-{site}", tb.name);
            let mut create = vec!["network", "create"];
            create.extend(&label_args);
            create.push(&net);
            docker(&create);
            for n in servers {
                let s = &tb.servers[n - 1];
                docker(&["network", "connect", "--alias", &s.name, &net, &s.container]);
                docker(&["network", "disconnect", &tb.network, &s.container]);
                let key = format!("[127.0.0.1]:{} ", s.ssh_port);
                let fp = old_pins.lines().find_map(|l| l.strip_prefix(&key)).unwrap();
                pins.push_str(&format!("[{}]:22 {fp}\n", s.name));
            }
        }
        std::fs::write(tb.path("known_hosts"), pins).unwrap();
        tb.set_inventory(&inventory(&tb.inventory_text()));
        let token = tb.artifactory_credential("token");
        let source = format!(
            "[sources.artifactory]\nkind = \"artifactory\"\nurl = \"http://127.0.0.1:{}/artifactory\"\n\
             repository = \"pypi-local\"\ntoken_env = \"ART_TOKEN\"\n[applications.hello]\nsource = \"artifactory\"\n",
            tb.artifactory_port
        );
        let published = docker(&["port", &db, "5432/tcp"]);
        let published = String::from_utf8_lossy(&published.stdout);
        let host_port = published.trim().rsplit(':').next().unwrap().to_string();
        let front = Gateway::start_opts(
            Some(&tb),
            GatewayOpts {
                sources: Some(source),
                env: vec![
                    ("ART_TOKEN".into(), token.clone()),
                    (pg::PASSWORD_ENV.into(), password.clone()),
                ],
                database: Some(format!("postgres://shop@127.0.0.1:{host_port}/shop")),
                extra: format!("gateway_id = \"front-door\"\n{extra}"),
                ..GatewayOpts::default()
            },
        );
        let mut bed = SitesBed {
            tb,
            front,
            runners: Vec::new(),
            token,
        };
        for (site, _) in SITES {
            let r = bed.start_runner(site, &label_args, &password, &host_port);
            bed.runners.push(r);
        }
        bed
    }

    /// Writes site `site`'s runner config (the front door's, with the database and the
    /// artifact source as the runner's network reaches them) and starts its container.
    fn start_runner(&self, site: &str, labels: &[&str], password: &str, host_port: &str) -> Runner {
        let dir = self.tb.path(&format!("runner-{site}"));
        std::fs::create_dir_all(&dir).unwrap();
        let front = std::fs::read_to_string(self.front.config()).unwrap();
        let config = front
            .replace(
                &format!("postgres://shop@127.0.0.1:{host_port}/shop"),
                "postgres://shop@db:5432/shop",
            )
            .replace(
                &format!("http://127.0.0.1:{}/", self.tb.artifactory_port),
                "http://index:8081/",
            )
            .replace(
                "gateway_id = \"front-door\"",
                &format!("gateway_id = \"runner-{site}\"\nsite = \"{site}\"\nlease_secs = 3"),
            );
        std::fs::write(dir.join("gateway.toml"), config).unwrap();
        let container = format!("deploy-tb-{}-runner-{site}", self.tb.name);
        let bin = Path::new(gateway_bin());
        let mounts = [
            bin.parent().unwrap().to_path_buf(),
            root(),
            self.tb.dir.path().to_path_buf(),
            self.tb.uv_binary.parent().unwrap().to_path_buf(),
        ];
        let mut args: Vec<String> = vec!["run".into(), "-d".into(), "--init".into()];
        args.extend(labels.iter().map(|s| s.to_string()));
        args.extend(["--name".into(), container.clone()]);
        args.extend(["--network".into(), self.tb.network.clone()]);
        args.extend(["-e".into(), format!("{}={password}", pg::PASSWORD_ENV)]);
        args.extend(["-e".into(), format!("ART_TOKEN={}", self.token)]);
        args.extend(["-e".into(), "RUST_LOG=info".into()]);
        for m in mounts {
            args.extend(["-v".into(), format!("{0}:{0}", m.display())]);
        }
        args.extend(["--entrypoint".into(), bin.display().to_string()]);
        args.push(image());
        args.extend(["runner".into(), "--config".into()]);
        args.push(dir.join("gateway.toml").display().to_string());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&args);
        let net = format!("deploy-tb-{}-{site}", self.tb.name);
        docker(&["network", "connect", &net, &container]);
        let r = Runner {
            site: site.to_string(),
            container,
        };
        r.wait_started(0);
        r
    }

    pub fn runner(&self, site: &str) -> &Runner {
        self.runners.iter().find(|r| r.site == site).unwrap()
    }

    /// The release a server's nginx serves (asked on the server: the bed's published
    /// ports went with its network).
    pub fn served(&self, server: &str) -> String {
        let c = &self.tb.server(server).container;
        let out = Command::new("docker")
            .args(["exec", c, "curl", "-s", "-m", "5", "-H"])
            .arg(format!("Host: {}", super::HOST))
            .arg("http://127.0.0.1/")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `site_parts` rows of a job: (host, owner, state), by host.
    pub fn parts(&self, job: &str) -> Vec<(String, String, String)> {
        let rows = self.tb.sql(&format!(
            "SELECT id, COALESCE(owner, ''), state FROM site_parts WHERE job_id = '{job}' ORDER BY id"
        ));
        rows.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split('|').collect();
                let host = f[0].trim_start_matches(job).trim_start_matches('/');
                (host.to_string(), f[1].to_string(), f[2].to_string())
            })
            .collect()
    }
}

/// The test-server image (whose Debian runs the test's binary as it is).
fn image() -> String {
    let out = Command::new(root().join("ci/image/build.sh"))
        .arg("--print-tag")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The bed's inventory with each server at its name, in its site, and the environment
/// on the relay (the servers have no route to the index), a canary, then batches of 5.
fn inventory(text: &str) -> String {
    let apps = &text[text.find("applications:").unwrap()..];
    let mut hosts = String::from("hosts:\n");
    for (site, servers) in SITES {
        for n in servers {
            hosts.push_str(&format!(
                "  web{n}: {{address: web{n}, port: 22, user: deploy, groups: [web], site: {site}}}\n"
            ));
        }
    }
    let env = "        groups: [web]\n        delivery: relay\n        rollout: {canary: true, batch: \"5\", max_failed: 0, on_halt: rollback}\n";
    format!("{hosts}{}", apps.replace("        groups: [web]\n", env))
}

impl Runner {
    /// Waits until the runner says it runs (once more than `before` times).
    fn wait_started(&self, before: usize) {
        for _ in 0..200 {
            if self.log().matches("runner runner-").count() > before {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("runner {} did not start:\n{}", self.site, self.log());
    }

    pub fn log(&self) -> String {
        let out = Command::new("docker")
            .args(["logs", &self.container])
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// SIGKILL: the runner dies mid-work, without a word to the database.
    pub fn kill(&self) {
        docker(&["kill", &self.container]);
    }

    /// SIGSTOP to the runner's process: it stalls, alive, its connections open.  (Not
    /// `docker pause`: the cgroup freezer can fail to freeze a busy container.)
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT: the stalled runner goes on where it stopped.
    pub fn unpause(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        let script = format!(
            "for p in /proc/[0-9]*; do [ \"$(cat $p/comm 2>/dev/null)\" = deploy-gateway ] && kill -{sig} ${{p#/proc/}}; done; true"
        );
        docker(&["exec", &self.container, "sh", "-c", &script]);
    }

    /// Starts the killed runner again (the same id: its previous parts are marked lost).
    pub fn start_again(&self) {
        let before = self.log().matches("runner runner-").count();
        docker(&["start", &self.container]);
        self.wait_started(before);
    }

    /// Whether the runner's container can open a TCP connection to `server`'s sshd (by
    /// name, or by its address on `server`'s site network).
    pub fn reaches(&self, bed: &SitesBed, server: &str) -> bool {
        let c = &bed.tb.server(server).container;
        let net = format!("deploy-tb-{}-{}", bed.tb.name, site_of(server));
        let ip = docker(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
            c,
        ]);
        let ip = String::from_utf8_lossy(&ip.stdout).trim().to_string();
        [server.to_string(), ip].iter().any(|addr| {
            Command::new("docker")
                .args(["exec", &self.container, "timeout", "3", "bash", "-c"])
                .arg(format!("exec 3<>/dev/tcp/{addr}/22"))
                .output()
                .is_ok_and(|o| o.status.success())
        })
    }
}
