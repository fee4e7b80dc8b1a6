//! Latency rows in path order.
use super::LatencyRow;

/// Puts each pair's rows in path order: from the hop no row of the pair leads to, along
/// `from -> to`; rows off that chain (a second path of the pair) follow in name order.
pub fn path_order(rows: &mut Vec<LatencyRow>) {
    rows.sort_by(|x, y| (&x.pair, &x.from, &x.to).cmp(&(&y.pair, &y.from, &y.to)));
    let mut out = Vec::with_capacity(rows.len());
    let mut rest: std::collections::VecDeque<LatencyRow> = rows.drain(..).collect();
    while let Some(first) = rest.front() {
        let pair = first.pair.clone();
        let mut group: Vec<LatencyRow> = Vec::new();
        while rest.front().is_some_and(|r| r.pair == pair) {
            group.extend(rest.pop_front());
        }
        while !group.is_empty() {
            // A start: a row whose `from` no other row of the group leads to.
            let start = (0..group.len())
                .find(|&i| !group.iter().any(|r| r.to == group[i].from))
                .unwrap_or(0);
            let mut at = group.remove(start);
            loop {
                let next = group.iter().position(|r| r.from == at.to);
                out.push(at);
                match next {
                    Some(i) => at = group.remove(i),
                    None => break,
                }
            }
        }
    }
    *rows = out;
}
