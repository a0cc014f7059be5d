"""What trial.py and trial_event.py share: the knobs, the weird values, the
generation of one topic's records (bad records, late events, duplicates),
the independent reference (a per-partition watermark and a plain group-by,
math.fsum for sums), the producer, the runs of `flowline run` through
SIGKILLs, and the comparison of every window, dead letter and late event.

The reference assumes each partition holds the records in the order they
were produced: the producer is idempotent (a retried batch never lands
behind a later one), and the topic is read back and compared before any job
runs, so that a harness fault is never reported as the job's."""
import datetime, json, math, os, random, signal, subprocess, sys, threading, time, urllib.request

import detector

SEED = int(os.environ.get("SEED", "1"))
N = int(os.environ.get("N", "200000"))
KILLS = int(os.environ.get("KILLS", "2"))
# Checkpoint interval: short, so that stops land between checkpoints taken
# in the run (a run lasts well under a second) and restores start mid-way.
CKPT = os.environ.get("CKPT", "200ms")
# How each stopped run is stopped, cycled: SIGKILL (a crash) by default;
# SIGNALS=TERM,KILL mixes graceful stops in (the last checkpoint and the
# flush on the way out, at a random moment).
STOP_SIGNALS = [getattr(signal, "SIG" + s.strip().upper())
                for s in os.environ.get("SIGNALS", "KILL").split(",")]
WORKERS = [int(w) for w in os.environ.get("WORKERS", "3,1,2").split(",")]
BIN = os.environ.get("FLOWLINE", os.path.expanduser("~/.cache/flowline/target/release/flowline"))
KAFKA = os.environ.get("FLOWLINE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
ES = os.environ.get("FLOWLINE_ELASTICSEARCH_URL", "http://127.0.0.1:9200")
# The producer's codec, a different one each seed (COMPRESSION sets it).
COMPRESSION = os.environ.get("COMPRESSION") or ["zstd", "lz4", "snappy", "gzip", "none"][SEED % 5]
PARTS = 4
OOO = 3000
W = 10_000
SLIDE = int(os.environ.get("SLIDE", "0")) or W
LATENESS = int(os.environ.get("LATENESS", "0"))
# KEYED=1: the topic is keyed by host (each message's key is its host, a
# host's events on one partition) and the job declares `keyed_by = ["host"]`:
# partitions run on tasks of their own, no exchange.
KEYED = os.environ.get("KEYED", "") == "1"
# SINK=kafka: the windows go to a Kafka topic (<run>-windows) instead of the
# search server. A window may be on it more than once only as distinct
# versions (an update with an allowed-late event); the last is compared,
# and the same key and payload twice is a duplicate.
SINK = os.environ.get("SINK", "elasticsearch")
# BLOCK=S (search-server sink): once the windows index exists, a write block
# is put on it (index.blocks.write, as a shrink or an operator sets it) for S
# seconds, across whatever stops and restarts fall in them. The server
# answers each write 403 meanwhile; no window may be lost, doubled or
# dead-lettered for it.
BLOCK = float(os.environ.get("BLOCK", "0"))
rnd = random.Random(SEED)


def es_req(method, path, body=None):
    req = urllib.request.Request(ES + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_to_stop(proc, port, checkpoints, records):
    """Polls the job's /api/status until it has completed `checkpoints`
    checkpoints in this run and read `records` more after the last of
    them (or ended); says where it stood."""
    read, cp, done, mark = 0, None, 0, None
    deadline = time.time() + 600
    while proc.poll() is None and time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=2) as r:
                st = json.load(r)
        except (OSError, ValueError):
            time.sleep(0.005)
            continue
        read = st.get("records_in", 0)
        now = (st.get("last_checkpoint") or [None])[0]
        if now != cp and now is not None:
            cp, done = now, done + 1
        if done >= checkpoints:
            mark = read if mark is None else mark
            if read >= mark + records:
                break
        time.sleep(0.005)
    return f"{read} records, {done} checkpoints in the run (last {cp})"

HOSTS = ["web-1", "web-2", "a|b", "a", "b|c", "x\\", "\\y", 'q"uote', "ホスト-1", "emoji-🚀",
         "h" * 700, "", " sp ace ", "tab\tbed", "nl\nline", "db-01.eu-west-1.internal"]
METRICS = ["cpu", "c", "b|c", "mem.used", "disk/io", "", "ünï"]


def value():
    """A value as JSON text, and as the float it means."""
    k = rnd.random()
    if k < 0.02: return ("1e300", 1e300)
    if k < 0.04: return ("-1e300", -1e300)
    if k < 0.05: return ("5e-324", 5e-324)
    if k < 0.06: return ("-0.0", -0.0)
    # 2^53, exact; 2^53 + 1 is a bad record (a float would change it).
    if k < 0.08: return ("9007199254740992", 9007199254740992.0)
    if k < 0.10: return ("1.5E3", 1500.0)
    if k < 0.12:
        i = rnd.randint(-10**6, 10**6); return (str(i), float(i))
    x = rnd.gauss(50, 30)
    return (repr(x), x)


def jdump(s):
    return json.dumps(s, ensure_ascii=rnd.random() < 0.5)


class Trial:
    def __init__(self, prefix):
        self.run = f"{prefix}-{SEED}-{int(time.time())}"
        self.work = os.path.join(os.environ.get("SOAK_DIR", "/tmp/flowline-soak"), self.run)
        os.makedirs(self.work, exist_ok=True)
        self.base = (int(time.time() * 1000) - 3 * 86400_000) // 1000 * 1000
        # Their own generator, so that the records' stream is the one each
        # seed always gave but for the silences.
        own = random.Random(SEED * 1_000_003 + 17)
        self.anomaly = detector.Settings(own)
        # Three hosts fall silent for a while (a reboot, a scrape gap), so
        # that series come back after `forget_after` or just before it.
        self.silent = {h: (self.base + own.randint(40_000, 250_000), own.randint(15_000, 120_000))
                       for h in HOSTS[:3]}

    def generate(self, bads, good):
        """N records on PARTS partitions: `bads(i, t)` lists bad payloads to
        pick from; `good(ts, host)` gives (payload text, (key1, key2, ts,
        value)) for that host. Under KEYED a host's events all go to one
        partition, keyed by the host (bad records by `bad-<i>`)."""
        events = []  # (partition, payload bytes, expect, message key)
        maxts = [None] * PARTS
        t = self.base
        self.bad_count = 0
        for i in range(N):
            host = rnd.choice(HOSTS)
            for _ in range(len(HOSTS)):
                start, length = self.silent.get(host, (0, 0))
                if not start <= t < start + length:
                    break
                host = HOSTS[(HOSTS.index(host) + 1) % len(HOSTS)]
            p = HOSTS.index(host) % PARTS if KEYED else rnd.randrange(PARTS)
            t += rnd.randint(0, 4)
            kind = rnd.random()
            if kind < 0.004:
                bad = rnd.choice(bads(i, t))
                # unique per record so each can be found once
                if bad.startswith(b'{') and bad.endswith(b'}'):
                    bad = bad[:-1] + (',"n":%d}' % i).encode()
                else:
                    bad = bad + (b' #%d' % i if bad else b'')
                events.append((p, bad, ("bad", i), b"bad-%d" % i))
                self.bad_count += 1
                continue
            ts = t + rnd.randint(-2000, 0)
            if kind < 0.006 and maxts[p] is not None:
                # Near or behind the watermark: 2.5 to 60 s behind the partition's max.
                ts = maxts[p] - rnd.choice([rnd.randint(2500, 4000), rnd.randint(4000, 60000)])
            payload, ev = good(ts, host)
            key = host.encode() if KEYED else None
            events.append((p, payload.encode(), ("ev",) + ev, key))
            if rnd.random() < 0.01:  # a true duplicate: counts twice
                events.append((p, payload.encode(), ("ev",) + ev, key))
            maxts[p] = ts if maxts[p] is None else max(maxts[p], ts)
        self.events = events
        self.reference()

    def reference(self):
        """Per partition in order, the watermark decides lateness."""
        wm = [None] * PARTS
        mx = [None] * PARTS
        self.windows = {}
        self.late = 0
        for p, _, e, _ in self.events:
            if e[0] != "ev":
                continue
            _, k1, k2, ts, v = e
            last = ts - ts % SLIDE
            starts = [s for s in range(last - W + SLIDE, last + 1, SLIDE) if s <= ts < s + W]
            ok = [s for s in starts if wm[p] is None or s + W - 1 + LATENESS > wm[p]]
            # In the late output once when it misses any of its windows:
            # all of them, or (sliding) its earlier ones, already final,
            # while it counts in the later ones (README, "late").
            if len(ok) < len(starts) or not starts:
                self.late += 1
            if not ok:
                continue
            for start in ok:
                self.windows.setdefault((k1, k2, start), []).append(v)
            mx[p] = ts if mx[p] is None else max(mx[p], ts)
            wm[p] = mx[p] - OOO - 1
        print(f"{self.run}: {len(self.events)} records, {self.bad_count} bad, {self.late} late, "
              f"{len(self.windows)} windows", flush=True)

    def produce(self):
        from confluent_kafka import Consumer, Producer, TopicPartition
        from confluent_kafka.admin import AdminClient, NewTopic
        adm = AdminClient({"bootstrap.servers": KAFKA})
        topics = [NewTopic(self.run, PARTS, 1)]
        if SINK == "kafka":
            topics.append(NewTopic(f"{self.run}-windows", PARTS, 1))
        for f in adm.create_topics(topics).values():
            f.result()
        # Idempotent: without it a batch retried while the new topic's
        # leaders are elected lands behind later ones, and the partition's
        # order is not the one the reference assumed (every job run then
        # counted hundreds of events late that the reference did not).
        pr = Producer({"bootstrap.servers": KAFKA, "linger.ms": 20, "message.max.bytes": 2_000_000,
                       "enable.idempotence": True, "compression.type": COMPRESSION})
        for p, payload, _, key in self.events:
            while True:
                try:
                    pr.produce(self.run, value=payload, key=key, partition=p)
                    break
                except BufferError:
                    pr.poll(0.1)
        if pr.flush(60) != 0:
            sys.exit(f"{self.run}: the producer could not deliver every record")
        # Read back: each partition holds exactly its records, in order.
        c = Consumer({"bootstrap.servers": KAFKA, "group.id": f"{self.run}-readback",
                      "enable.auto.commit": False})
        for p in range(PARTS):
            want = [payload for q, payload, _, _ in self.events if q == p]
            c.assign([TopicPartition(self.run, p, 0)])
            have = []
            deadline = time.time() + 120
            while len(have) < len(want) and time.time() < deadline:
                for m in c.consume(10_000, 1.0):
                    if m.error() is None:
                        have.append(m.value() or b"")
            if have != want:
                first = next((i for i, (a, b) in enumerate(zip(have, want)) if a != b), min(len(have), len(want)))
                sys.exit(f"{self.run}: partition {p} does not hold the records as produced "
                         f"(first difference at offset {first}; {len(have)} read, {len(want)} produced): "
                         "the harness, not the job")
        c.close()

    def run_jobs(self, event_section=""):
        cfg = f"""[job]
name = "{self.run}"
workers = WORKERS
[source]
type = "kafka"
bootstrap_servers = "{KAFKA}"
topics = ["{self.run}"]
group_id = "{self.run}"
bounded = true
{'keyed_by = ["host"]' if KEYED else ""}
{self.sink_section()}
{event_section}[window]
size = "10s"
allowed_lateness = "{LATENESS}ms"
{f'slide = "{SLIDE}ms"' if SLIDE != W else ""}
out_of_orderness = "3s"
[checkpoint]
dir = "{self.work}/ckpt"
interval = "{CKPT}"
[dead_letter]
type = "file"
path = "{self.work}/dead.ndjson"
[anomalies]
type = "elasticsearch"
url = "{ES}"
index = "{self.run}-anomalies"
[current]
type = "elasticsearch"
url = "{ES}"
index = "{self.run}-current"
{self.anomaly.section()}[late]
type = "file"
path = "{self.work}/late.ndjson"
"""
        runs = []
        done = threading.Event()
        blocker = None
        if BLOCK and SINK != "kafka":
            blocker = threading.Thread(target=self.block_writes, args=(done,))
            blocker.start()
        try:
            self.runs(cfg, runs)
        finally:
            done.set()
            if blocker:
                blocker.join()
        print("; ".join(runs), flush=True)

    def block_writes(self, done):
        """Blocks writes to the windows index for BLOCK seconds, from when
        it exists (or not at all if the runs end first); always lifted."""
        index = f"{self.run}-windows"
        while not done.is_set():
            try:
                es_req("GET", f"/{index}/_settings")
                break
            except OSError:
                time.sleep(0.02)
        if done.is_set():
            print("write block: the windows index never appeared", flush=True)
            return
        t0 = time.time()
        es_req("PUT", f"/{index}/_settings", {"index.blocks.write": True})
        try:
            done.wait(BLOCK)
        finally:
            es_req("PUT", f"/{index}/_settings", {"index.blocks.write": False})
        print(f"write block on {index} for {time.time() - t0:.1f} s", flush=True)

    def runs(self, cfg, runs):
        for n, w in enumerate(WORKERS):
            path = f"{self.work}/job{n}.toml"
            port = free_port()
            with open(path, "w") as f:
                f.write(cfg.replace("WORKERS", str(w)) + f'[http]\nlisten = "127.0.0.1:{port}"\n')
            log = open(f"{self.work}/job{n}.log", "w")
            t0 = time.time()
            proc = subprocess.Popen([BIN, "run", "--config", path], stdout=log, stderr=subprocess.STDOUT)
            if n < KILLS:
                # Stopped at a seeded point of this run, from its
                # /api/status: after 0 to 2 of its checkpoints, then up to
                # 2 000 records more (a stop timed in seconds came after the
                # end of the input once the job got faster than the pause).
                where = wait_to_stop(proc, port, rnd.randint(0, 2), rnd.randint(0, 2000))
                sig = STOP_SIGNALS[n % len(STOP_SIGNALS)]
                proc.send_signal(sig)
                rc = proc.wait(timeout=300)
                if rc == 0 and sig == signal.SIGKILL:
                    where += ", ended before the signal"
                runs.append(f"workers {w}: {sig.name} at {where} ({time.time()-t0:.1f}s, exit {rc})")
                continue
            rc = proc.wait(timeout=900)
            runs.append(f"workers {w}: exit {rc} after {time.time()-t0:.1f}s")
            break

    def sink_section(self):
        if SINK == "kafka":
            return ('[sink]\ntype = "kafka"\n'
                    f'bootstrap_servers = "{KAFKA}"\ntopic = "{self.run}-windows"\n')
        return f'[sink]\ntype = "elasticsearch"\nurl = "{ES}"\nindex = "{self.run}-windows"\n'

    def topic_docs(self):
        """The window topic's records in offset order per partition."""
        from confluent_kafka import Consumer, TopicPartition
        topic = f"{self.run}-windows"
        c = Consumer({"bootstrap.servers": KAFKA, "group.id": f"{self.run}-windows-reader",
                      "enable.auto.commit": False})
        out = []
        for p in range(PARTS):
            _, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            c.assign([TopicPartition(topic, p, 0)])
            have = []
            deadline = time.time() + 120
            while (not have or have[-1][0] + 1 < hi) and hi > 0 and time.time() < deadline:
                for m in c.consume(10_000, 1.0):
                    if m.error() is None:
                        have.append((m.offset(), m.key(), m.value()))
            out += [(k, v) for _, k, v in have]
        c.close()
        return out

    def docs(self, what="windows"):
        if SINK == "kafka" and what == "windows":
            return [(json.loads(v), (k, v)) for k, v in self.topic_docs()]
        index = f"{self.run}-{what}"
        try:
            es_req("POST", f"/{index}/_refresh")
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return []  # nothing was written to it
            raise
        docs = []
        r = es_req("POST", f"/{index}/_search?scroll=1m", {"size": 5000, "sort": ["_doc"]})
        while r["hits"]["hits"]:
            docs += r["hits"]["hits"]
            r = es_req("POST", "/_search/scroll", {"scroll": "1m", "scroll_id": r["_scroll_id"]})
        return [(h["_source"], h["_id"]) for h in docs]

    def check_detector(self, doc_key):
        """The anomaly and current-status documents against the reference
        detector (detector.py) over the group-by's windows (with allowed
        lateness the job judges each window once final, every event within
        the lateness in it, as in the group-by)."""
        current, anomalies, forgotten = detector.detect(self.windows, W, self.anomaly)
        got_current = {doc_key(d): d for d, _ in self.docs("current")}
        got_anomalies = {doc_key(d) + (ms_of(d["episode_start"]),): d for d, _ in self.docs("anomalies")}
        print(f"anomaly settings: {self.anomaly}; silences {sorted(self.silent.values())}")
        print(f"current status: {len(got_current)} documents, {len(current)} expected "
              f"({sum(c['status'] == 'warming_up' for c in current.values())} warming up); "
              f"anomalies: {len(got_anomalies)}, {len(anomalies)} expected; "
              f"{forgotten} returns of a forgotten series")
        return (detector.compare(current, got_current, "current", ms_of)
                + detector.compare(anomalies, got_anomalies, "anomaly", ms_of))

    def check(self, doc_key):
        """Every window (count, exact sum, min, max, avg; p50/p95/p99 within
        2 % of the nearest rank), dead letter and late event; exits 1 on any
        difference. `doc_key(doc)` gives a document's (key1, key2)."""
        got = {}
        seen = set()
        dups = 0
        for d, raw in self.docs():
            k = doc_key(d) + (ms_of(d["window_start"]),)
            # A search index: one document per window. A topic: each version
            # of a window once, the last one counts.
            if (raw if SINK == "kafka" else k) in seen: dups += 1
            seen.add(raw if SINK == "kafka" else k)
            got[k] = d
        problems = []
        for k, vals in self.windows.items():
            d = got.get(k)
            if d is None:
                problems.append(f"missing {k[0][:30]!r} {k[1]!r} {k[2]}"); continue
            s = math.fsum(vals)
            want = (len(vals), s, min(vals), max(vals), s / len(vals))
            have = (d["count"], d["sum"], d["min"], d["max"], d["avg"])
            if want != have:
                problems.append(f"{k[0][:30]!r} {k[1]!r} {k[2]}: got {have}, want {want}")
            sv = sorted(vals)
            for q in (50, 95, 99):
                exact = sv[max(0, math.ceil(q / 100 * len(sv)) - 1)]
                est = d[f"p{q}"]
                if not (sv[0] <= est <= sv[-1]) or abs(est - exact) > 0.02 * abs(exact):
                    problems.append(f"{k[0][:30]!r} {k[1]!r} {k[2]} p{q}: {est} vs exact {exact}")
        for k in got:
            if k not in self.windows:
                problems.append(f"unexpected {k[0][:30]!r} {k[1]!r} {k[2]}")
        problems += self.check_detector(doc_key)
        dl = [json.loads(l) for l in open(f"{self.work}/dead.ndjson")]
        lt = [json.loads(l) for l in open(f"{self.work}/late.ndjson")]
        dl_ids = {x.get("id") for x in dl}
        late_ids = {x.get("id") for x in lt}
        print(f"windows: {len(got)} indexed ({dups} duplicates), {len(self.windows)} expected; "
              f"dead letters {len(dl)} ({len(dl_ids)} distinct ids), expected {self.bad_count}; "
              f"late {len(lt)} ({len(late_ids)} distinct ids), expected {self.late}")
        print(f"{len(problems)} problems")
        for p in problems[:15]:
            print("  ", p)
        if (len(dl) != self.bad_count or len(dl_ids) != len(dl) or len(lt) != self.late
                or len(late_ids) != len(lt) or problems or dups):
            sys.exit(1)


def ms_of(s):
    d = datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    return int(d.timestamp()) * 1000 + d.microsecond // 1000
