//! One Linux network namespace per validator, so that the test can cut and restore the
//! validators' peer-to-peer links without iptables.
//!
//! Layout for a cluster with subnet number `X` (unique among the live clusters on the host,
//! guaranteed by the kernel: the first bridge, `cnXb0`, is created before anything else and
//! a name that exists makes the next `X` be tried):
//!
//! ```text
//! namespace cairn-X-PID-i      lo up
//!   cnXCi  10.201.X.(4i+2)/30  <- veth ->  cnXci 10.201.X.(4i+1)/30 on the host   (API: control)
//!   cnXDi  10.202.X.(i+1)/24   <- veth ->  cnXdi, a port of bridge cnXb{g}         (p2p: data)
//! ```
//!
//! The control links are point-to-point: the test process reaches every API at all times and
//! no validator can reach another through them. The data links of every validator hang on
//! data bridge `cnXb0` while healed; a partition moves each group's host-side data veths onto
//! a bridge of its own (`ip link set dev cnXdi master cnXbg`), so frames cross only within a
//! group. Established TCP connections are not reset: their packets are dropped until the
//! heal, as with a real network partition.
//!
//! The bridges carry the alias `cairn-pid-PID` and the namespaces the creating pid in their
//! name, so that leftovers of runs that died without cleaning up are deleted by the next run.

use std::process::Command;

/// Runs `ip ARGS`; the error names the command and carries its stderr.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn ip_output(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Deletes namespaces and bridges left by cluster harness runs whose process is gone.
fn cleanup_leftovers() {
    if let Ok(list) = ip_output(&["netns", "list"]) {
        for line in list.lines() {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            let parts: Vec<&str> = name.split('-').collect();
            if let ["cairn", _x, pid, _i] = parts.as_slice()
                && let Ok(pid) = pid.parse::<u32>()
                && !pid_alive(pid)
            {
                let _ = ip(&["netns", "del", name]);
            }
        }
    }
    if let Ok(links) = ip_output(&["-o", "link", "show", "type", "bridge"]) {
        for line in links.lines() {
            let Some(name) = line.split(": ").nth(1).map(|s| s.trim()) else {
                continue;
            };
            let Some(pid) = line
                .split_whitespace()
                .skip_while(|w| *w != "alias")
                .nth(1)
                .and_then(|a| a.strip_prefix("cairn-pid-"))
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if !pid_alive(pid) {
                let _ = ip(&["link", "del", name]);
            }
        }
    }
}

/// The namespaces, links and bridges of one cluster; removed on drop.
pub(crate) struct Netns {
    x: u32,
    n: usize,
    /// Namespace names created so far (validator order).
    names: Vec<String>,
    /// Data bridges created so far; `bridges[0]` is the healed network.
    bridges: Vec<String>,
}

impl Netns {
    /// Creates the namespaces and links for `n` validators, or says why it cannot.
    pub(crate) fn create(n: usize) -> Result<Netns, String> {
        if std::env::var_os("CAIRN_TEST_NO_NETNS").is_some_and(|v| v != "0") {
            return Err("CAIRN_TEST_NO_NETNS is set".into());
        }
        if n == 0 || n > 60 {
            return Err(format!("{n} validators: the address plan holds 1 to 60"));
        }
        if !rustix::process::geteuid().is_root() {
            return Err("not running as root".into());
        }
        match Command::new("ip").arg("-V").output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return Err(format!(
                    "`ip -V` failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ));
            }
            Err(e) => return Err(format!("`ip` not found: {e}")),
        }
        cleanup_leftovers();

        // Claim a subnet number: the kernel refuses a second bridge with the same name.
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let start = pid
            .wrapping_mul(7)
            .wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed));
        let mut claimed = None;
        for k in 0..250 {
            let x = 1 + (start.wrapping_add(k)) % 250;
            let bridge = format!("cn{x}b0");
            match ip(&["link", "add", &bridge, "type", "bridge"]) {
                Ok(()) => {
                    claimed = Some((x, bridge));
                    break;
                }
                Err(e) if e.contains("exists") => continue,
                Err(e) => return Err(e),
            }
        }
        let Some((x, bridge0)) = claimed else {
            return Err("every subnet number 1..=250 is taken by other clusters".into());
        };
        let mut ns = Netns {
            x,
            n,
            names: Vec::new(),
            bridges: vec![bridge0],
        };
        // On error, dropping `ns` removes what was made.
        ns.setup(pid)?;
        Ok(ns)
    }

    fn setup(&mut self, pid: u32) -> Result<(), String> {
        let x = self.x;
        let alias = format!("cairn-pid-{pid}");
        for g in 0..self.n {
            let bridge = format!("cn{x}b{g}");
            if g > 0 {
                ip(&["link", "add", &bridge, "type", "bridge"])?;
                self.bridges.push(bridge.clone());
            }
            ip(&["link", "set", "dev", &bridge, "alias", &alias])?;
            ip(&["link", "set", "dev", &bridge, "up"])?;
        }
        for i in 0..self.n {
            let ns = format!("cairn-{x}-{pid}-{i}");
            ip(&["netns", "add", &ns])?;
            self.names.push(ns.clone());
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;

            let (ch, cn) = (format!("cn{x}c{i}"), format!("cn{x}C{i}"));
            ip(&[
                "link", "add", &ch, "type", "veth", "peer", "name", &cn, "netns", &ns,
            ])?;
            ip(&[
                "addr",
                "add",
                &format!("{}/30", self.host_ip(i)),
                "dev",
                &ch,
            ])?;
            ip(&["link", "set", "dev", &ch, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/30", self.api_ip(i)),
                "dev",
                &cn,
            ])?;
            ip(&["-n", &ns, "link", "set", "dev", &cn, "up"])?;

            let (dh, dn) = (format!("cn{x}d{i}"), format!("cn{x}D{i}"));
            ip(&[
                "link", "add", &dh, "type", "veth", "peer", "name", &dn, "netns", &ns,
            ])?;
            ip(&["link", "set", "dev", &dh, "master", &self.bridges[0]])?;
            ip(&["link", "set", "dev", &dh, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", self.p2p_ip(i)),
                "dev",
                &dn,
            ])?;
            ip(&["-n", &ns, "link", "set", "dev", &dn, "up"])?;
        }
        Ok(())
    }

    /// The namespace validator `i` runs in.
    pub(crate) fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// The host's end of validator `i`'s control link.
    fn host_ip(&self, i: usize) -> String {
        format!("10.201.{}.{}", self.x, 4 * i + 1)
    }

    /// Where validator `i` serves its API (its end of the control link).
    pub(crate) fn api_ip(&self, i: usize) -> String {
        format!("10.201.{}.{}", self.x, 4 * i + 2)
    }

    /// Where validator `i` listens for peers (its end of the data link).
    pub(crate) fn p2p_ip(&self, i: usize) -> String {
        format!("10.202.{}.{}", self.x, i + 1)
    }

    /// Puts each group's data links on a bridge of its own; a validator in no group gets a
    /// bridge to itself.
    pub(crate) fn partition(&self, groups: &[&[usize]]) -> Result<(), String> {
        let mut bridge_of: Vec<Option<usize>> = vec![None; self.n];
        for (g, group) in groups.iter().enumerate() {
            for &i in group.iter() {
                assert!(i < self.n, "partition: no validator {i}");
                assert!(
                    bridge_of[i].is_none(),
                    "partition: validator {i} is in two groups"
                );
                bridge_of[i] = Some(g);
            }
        }
        let mut next = groups.len();
        for b in bridge_of.iter_mut() {
            if b.is_none() {
                *b = Some(next);
                next += 1;
            }
        }
        for (i, b) in bridge_of.iter().enumerate() {
            let b = b.unwrap_or(0);
            ip(&[
                "link",
                "set",
                "dev",
                &format!("cn{}d{i}", self.x),
                "master",
                &self.bridges[b],
            ])?;
        }
        Ok(())
    }

    /// Every data link back on the first bridge.
    pub(crate) fn heal(&self) -> Result<(), String> {
        for i in 0..self.n {
            ip(&[
                "link",
                "set",
                "dev",
                &format!("cn{}d{i}", self.x),
                "master",
                &self.bridges[0],
            ])?;
        }
        Ok(())
    }
}

impl Drop for Netns {
    /// Deleting a namespace destroys its veth ends and so their host-side peers; then the
    /// bridges go. (The validators in the namespaces must be gone first.)
    fn drop(&mut self) {
        for ns in &self.names {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("cluster: {e}");
            }
        }
        for b in &self.bridges {
            if let Err(e) = ip(&["link", "del", b]) {
                eprintln!("cluster: {e}");
            }
        }
    }
}
