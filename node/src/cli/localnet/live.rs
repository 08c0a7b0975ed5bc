//! The live line of `cairnd localnet`: each validator polled every tick, summarised by a
//! pure function ([`summarize`]) so what it shows is testable.

use super::*;

/// One validator's `/v1/status` and `cairn_committed_txs_total`, asked at the same time;
/// `None` for what did not answer.
pub(super) async fn poll(http: &reqwest::Client, api: &str) -> (Option<NodeStatus>, Option<u64>) {
    let status = async {
        let resp = http.get(format!("{api}/v1/status")).send().await.ok()?;
        resp.json::<NodeStatus>().await.ok()
    };
    tokio::join!(status, committed_txs_of(http, api))
}

/// Committed transactions per second: the median of the validators' own rates since their
/// previous sample in `last` (which this updates). Each validator's counter starts at 0 when
/// its process starts, so counters are only compared with the same validator's; a validator
/// that did not answer or whose counter went back (restarted) starts over.
pub(super) fn throughput(
    last: &mut [Option<(u64, tokio::time::Instant)>],
    counts: &[Option<u64>],
    now: tokio::time::Instant,
) -> Option<f64> {
    let mut rates = Vec::new();
    for (last, count) in last.iter_mut().zip(counts) {
        if let (Some(c), Some((prev, at))) = (*count, *last)
            && c >= prev
        {
            let secs = now.duration_since(at).as_secs_f64().max(1e-3);
            rates.push((c - prev) as f64 / secs);
        }
        *last = count.map(|c| (c, now));
    }
    rates.sort_by(f64::total_cmp);
    rates.get(rates.len() / 2).copied()
}

/// At most this many down validators are named on the live line.
const NAMED_DOWN: usize = 3;

/// The live line, from what each validator's API answered this tick (`None`: no answer):
/// `height H · T tx/s · up U/N (validator-2 down) · view V leader validator-1`.
///
/// `up` counts the validators whose API answered. Height and view are the highest any
/// validator reported (they come from different validators: a just-restarted one reports a
/// low view until it catches up). The leader is the one named by the validators at that
/// highest view (the most common answer among them, then the lowest index), shown `(down)`
/// if its own API did not answer.
pub(super) fn summarize(
    names: &[&str],
    statuses: &[Option<NodeStatus>],
    rate: Option<f64>,
) -> String {
    let n = statuses.len();
    let answered: Vec<&NodeStatus> = statuses.iter().flatten().collect();
    let down: Vec<String> = statuses
        .iter()
        .enumerate()
        .filter(|(_, s)| s.is_none())
        .map(|(i, _)| name_of(names, i))
        .collect();
    let up = format!("up {}/{n}", answered.len());
    if answered.is_empty() {
        return format!("{up} (all down)");
    }
    let height = answered.iter().map(|s| s.height).max().unwrap_or(0);
    let view = answered.iter().map(|s| s.view).max().unwrap_or(0);
    let mut votes: Vec<(u16, usize)> = Vec::new();
    for l in answered
        .iter()
        .filter(|s| s.view == view)
        .filter_map(|s| s.leader)
    {
        match votes.iter_mut().find(|(v, _)| *v == l) {
            Some((_, count)) => *count += 1,
            None => votes.push((l, 1)),
        }
    }
    let leader = votes
        .iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map_or_else(
            || "?".to_string(),
            |&(l, _)| {
                let l = usize::from(l);
                let name = name_of(names, l);
                match statuses.get(l) {
                    Some(None) => format!("{name} (down)"),
                    _ => name.to_string(),
                }
            },
        );
    let rate = rate.map_or_else(|| "- tx/s".to_string(), |r| format!("{r:.1} tx/s"));
    let up = match down.len() {
        0 => up,
        k if k <= NAMED_DOWN => format!("{up} ({} down)", down.join(", ")),
        k => format!(
            "{up} ({} and {} more down)",
            down[..NAMED_DOWN].join(", "),
            k - NAMED_DOWN
        ),
    };
    format!("height {height} · {rate} · {up} · view {view} leader {leader}")
}

/// The name of validator `i` (its replica index), `validator-i` if there is none.
fn name_of(names: &[&str], i: usize) -> String {
    names
        .get(i)
        .map_or_else(|| format!("validator-{i}"), ToString::to_string)
}

/// `cairn_committed_txs_total` from a validator's `/metrics`.
async fn committed_txs_of(http: &reqwest::Client, api: &str) -> Option<u64> {
    let text = crate::api::fetch_metrics(http, api).await?;
    crate::api::sample_value(&text, "cairn_committed_txs_total").map(|v| v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 4] = ["validator-0", "validator-1", "validator-2", "validator-3"];

    fn at(height: u64, view: u64, leader: Option<u16>) -> Option<NodeStatus> {
        Some(NodeStatus {
            height,
            view,
            leader,
            ..NodeStatus::default()
        })
    }

    #[test]
    fn a_dead_leader_is_shown_down() {
        let statuses = [
            at(10, 12, Some(2)),
            at(10, 12, Some(2)),
            None,
            at(9, 12, Some(2)),
        ];
        assert_eq!(
            summarize(&NAMES, &statuses, Some(12.54)),
            "height 10 · 12.5 tx/s · up 3/4 (validator-2 down) · view 12 leader validator-2 (down)"
        );
        // Once the others have moved on, the new leader is shown, the dead one still down.
        let statuses = [
            at(11, 13, Some(3)),
            at(11, 13, Some(3)),
            None,
            at(11, 13, Some(3)),
        ];
        assert_eq!(
            summarize(&NAMES, &statuses, None),
            "height 11 · - tx/s · up 3/4 (validator-2 down) · view 13 leader validator-3"
        );
    }

    #[test]
    fn a_restarted_validator_counts_as_up() {
        // validator-2 was restarted by hand and is catching up: it answers, so it is up, and
        // its own low height and view do not show.
        let statuses = [
            at(40, 41, Some(1)),
            at(40, 41, Some(1)),
            at(3, 0, Some(0)),
            at(40, 41, Some(1)),
        ];
        assert_eq!(
            summarize(&NAMES, &statuses, Some(0.0)),
            "height 40 · 0.0 tx/s · up 4/4 · view 41 leader validator-1"
        );
    }

    #[test]
    fn view_and_leader_never_come_from_a_lower_view_validator() {
        // Same height, but validator-3 just restarted (view 0, listed last: the old
        // `height >=` tie picked it). validator-2 is a block behind but a view ahead: the
        // view and its leader are its, though fewer validators name that leader.
        let statuses = [
            at(50, 55, Some(3)),
            at(50, 55, Some(3)),
            at(49, 56, Some(0)),
            at(50, 0, Some(0)),
        ];
        assert_eq!(
            summarize(&NAMES, &statuses, None),
            "height 50 · - tx/s · up 4/4 · view 56 leader validator-0"
        );
        // At the highest view the most common answer wins, then the lowest index; validators
        // at a lower view do not vote.
        let statuses = [
            at(7, 9, Some(1)),
            at(7, 9, Some(2)),
            at(7, 9, Some(2)),
            at(7, 8, Some(1)),
        ];
        assert!(summarize(&NAMES, &statuses, None).ends_with("view 9 leader validator-2"));
        let statuses = [
            at(7, 9, Some(3)),
            at(7, 9, Some(1)),
            at(7, 8, Some(3)),
            None,
        ];
        assert!(
            summarize(&NAMES, &statuses, None)
                .ends_with("up 3/4 (validator-3 down) · view 9 leader validator-1")
        );
        // No leader known at the highest view (a Raft election): `?`, not an older leader.
        let statuses = [at(7, 9, None), at(7, 8, Some(1)), None, None];
        assert_eq!(
            summarize(&NAMES, &statuses, None),
            "height 7 · - tx/s · up 2/4 (validator-2, validator-3 down) · view 9 leader ?"
        );
    }

    #[test]
    fn all_down_and_many_down() {
        assert_eq!(
            summarize(&NAMES, &[None, None, None, None], None),
            "up 0/4 (all down)"
        );
        assert_eq!(
            summarize(&NAMES, &[None, None, None, None], Some(3.0)),
            "up 0/4 (all down)"
        );
        let names: Vec<String> = (0..7).map(|i| format!("validator-{i}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut statuses = vec![None; 7];
        statuses[4] = at(5, 6, Some(6));
        statuses[6] = at(5, 6, Some(6));
        assert_eq!(
            summarize(&names, &statuses, None),
            "height 5 · - tx/s · up 2/7 (validator-0, validator-1, validator-2 and 2 more \
             down) · view 6 leader validator-6"
        );
    }

    #[test]
    fn throughput_compares_each_validator_with_itself() {
        let t0 = tokio::time::Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        let t2 = t1 + Duration::from_secs(1);
        let mut last = vec![None; 3];
        assert_eq!(throughput(&mut last, &[Some(100), Some(5), None], t0), None);
        // validator-1 restarted (its counter went back): not counted this time.
        assert_eq!(
            throughput(&mut last, &[Some(120), Some(2), Some(7)], t1),
            Some(10.0)
        );
        // Median of 10, 30 and 1,000 (validator-2 catching up).
        assert_eq!(
            throughput(&mut last, &[Some(130), Some(32), Some(1007)], t2),
            Some(30.0)
        );
        // A validator that did not answer starts over.
        assert_eq!(
            throughput(
                &mut last,
                &[Some(140), None, Some(1008)],
                t2 + Duration::from_secs(1)
            ),
            Some(10.0)
        );
        assert_eq!(last[1], None);
    }
}
