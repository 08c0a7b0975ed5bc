//! Testnet generation: the directory layout, keys matching the genesis, refusals.

use genesis::{
    Genesis, NodeConfig, Protocol, TestnetError, TestnetSpec, load_key_file, write_testnet,
};
use ledger::Address;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn spec(out: &Path, validators: usize, protocol: Protocol) -> TestnetSpec {
    TestnetSpec {
        validators,
        protocol,
        out: out.to_path_buf(),
        accounts: 3,
        balance: 777,
        base_port: 30000,
        chain_id: "cairn-local".into(),
        genesis_time: "2026-11-23T00:00:00Z".into(),
        params: Default::default(),
        funded: Vec::new(),
        hosts: None,
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn writes_a_consistent_testnet() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("net");
    let summary = write_testnet(&spec(&out, 4, Protocol::Pbft)).unwrap();

    let g = Genesis::load(&out.join("genesis.json")).unwrap();
    assert_eq!(g, summary.genesis);
    assert_eq!(g.hash(), summary.genesis_hash);
    assert_eq!(
        (g.chain_id.as_str(), g.protocol),
        ("cairn-local", Protocol::Pbft)
    );
    assert_eq!((g.n(), g.f(), g.quorum()), (4, 1, 3));
    assert_eq!(g.total_supply(), 3 * 777);

    for (i, v) in g.validators.iter().enumerate() {
        let home = out.join(format!("validator-{i}"));
        assert_eq!(v.name, format!("validator-{i}"));
        assert_eq!(v.p2p_address, format!("/ip4/127.0.0.1/tcp/{}", 30000 + i));
        assert_eq!(
            Genesis::load(&home.join("genesis.json")).unwrap().hash(),
            g.hash()
        );
        let config = NodeConfig::load(&home).unwrap();
        assert_eq!(config.name, v.name);
        assert_eq!(config.p2p_listen, v.p2p_address);
        assert_eq!(config.api_listen, format!("127.0.0.1:{}", 31000 + i));
        let ck = config.consensus_key_path(&home);
        let nk = config.network_key_path(&home);
        assert_eq!(load_key_file(&ck).unwrap().public(), v.consensus_key);
        assert_eq!(load_key_file(&nk).unwrap().public(), v.network_key);
        assert_eq!((mode(&ck), mode(&nk), mode(&home)), (0o600, 0o600, 0o700));
        assert_eq!(summary.validators[i].home, home);
    }

    for (k, account) in g.accounts.iter().enumerate() {
        let path = out.join("wallets").join(format!("wallet-{k}.json"));
        let key = load_key_file(&path).unwrap();
        assert_eq!(Address::of(&key.public()), account.address);
        assert_eq!(account.balance, 777);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(summary.wallets[k].address, account.address);
    }
}

#[test]
fn refuses_a_non_empty_output_directory() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("keep.txt"), "x").unwrap();
    let err = write_testnet(&spec(tmp.path(), 4, Protocol::HotStuff)).unwrap_err();
    assert!(matches!(err, TestnetError::OutNotEmpty(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "output directory {} is not empty; choose a new directory or remove this one first",
            tmp.path().display()
        )
    );
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

#[test]
fn an_existing_empty_directory_is_fine() {
    let tmp = tempfile::tempdir().unwrap();
    let summary = write_testnet(&spec(tmp.path(), 1, Protocol::Raft)).unwrap();
    assert_eq!(summary.genesis.n(), 1);
    assert!(tmp.path().join("validator-0/config.toml").is_file());
}

#[test]
fn invalid_genesis_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("net");
    let err = write_testnet(&spec(&out, 3, Protocol::HotStuff)).unwrap_err();
    assert!(err.is_input_error());
    assert_eq!(
        err.to_string(),
        "the testnet genesis would be invalid: validators: hotstuff needs at least 4 validators \
         (3f+1 with f ≥ 1), got 3; add validators or use raft"
    );
    assert!(!out.exists());
}

#[test]
fn bad_chain_id_or_time_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec(&tmp.path().join("net"), 4, Protocol::HotStuff);
    s.chain_id = "my chain".into();
    assert!(
        write_testnet(&s)
            .unwrap_err()
            .to_string()
            .contains("chain_id: \"my chain\" contains ' '")
    );
    s.chain_id = "ok".into();
    s.genesis_time = "yesterday".into();
    assert!(
        write_testnet(&s)
            .unwrap_err()
            .to_string()
            .contains("genesis_time: \"yesterday\"")
    );
}

#[test]
fn ports_past_65535_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec(&tmp.path().join("net"), 4, Protocol::HotStuff);
    s.base_port = 64533;
    let err = write_testnet(&s).unwrap_err();
    assert_eq!(
        err.to_string(),
        "--base-port 64533 with 4 validators puts API ports up to 65536, past 65535; choose a \
         --base-port of at most 64532"
    );
    s.base_port = 64532;
    assert!(write_testnet(&s).is_ok());
}

#[test]
fn balances_past_u64_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = spec(&tmp.path().join("net"), 4, Protocol::HotStuff);
    s.balance = u64::MAX / 2;
    let err = write_testnet(&s).unwrap_err();
    assert!(
        err.to_string().contains(
            "accounts: balances sum past the u64 limit (18446744073709551615) at accounts[2]"
        ),
        "{err}"
    );
}

/// `cairnd testnet --hosts`: each validator's genesis address is its host (IP, or a DNS name
/// as /dns/), it listens for peers on the bind address at its port and serves its API on the
/// API bind address at the port + 1000.
#[test]
fn a_multi_host_testnet_names_each_host() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("net");
    let peers: Vec<(String, u16)> = [
        "10.0.0.1:26600",
        "b.example:26600",
        "[fd00::3]:26601",
        "d:9",
    ]
    .iter()
    .map(|e| genesis::HostLayout::parse_peer(e).unwrap())
    .collect();
    let mut s = spec(&out, 4, Protocol::HotStuff);
    s.hosts = Some(genesis::HostLayout {
        peers,
        p2p_bind: "0.0.0.0".parse().unwrap(),
        api_bind: "127.0.0.1".parse().unwrap(),
    });
    let summary = write_testnet(&s).unwrap();
    let addrs: Vec<&str> = summary
        .genesis
        .validators
        .iter()
        .map(|v| v.p2p_address.as_str())
        .collect();
    assert_eq!(
        addrs,
        [
            "/ip4/10.0.0.1/tcp/26600",
            "/dns/b.example/tcp/26600",
            "/ip6/fd00::3/tcp/26601",
            "/dns/d/tcp/9"
        ]
    );
    let c = NodeConfig::load(&out.join("validator-2")).unwrap();
    assert_eq!(c.p2p_listen, "/ip4/0.0.0.0/tcp/26601");
    assert_eq!(c.api_listen, "127.0.0.1:27601");
    // The written genesis passes validation (the node loads it).
    Genesis::load(&out.join("validator-3/genesis.json")).unwrap();
}

#[test]
fn bad_host_lists_are_refused_with_the_entry() {
    for (entry, needle) in [
        ("a.example", "expected HOST:PORT"),
        ("a.example:0", "1-65535"),
        ("a.example:70000", "1-65535"),
        ("bad_host!:1", "neither an IP address nor a DNS name"),
        ("-a:1", "neither"),
    ] {
        let e = genesis::HostLayout::parse_peer(entry).unwrap_err();
        assert!(e.contains(needle) && e.contains(entry), "{entry}: {e}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let layout = |hosts: &[&str]| genesis::HostLayout {
        peers: hosts
            .iter()
            .map(|e| genesis::HostLayout::parse_peer(e).unwrap())
            .collect(),
        p2p_bind: "0.0.0.0".parse().unwrap(),
        api_bind: "127.0.0.1".parse().unwrap(),
    };
    let mut s = spec(&tmp.path().join("a"), 4, Protocol::Pbft);
    s.hosts = Some(layout(&["a:1", "b:1", "c:1"]));
    let e = write_testnet(&s).unwrap_err();
    assert!(e.to_string().contains("3 hosts for 4 validators"), "{e}");
    s.hosts = Some(layout(&["a:1", "b:1", "a:1", "c:1"]));
    let e = write_testnet(&s).unwrap_err();
    assert!(
        e.to_string().contains("a:1 twice (validators 0 and 2)"),
        "{e}"
    );
    s.hosts = Some(layout(&["a:1", "b:1", "c:65000", "d:1"]));
    let e = write_testnet(&s).unwrap_err();
    assert!(e.to_string().contains("past 65535"), "{e}");
    assert!(
        !tmp.path().join("a").exists(),
        "nothing is written for a refused spec"
    );
}
