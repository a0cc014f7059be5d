//! The DataStream API: environment → source → transforms → key_by →
//! windows / process → sink → execute.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowline_connector_api::{BoxSink, BoxSource, Record};

use crate::exchange::{ExchangeOp, Groups, KeyGroups, KEY_GROUPS};
use crate::handle::{self, JobHandle, JobSummary};
use crate::job::{ChainFactory, DeadLetterFormat, Graph, GroupsFactory, Head, JobConfig};
use crate::keyed::{AggregateFunction, ByRef, ByValue, Key, KeySelector, WindowOp, WindowResult};
use crate::observe::{Count, StageDef};
use crate::operator::{
    BoxOp, Build, Counted, FilterOp, FlatMapOp, MapOp, SinkOp, TimestampOp, TryFlatMapOp, TryMapOp,
};
use crate::process::{KeyedProcessFunction, ProcessOp};
use crate::sinks::IntoRecord;
use crate::window::WindowSpec;
use crate::RuntimeError;
use flowline_checkpoint::CheckpointStore;

/// Where a job is assembled; see the crate docs for an example.
#[derive(Clone)]
pub struct StreamEnvironment {
    graph: Arc<Mutex<Graph>>,
}

impl std::fmt::Debug for StreamEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StreamEnvironment")
    }
}

/// Names a sink added with [`StreamEnvironment::add_sink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SinkHandle(usize);

impl StreamEnvironment {
    /// A new environment.
    pub fn new(config: JobConfig) -> Self {
        Self {
            graph: Arc::new(Mutex::new(Graph::new(config))),
        }
    }

    fn graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The job's source. One per job.
    pub fn source(&self, name: &str, source: BoxSource) -> DataStream<Record> {
        let mut g = self.graph();
        if g.source.is_some() {
            g.errors
                .push("a job has one source; source() was called twice".into());
        }
        g.source = Some((name.to_string(), source));
        DataStream {
            env: self.clone(),
            build: Arc::new(|op: BoxOp<Record>| Box::new(op) as Head),
            desc: format!("source({name})"),
            stages: Vec::new(),
            split: None,
        }
    }

    /// Adds a sink; elements reach it through [`DataStream::sink`].
    pub fn add_sink(&self, name: &str, sink: BoxSink) -> SinkHandle {
        let mut g = self.graph();
        g.sinks.push((name.to_string(), sink));
        SinkHandle(g.sinks.len() - 1)
    }

    /// Where bad records go (undecodable, invalid, rejected by a sink).
    /// Without one they are counted and logged.
    pub fn dead_letter_sink(&self, name: &str, sink: BoxSink, format: DeadLetterFormat) {
        self.graph().dead_letter = Some((name.to_string(), sink, format));
    }

    /// Where events later than the allowed lateness go. Without one they are
    /// counted (`flowline_late_records_total`) and dropped.
    pub fn late_sink(&self, name: &str, sink: BoxSink, format: DeadLetterFormat) {
        self.graph().late = Some((name.to_string(), sink, format));
    }

    /// Where checkpoints are kept. Without one the job keeps no checkpoints.
    pub fn checkpoint_store(&self, store: impl CheckpointStore) {
        self.graph().store = Some(Box::new(store));
    }

    /// What a start would restore, checked without starting: the newest
    /// checkpoint in the store reads back (checksum) and was taken from this
    /// job graph. Its id, or `None` (no store, or an empty one: a fresh
    /// start). `flowline validate` calls it.
    pub fn check_restore(&self) -> Result<Option<u64>, RuntimeError> {
        let mut g = self.graph();
        let graph = g.pipeline.as_ref().map(|(_, s)| s.clone());
        let Some(store) = g.store.as_mut() else {
            return Ok(None);
        };
        match (store.latest()?, graph) {
            (Some(cp), Some(graph)) => {
                crate::driver::check_graph(&cp, &graph)?;
                Ok(Some(cp.id))
            }
            (cp, _) => Ok(cp.map(|c| c.id)),
        }
    }

    /// Starts the job; the handle stops it and shows its metrics.
    pub fn start(self) -> Result<JobHandle, RuntimeError> {
        let graph = {
            let mut g = self.graph();
            let config = g.config.clone();
            std::mem::replace(&mut *g, Graph::new(config))
        };
        handle::start(graph)
    }

    /// Runs the job until its bounded input ends (or until it fails).
    pub async fn execute(self) -> Result<JobSummary, RuntimeError> {
        self.start()?.join().await
    }
}

/// A stream of `T` elements, each with an event time.
pub struct DataStream<T> {
    env: StreamEnvironment,
    build: Build<T>,
    desc: String,
    stages: Vec<StageDef>,
    /// Behind an exchange: the chain before it, and how to make the key
    /// groups of the chain after it.
    split: Option<Split>,
}

/// A pipeline split at its exchange.
#[derive(Clone)]
struct Split {
    /// The chain of a source partition, ending in the [`ExchangeOp`].
    pre: ChainFactory,
    /// Given the factory of a key group's chain (its head type-erased),
    /// the factory of a worker's key groups.
    groups: GroupsMaker,
    /// Every operator before the exchange is stateless: a partition's run
    /// of records may be split across tasks (`driver::split`).
    stateless: bool,
}

/// Operators that keep no state and set no timers: the chain before an
/// exchange made of them alone may run on several tasks at once.
const STATELESS: &[&str] = &[
    "map",
    "filter",
    "flat_map",
    "try_map",
    "try_flat_map",
    "timestamps",
    "side_sink",
];

type HeadFactory = Arc<dyn Fn() -> Head + Send + Sync>;
type GroupsMaker = Arc<dyn Fn(HeadFactory) -> GroupsFactory + Send + Sync>;

impl<T> std::fmt::Debug for DataStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.desc)
    }
}

impl DataStream<Record> {
    /// Decodes source records. An `Err` sends the record down the
    /// bad-record path (dead-letter sink) with the error as its reason; the
    /// job goes on.
    pub fn try_map<O, E, F>(self, stage: &str, f: F) -> DataStream<O>
    where
        O: Send + 'static,
        E: std::fmt::Display,
        F: Fn(&Record) -> Result<O, E> + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let stage: Arc<str> = Arc::from(stage);
        let desc = format!("try_map({stage})");
        self.then(desc.clone(), (desc, "try_map", None), move |down| {
            Box::new(TryMapOp {
                f: f.clone(),
                stage: stage.clone(),
                down,
            })
        })
    }

    /// Reads several elements from each source record (`f` gives them and,
    /// when some part could not be read, the reason): the elements go on,
    /// and a record with a reason goes to the dead-letter output once, with
    /// `stage` and the reason, its good parts kept.
    pub fn try_flat_map<O, E, F>(self, stage: &str, f: F) -> DataStream<O>
    where
        O: Send + 'static,
        E: std::fmt::Display,
        F: Fn(&Record) -> (Vec<O>, Option<E>) + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let stage: Arc<str> = Arc::from(stage);
        let desc = format!("try_flat_map({stage})");
        self.then(desc.clone(), (desc, "try_flat_map", None), move |down| {
            Box::new(TryFlatMapOp {
                f: f.clone(),
                stage: stage.clone(),
                down,
            })
        })
    }
}

impl<T: Send + 'static> DataStream<T> {
    /// Records `text` in the job graph after the last operator, adding no
    /// operator: for a setting that changes what the state behind it means
    /// (how a job reads its events, say), so that a checkpoint taken with
    /// another restores into this job no more than one of another graph.
    /// Checkpoints taken before the note existed still restore, with a
    /// warning (`flowline_checkpoint::graph`).
    pub fn note(mut self, text: &str) -> Self {
        self.desc.push_str(&flowline_checkpoint::graph::note(text));
        self
    }

    /// Appends an operator: `desc` goes into the job graph's text (which a
    /// checkpoint must match), `stage` is what the operations view shows.
    fn then<U>(
        self,
        desc: String,
        stage: (String, &'static str, Option<usize>),
        op: impl Fn(BoxOp<U>) -> BoxOp<T> + Send + Sync + 'static,
    ) -> DataStream<U> {
        let prev = self.build;
        let count = Count::default();
        let mut stages = self.stages;
        stages.push(StageDef {
            name: stage.0,
            kind: stage.1,
            sink: stage.2,
            count: count.clone(),
        });
        DataStream {
            env: self.env,
            build: Arc::new(move |down| {
                prev(Box::new(Counted {
                    count: count.clone(),
                    down: op(down),
                }))
            }),
            desc: format!("{}>{}", self.desc, desc),
            stages,
            split: self.split,
        }
    }

    /// The stream as keyed operators see it. With the exchange (the
    /// default; see `JobConfig::partitioned_by_key`), the first `key_by`
    /// splits the pipeline: what comes before runs per source partition and
    /// ends in an [`ExchangeOp`] routing by `key_fn`'s key group, what comes
    /// after runs per key group on the workers. A later `key_by` stays in
    /// its key group (its key must be the first one's: `KeyGroup`).
    fn exchanged<K: Key, KF: KeySelector<T, K>>(self, key_fn: Arc<KF>) -> DataStream<T> {
        let partitioned = self.env.graph().config.partitioned_by_key;
        if partitioned || self.split.is_some() {
            return self;
        }
        let stateless = self.stages.iter().all(|s| STATELESS.contains(&s.kind));
        let prev = self.build;
        let pre: ChainFactory = Arc::new(move || {
            let head = prev(Box::new(ExchangeOp {
                key_fn: key_fn.clone(),
                _k: std::marker::PhantomData,
            }));
            *head
                .downcast::<BoxOp<Record>>()
                .expect("the first segment's head takes records")
        });
        let groups: GroupsMaker = Arc::new(|head: HeadFactory| {
            let chain: Arc<dyn Fn() -> BoxOp<T> + Send + Sync> = Arc::new(move || {
                *head()
                    .downcast::<BoxOp<T>>()
                    .expect("a key group's chain takes the exchanged elements")
            });
            Arc::new(move || Box::new(KeyGroups::new(chain.clone())) as Box<dyn Groups>)
        });
        DataStream {
            env: self.env,
            build: Arc::new(|op: BoxOp<T>| Box::new(op) as Head),
            desc: format!("{}>exchange({KEY_GROUPS})", self.desc),
            stages: self.stages,
            split: Some(Split {
                pre,
                groups,
                stateless,
            }),
        }
    }

    /// One output per element.
    pub fn map<U: Send + 'static>(
        self,
        f: impl Fn(T) -> U + Send + Sync + 'static,
    ) -> DataStream<U> {
        let f = Arc::new(f);
        self.then("map".into(), ("map".into(), "map", None), move |down| {
            Box::new(MapOp { f: f.clone(), down })
        })
    }

    /// Keeps the elements for which `f` is true.
    pub fn filter(self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> DataStream<T> {
        let f = Arc::new(f);
        self.then(
            "filter".into(),
            ("filter".into(), "filter", None),
            move |down| Box::new(FilterOp { f: f.clone(), down }),
        )
    }

    /// Zero or more outputs per element, with the element's event time.
    pub fn flat_map<U, I>(self, f: impl Fn(T) -> I + Send + Sync + 'static) -> DataStream<U>
    where
        U: Send + 'static,
        I: IntoIterator<Item = U> + 'static,
    {
        let f = Arc::new(f);
        self.then(
            "flat_map".into(),
            ("flat_map".into(), "flat_map", None),
            move |down| Box::new(FlatMapOp { f: f.clone(), down }),
        )
    }

    /// Takes event time (ms since the epoch) from the element; it feeds the
    /// partition's watermark (max event time − out-of-orderness − 1).
    pub fn with_timestamps(self, f: impl Fn(&T) -> i64 + Send + Sync + 'static) -> DataStream<T> {
        self.env.graph().assigns_timestamps = true;
        let f = Arc::new(f);
        self.then(
            "timestamps".into(),
            ("timestamps".into(), "timestamps", None),
            move |down| Box::new(TimestampOp { f: f.clone(), down }),
        )
    }

    /// Partitions state by key. State lives with the source partition the
    /// key arrives on; a key seen on two partitions fails the job (see the
    /// crate docs, "Keys and partitions").
    pub fn key_by<K: Key, KF: Fn(&T) -> K + Send + Sync + 'static>(
        self,
        f: KF,
    ) -> KeyedStream<T, K, ByValue<KF>> {
        KeyedStream {
            stream: self,
            key_fn: Arc::new(ByValue(f)),
            _k: std::marker::PhantomData,
        }
    }

    /// As [`key_by`](DataStream::key_by), with the key borrowed from a field
    /// of the element: no key is built per element (it is cloned only when
    /// state for it is created).
    pub fn key_by_ref<K: Key, KF>(self, f: KF) -> KeyedStream<T, K, ByRef<KF>>
    where
        KF: for<'a> Fn(&'a T) -> &'a K + Send + Sync + 'static,
    {
        KeyedStream {
            stream: self,
            key_fn: Arc::new(ByRef(f)),
            _k: std::marker::PhantomData,
        }
    }

    /// Writes a copy of each element to a sink and passes it on.
    pub fn side_sink(
        self,
        sink: SinkHandle,
        encode: impl Fn(&T) -> Record + Send + Sync + 'static,
    ) -> DataStream<T>
    where
        T: Clone,
    {
        self.side_sink_some(sink, move |t| Some(encode(t)))
    }

    /// Writes to a sink the elements for which `encode` returns a record,
    /// and passes every element on.
    pub fn side_sink_some(
        self,
        sink: SinkHandle,
        encode: impl Fn(&T) -> Option<Record> + Send + Sync + 'static,
    ) -> DataStream<T>
    where
        T: Clone,
    {
        let encode = Arc::new(encode);
        let stage = ("side_sink".into(), "side_sink", Some(sink.0));
        self.then(format!("side_sink({})", sink.0), stage, move |down| {
            Box::new(SinkOp {
                encode: encode.clone(),
                sink: sink.0,
                down: Some(down),
            })
        })
    }

    /// Ends the pipeline in a sink, encoding each element with `encode`.
    pub fn sink_with(self, sink: SinkHandle, encode: impl Fn(&T) -> Record + Send + Sync + 'static)
    where
        T: Clone,
    {
        self.sink_some(sink, move |t: &T| Some(encode(t)));
    }

    /// Ends the pipeline in a sink that gets the elements for which
    /// `encode` returns a record.
    pub fn sink_some(
        self,
        sink: SinkHandle,
        encode: impl Fn(&T) -> Option<Record> + Send + Sync + 'static,
    ) where
        T: Clone,
    {
        let encode = Arc::new(encode);
        let prev = self.build;
        let count = Count::default();
        let mut stages = self.stages;
        stages.push(StageDef {
            name: "sink".into(),
            kind: "sink",
            sink: Some(sink.0),
            count: count.clone(),
        });
        let head: HeadFactory = Arc::new(move || {
            prev(Box::new(Counted {
                count: count.clone(),
                down: Box::new(SinkOp::<_, T> {
                    encode: encode.clone(),
                    sink: sink.0,
                    down: None,
                }),
            }))
        });
        let (factory, keyed, stateless): (ChainFactory, _, _) = match self.split {
            None => (
                Arc::new(move || {
                    *head()
                        .downcast::<BoxOp<Record>>()
                        .expect("the chain's head takes records")
                }),
                None,
                false,
            ),
            Some(split) => (split.pre, Some((split.groups)(head)), split.stateless),
        };
        let desc = format!("{}>sink({})", self.desc, sink.0);
        let mut g = self.env.graph();
        if g.pipeline.is_some() {
            g.errors.push(
                "a job has one pipeline ending in sink(); use side_sink for more outputs".into(),
            );
        }
        g.pipeline = Some((factory, desc));
        g.keyed = keyed;
        g.stateless_pre = stateless;
        g.stages = stages;
    }

    /// Ends the pipeline in a sink.
    pub fn sink(self, sink: SinkHandle)
    where
        T: IntoRecord + Clone,
    {
        self.sink_with(sink, |t| t.to_record())
    }
}

/// A stream partitioned by key.
pub struct KeyedStream<T, K, KF> {
    stream: DataStream<T>,
    key_fn: Arc<KF>,
    _k: std::marker::PhantomData<fn() -> K>,
}

impl<T, K, KF> std::fmt::Debug for KeyedStream<T, K, KF> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}>key_by", self.stream.desc)
    }
}

impl<T: Send + 'static, K: Key, KF: KeySelector<T, K>> KeyedStream<T, K, KF> {
    /// Event-time windows per key.
    pub fn window(self, spec: WindowSpec) -> WindowedStream<T, K, KF> {
        WindowedStream {
            keyed: self,
            spec,
            lateness: 0,
        }
    }

    /// Per-key logic with state and timers.
    pub fn process<P>(self, f: P) -> DataStream<P::Out>
    where
        P: KeyedProcessFunction<Key = K, In = T>,
    {
        let key_fn = self.key_fn;
        let stage = ("key_by>process".into(), "process", None);
        self.stream
            .exchanged(key_fn.clone())
            .then("key_by>process".into(), stage, move |down| {
                Box::new(ProcessOp {
                    key_fn: key_fn.clone(),
                    f: f.clone(),
                    states: Default::default(),
                    timers: Default::default(),
                    down,
                })
            })
    }
}

/// A keyed stream with windows.
pub struct WindowedStream<T, K, KF> {
    keyed: KeyedStream<T, K, KF>,
    spec: WindowSpec,
    lateness: i64,
}

impl<T, K, KF> std::fmt::Debug for WindowedStream<T, K, KF> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}>window({:?})", self.keyed, self.spec)
    }
}

impl<T: Send + 'static, K: Key, KF: KeySelector<T, K>> WindowedStream<T, K, KF> {
    /// A late event within this much behind the watermark updates and
    /// re-emits its window; later ones go to the late side output.
    pub fn allowed_lateness(mut self, d: Duration) -> Self {
        self.lateness = d.as_millis() as i64;
        self
    }

    /// Aggregates each window incrementally.
    pub fn aggregate<A>(self, agg: A) -> DataStream<WindowResult<K, A::Out>>
    where
        A: AggregateFunction<In = T>,
        A::Out: Send + 'static,
    {
        let (spec, lateness, key_fn) = (self.spec, self.lateness, self.keyed.key_fn);
        let desc = match agg.state_name() {
            None => format!("key_by>window({spec:?},lateness={lateness})>aggregate"),
            Some(n) => format!("key_by>window({spec:?},lateness={lateness})>aggregate[{n}]"),
        };
        let name = match spec {
            WindowSpec::Tumbling { size } => format!("key_by>window(tumbling {size} ms)"),
            WindowSpec::Sliding { size, slide } => {
                format!("key_by>window(sliding {size} ms every {slide} ms)")
            }
        };
        let stage = (name, "window_aggregate", None);
        let stream = self.keyed.stream.exchanged(key_fn.clone());
        stream.then(desc, stage, move |down| {
            Box::new(WindowOp::new(
                key_fn.clone(),
                agg.clone(),
                spec,
                lateness,
                down,
            ))
        })
    }
}
