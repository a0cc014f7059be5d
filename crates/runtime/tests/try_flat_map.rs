//! `try_flat_map`: a record read in part keeps its good parts and goes to
//! the dead-letter output once, with the reason; a record read in full
//! sends nothing there.

use flowline_connector_api::Record;
use flowline_connector_testkit::{MemorySink, MemorySource};
use flowline_runtime::{DeadLetterFormat, JobConfig, StreamEnvironment};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partly_read_records_keep_their_good_parts_and_are_dead_lettered_once() {
    let input: Vec<Record> = ["1,2", "3,x,4,y", "z"]
        .iter()
        .map(|s| Record::new(*s))
        .collect();
    let out = MemorySink::new();
    let dlq = MemorySink::new();
    let env = StreamEnvironment::new(JobConfig::named("flat"));
    let sink = env.add_sink("out", Box::new(out.clone()));
    env.dead_letter_sink("dlq", Box::new(dlq.clone()), DeadLetterFormat::Raw);
    env.source("mem", Box::new(MemorySource::new(vec![input])))
        .try_flat_map("parse", |r: &Record| {
            let text = String::from_utf8_lossy(&r.payload).into_owned();
            let (mut good, mut bad) = (Vec::new(), Vec::new());
            for p in text.split(',') {
                match p.parse::<u32>() {
                    Ok(n) => good.push(n),
                    Err(_) => bad.push(format!("`{p}` is not a number")),
                }
            }
            (good, (!bad.is_empty()).then(|| bad.join("; ")))
        })
        .map(|n: u32| Record::new(n.to_string()))
        .sink(sink);
    let summary = env.execute().await.unwrap();
    assert_eq!(out.payloads(), ["1", "2", "3", "4"]);
    let dead = dlq.records();
    assert_eq!(
        dead.iter()
            .map(|r| (
                String::from_utf8_lossy(&r.payload).into_owned(),
                String::from_utf8_lossy(r.header("flowline.error.reason").unwrap()).into_owned()
            ))
            .collect::<Vec<_>>(),
        [
            (
                "3,x,4,y".to_string(),
                "`x` is not a number; `y` is not a number".to_string()
            ),
            ("z".to_string(), "`z` is not a number".to_string())
        ]
    );
    assert_eq!(summary.bad_records, 2);
}
