//! The source suite.

use std::collections::BTreeMap;

use flowline_connector_api::{BoxSource, ConnectorError, PartitionId, SourceEvent, SourcePosition};

/// What a source should read: payloads per partition, in order.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    partitions: BTreeMap<PartitionId, Vec<Vec<u8>>>,
}

impl Expected {
    /// Nothing expected yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a partition's payloads, in order.
    pub fn partition(mut self, id: &str, payloads: Vec<Vec<u8>>) -> Self {
        self.partitions.insert(PartitionId::new(id), payloads);
        self
    }
}

type Read = BTreeMap<PartitionId, Vec<(u64, Vec<u8>)>>;

/// Reads until `End` (at most `limit` events), answering assignments with an
/// empty seek.
async fn read_all(src: &mut BoxSource, limit: usize) -> Read {
    let mut out: Read = BTreeMap::new();
    for _ in 0..limit {
        match src
            .next_dyn()
            .await
            .unwrap_or_else(|e| panic!("source failed: {e}"))
        {
            SourceEvent::Records(b) => {
                for r in b {
                    let p = r
                        .partition
                        .clone()
                        .expect("rule: every record names its partition");
                    out.entry(p).or_default().push((r.offset, r.payload));
                }
            }
            SourceEvent::Assigned(_) => src.seek_dyn(&SourcePosition::new()).await.expect("seek"),
            SourceEvent::End => return out,
            _ => {}
        }
    }
    panic!("rule: a bounded source ends: no End after {limit} events")
}

/// Checks a bounded source:
/// - it reads every expected record, each partition in order, offsets
///   strictly increasing, and then reports `End`;
/// - rebuilt and sought to the middle of every partition (a checkpointed
///   position: the offset after the last record processed), it reads exactly
///   the rest: nothing lost, nothing twice.
pub async fn bounded_source_suite<F>(make: F, expected: &Expected)
where
    F: Fn() -> Result<BoxSource, ConnectorError>,
{
    let mut src = make().expect("build the source");
    let all = read_all(&mut src, 1_000_000).await;
    let payloads = |r: &Read| -> BTreeMap<PartitionId, Vec<Vec<u8>>> {
        r.iter()
            .map(|(p, v)| (p.clone(), v.iter().map(|(_, b)| b.clone()).collect()))
            .collect()
    };
    assert_eq!(
        payloads(&all),
        expected.partitions,
        "rule: every record, each partition in order"
    );
    for (p, recs) in &all {
        assert!(
            recs.windows(2).all(|w| w[0].0 < w[1].0),
            "rule: offsets increase within partition {p}"
        );
    }
    // Restore from a checkpointed position in the middle of each partition.
    let mut pos = SourcePosition::new();
    let mut want: BTreeMap<PartitionId, Vec<Vec<u8>>> = BTreeMap::new();
    for (p, recs) in &all {
        let cut = recs.len() / 2;
        if cut == 0 {
            want.insert(p.clone(), recs.iter().map(|(_, b)| b.clone()).collect());
            continue;
        }
        pos = pos.with(p.clone(), recs[cut - 1].0 + 1);
        want.insert(
            p.clone(),
            recs[cut..].iter().map(|(_, b)| b.clone()).collect(),
        );
    }
    let mut src = make().expect("build the source again");
    src.seek_dyn(&pos)
        .await
        .unwrap_or_else(|e| panic!("seek to {pos:?}: {e}"));
    let rest = read_all(&mut src, 1_000_000).await;
    let mut got = payloads(&rest);
    got.retain(|_, v| !v.is_empty());
    want.retain(|_, v| !v.is_empty());
    assert_eq!(
        got, want,
        "rule: restored from a position, a source reads exactly what follows it"
    );
    // After End, still nothing.
    match src.next_dyn().await {
        Ok(SourceEvent::Records(b)) => assert!(b.is_empty(), "rule: no records after End"),
        Ok(_) => {}
        Err(e) => panic!("next after End failed: {e}"),
    }
}
