//! Hosts of a test cluster in network namespaces (`ip netns`), so links between nodes can be cut
//! and slowed while each node stays reachable by the test's clients.
//!
//! ```text
//!   root namespace                          namespace sl<K>n<i> (one per node)
//!   bridge sl<K>br ── veth sl<K>c<i> ────── c0  10.<K>.0.<i>/24     cluster link
//!   10.<K>.<10+i>.1 ── veth sl<K>l<i> ───── l0  10.<K>.<10+i>.2/24  client link
//! ```
//!
//! Nodes talk to each other over the bridge only (the cluster links); the test reaches node i
//! over its own client link, which faults never touch. `K` is drawn from the process id and
//! a count of the clusters the process made, so that runs (and tests) side by side do not
//! collide. Everything is removed on drop. Needs root and
//! iproute2; [`Hosts::new`] answers `None` when namespaces cannot be made (then the test is
//! skipped, and fails under `CI=true`).

use std::process::{Command, Output};

/// The namespaces and links of one test cluster.
pub struct Hosts {
    k: u32,
    nodes: u32,
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)")
}

fn ip_ok(args: &[&str]) {
    let o = ip(args);
    assert!(
        o.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `tc args` in namespace `ns` (the root namespace when empty).
fn tc(ns: &str, args: &[&str]) -> Output {
    let mut c = Command::new("tc");
    if !ns.is_empty() {
        c.args(["-n", ns]);
    }
    c.args(args).output().expect("run tc (iproute2)")
}

impl Hosts {
    /// `nodes` hosts joined by a bridge, or `None` when this machine cannot make namespaces.
    pub fn new(nodes: u32) -> Option<Hosts> {
        // Two clusters of one test process get two numbers too.
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let made = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let k = 20 + (std::process::id() + 97 * made) % 200;
        let h = Hosts { k, nodes };
        h.remove();
        let br = h.bridge();
        if !ip(&["link", "add", &br, "type", "bridge"]).status.success() {
            return super::kafka::missing("network namespaces (root and iproute2)");
        }
        ip_ok(&["link", "set", &br, "up"]);
        for i in 1..=nodes {
            h.add_host(i);
        }
        Some(h)
    }

    fn bridge(&self) -> String {
        format!("sl{}br", self.k)
    }

    /// The namespace of node `i`.
    pub fn ns(&self, i: u32) -> String {
        format!("sl{}n{i}", self.k)
    }

    fn add_host(&self, i: u32) {
        let (k, ns) = (self.k, self.ns(i));
        ip_ok(&["netns", "add", &ns]);
        ip_ok(&["-n", &ns, "link", "set", "lo", "up"]);
        let c = format!("sl{k}c{i}");
        ip_ok(&[
            "link", "add", &c, "type", "veth", "peer", "name", "c0", "netns", &ns,
        ]);
        ip_ok(&["link", "set", &c, "master", &self.bridge(), "up"]);
        ip_ok(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/24", self.cluster_ip(i)),
            "dev",
            "c0",
        ]);
        ip_ok(&["-n", &ns, "link", "set", "c0", "up"]);
        let l = format!("sl{k}l{i}");
        ip_ok(&[
            "link", "add", &l, "type", "veth", "peer", "name", "l0", "netns", &ns,
        ]);
        ip_ok(&["addr", "add", &format!("10.{k}.{}.1/24", 10 + i), "dev", &l]);
        ip_ok(&["link", "set", &l, "up"]);
        ip_ok(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{}/24", self.client_ip(i)),
            "dev",
            "l0",
        ]);
        ip_ok(&["-n", &ns, "link", "set", "l0", "up"]);
    }

    /// Node `i`'s address on the cluster links.
    pub fn cluster_ip(&self, i: u32) -> String {
        format!("10.{}.0.{i}", self.k)
    }

    /// Node `i`'s address on its client link (reachable from the test).
    pub fn client_ip(&self, i: u32) -> String {
        format!("10.{}.{}.2", self.k, 10 + i)
    }

    /// A command run inside node `i`'s namespace.
    pub fn command(&self, i: u32, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns(i), program]);
        c
    }

    /// The `--cluster` list of the nodes, each at `cluster_port` of its cluster link.
    pub fn spec(&self, cluster_port: u16) -> String {
        (1..=self.nodes)
            .map(|i| format!("{i}@{}:{cluster_port}", self.cluster_ip(i)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A node per namespace, started, each listening on `native_port` of its client link and
    /// `cluster_port` of its cluster link.
    pub fn start_nodes(
        &self,
        root: &std::path::Path,
        native_port: u16,
        cluster_port: u16,
    ) -> Vec<super::cluster::Node> {
        let spec = self.spec(cluster_port);
        let nodes = (1..=self.nodes)
            .map(|i| super::cluster::Node {
                id: u64::from(i),
                dir: root.join(format!("node-{i}")),
                native: format!("{}:{native_port}", self.client_ip(i)),
                child: None,
                netns: Some(self.ns(i)),
                kafka: None,
                http: None,
                args: Vec::new(),
            })
            .collect();
        let mut nodes: Vec<super::cluster::Node> = nodes;
        for n in nodes.iter_mut() {
            n.start(&spec);
        }
        nodes
    }

    /// Cuts node `i` off the other nodes (its cluster link goes down); its clients still reach it.
    pub fn cut(&self, i: u32) {
        ip_ok(&["-n", &self.ns(i), "link", "set", "c0", "down"]);
    }

    /// Restores node `i`'s cluster link, with no limit on it.
    pub fn heal(&self, i: u32) {
        for (ns, dev) in self.link_ends(i) {
            let _ = tc(&ns, &["qdisc", "del", "dev", &dev, "root"]);
        }
        ip_ok(&["-n", &self.ns(i), "link", "set", "c0", "up"]);
    }

    /// Slows node `i`'s cluster link, both ways, to `kbit` kbit/s (a token bucket: the kernel
    /// here has no netem, so a slow link rather than a long one).
    pub fn slow(&self, i: u32, kbit: u32) {
        for (ns, dev) in self.link_ends(i) {
            let rate = format!("{kbit}kbit");
            let o = tc(
                &ns,
                &[
                    "qdisc", "replace", "dev", &dev, "root", "tbf", "rate", &rate,
                ]
                .into_iter()
                .chain(["burst", "16kb", "latency", "2s"])
                .collect::<Vec<_>>(),
            );
            assert!(
                o.status.success(),
                "tc: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }

    /// Both ends of node `i`'s cluster link: (namespace, device), "" for the root namespace.
    fn link_ends(&self, i: u32) -> [(String, String); 2] {
        [
            (self.ns(i), "c0".into()),
            (String::new(), format!("sl{}c{i}", self.k)),
        ]
    }

    fn remove(&self) {
        for i in 1..=self.nodes {
            let _ = ip(&["netns", "del", &self.ns(i)]);
            let _ = ip(&["link", "del", &format!("sl{}c{i}", self.k)]);
            let _ = ip(&["link", "del", &format!("sl{}l{i}", self.k)]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        self.remove();
    }
}
