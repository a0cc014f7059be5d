#!/usr/bin/env python3
"""A stranger's trial of flowline on a round-robin (null-key) topic:
odd keys, offsets, fractions, extremes, duplicates, bad records, late events,
SIGKILLs at random moments, restarts with other worker counts. The expected
windows come from a plain group-by here (math.fsum for sums)."""
import json, math, os, random, signal, subprocess, sys, time, datetime, urllib.request

SEED = int(os.environ.get("SEED", "1"))
N = int(os.environ.get("N", "200000"))
KILLS = int(os.environ.get("KILLS", "2"))
WORKERS = [int(w) for w in os.environ.get("WORKERS", "3,1,2").split(",")]
BIN = os.environ.get("FLOWLINE", os.path.expanduser("~/.cache/flowline/target/release/flowline"))
KAFKA = os.environ.get("FLOWLINE_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
ES = os.environ.get("FLOWLINE_ELASTICSEARCH_URL", "http://127.0.0.1:9200")
PARTS = 4
OOO = 3000
W = 10_000
SLIDE = int(os.environ.get("SLIDE", "0")) or W
LATENESS = int(os.environ.get("LATENESS", "0"))
rnd = random.Random(SEED)
run = f"trial-{SEED}-{int(time.time())}"
work = os.path.join(os.environ.get("SOAK_DIR", "/tmp/flowline-soak"), run)
os.makedirs(work, exist_ok=True)

HOSTS = ["web-1", "web-2", "a|b", "a", "b|c", "x\\", "\\y", 'q"uote', "ホスト-1", "emoji-🚀",
         "h" * 700, "", " sp ace ", "tab\tbed", "nl\nline", "db-01.eu-west-1.internal"]
METRICS = ["cpu", "c", "b|c", "mem.used", "disk/io", "", "ünï"]

def iso(ms, style):
    dt = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    if style == 0:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    if style == 1:  # +05:30
        d = dt + datetime.timedelta(minutes=330)
        return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}+05:30"
    if style == 2:  # -08:00, 9 digits (sub-ms digits that floor away)
        d = dt - datetime.timedelta(hours=8)
        return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}987654-08:00"
    if style == 3:  # lower case
        return (dt.strftime("%Y-%m-%dt%H:%M:%S.") + f"{ms % 1000:03d}z")
    if style == 4 and ms % 1000 == 0:  # no fraction
        return dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == 5 and ms % 100 == 0:  # one digit
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{(ms % 1000) // 100}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}+00:00"

def value():
    k = rnd.random()
    if k < 0.02: return ("1e300", 1e300)
    if k < 0.04: return ("-1e300", -1e300)
    if k < 0.05: return ("5e-324", 5e-324)
    if k < 0.06: return ("-0.0", -0.0)
    if k < 0.08: return ("9007199254740993", float("9007199254740993"))
    if k < 0.10: return ("1.5E3", 1500.0)
    if k < 0.12:
        i = rnd.randint(-10**6, 10**6); return (str(i), float(i))
    x = rnd.gauss(50, 30)
    return (repr(x), x)

def jdump(s):
    return json.dumps(s, ensure_ascii=rnd.random() < 0.5)

base = (int(time.time() * 1000) - 3 * 86400_000) // 1000 * 1000
events = []  # (partition, payload bytes, expect)
maxts = [None] * PARTS
t = base
bad_count = 0
for i in range(N):
    p = rnd.randrange(PARTS)
    t += rnd.randint(0, 4)
    kind = rnd.random()
    if kind < 0.004:
        bad = rnd.choice([
            b'{"host":"h","metric":"m","value":NaN,"timestamp":"2026-01-01T00:00:00Z"}',
            b'{"host":"h","metric":"m","value":"3.5","timestamp":"2026-01-01T00:00:00Z"}',
            b'{"host":"h","value":1,"timestamp":"2026-01-01T00:00:00Z"}',
            ('{"host":"h","metric":"m","value":1,"timestamp":"%s"}' % iso(t, 0)[:-5]).encode(),
            b'{"host":"h","metric":"m","value":1,"timestamp":"2026-13-45T00:00:00Z"}',
            b'{"host":"h","metric":"m","value":1e400,"timestamp":"2026-01-01T00:00:00Z"}',
            b'{"host":"\xff\xfe","metric":"m","value":1,"timestamp":"2026-01-01T00:00:00Z"}',
            b'', b'null', b'[]', b'{"host":null,"metric":"m","value":1,"timestamp":"2026-01-01T00:00:00Z"}',
            b'{"host":"h","metric":"m","value":1,"timestamp":"2099-01-01T00:00:00Z"}',
            b'{"host":"h","metric":"m","value":1,"timestamp":1767225600000}',
        ])
        # unique per record so each can be found once
        if bad.startswith(b'{') and bad.endswith(b'}'):
            bad = bad[:-1] + (',"n":%d}' % i).encode()
        else:
            bad = bad + (b' #%d' % i if bad else b'')
        events.append((p, bad, ("bad", i)))
        bad_count += 1
        continue
    ts = t + rnd.randint(-2000, 0)
    if kind < 0.006 and maxts[p] is not None:
        # Near or behind the watermark: 2.5 to 60 s behind the partition's max.
        ts = maxts[p] - rnd.choice([rnd.randint(2500, 4000), rnd.randint(4000, 60000)])
    host, metric = rnd.choice(HOSTS), rnd.choice(METRICS)
    text, v = value()
    style = rnd.randrange(7)
    payload = '{"host":%s,"metric":%s,"value":%s,"timestamp":"%s"%s}' % (
        jdump(host), jdump(metric), text, iso(ts, style),
        ',"extra":{"tags":[1,2,{"z":null}],"s":"%s"}' % ("x" * rnd.randint(0, 50)) if rnd.random() < 0.3 else "")
    ev = ("ev", host, metric, ts, v)
    events.append((p, payload.encode(), ev))
    if rnd.random() < 0.01:  # a true duplicate: counts twice
        events.append((p, payload.encode(), ev))
    maxts[p] = ts if maxts[p] is None else max(maxts[p], ts)

# Reference: per partition in order, the watermark decides lateness.
wm = [None] * PARTS
mx = [None] * PARTS
windows = {}
late = 0
for p, payload, e in events:
    if e[0] != "ev":
        continue
    _, host, metric, ts, v = e
    last = ts - ts % SLIDE
    starts = [s for s in range(last - W + SLIDE, last + 1, SLIDE) if s <= ts < s + W]
    ok = [s for s in starts if wm[p] is None or s + W - 1 + LATENESS > wm[p]]
    if not ok:
        late += 1
        continue
    for start in ok:
        windows.setdefault((host, metric, start), []).append(v)
    mx[p] = ts if mx[p] is None else max(mx[p], ts)
    wm[p] = mx[p] - OOO - 1
print(f"{run}: {len(events)} records, {bad_count} bad, {late} late, {len(windows)} windows", flush=True)

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
adm = AdminClient({"bootstrap.servers": KAFKA})
for f in adm.create_topics([NewTopic(run, PARTS, 1)]).values():
    f.result()
pr = Producer({"bootstrap.servers": KAFKA, "linger.ms": 20, "message.max.bytes": 2_000_000})
for p, payload, _ in events:
    while True:
        try:
            pr.produce(run, value=payload, partition=p)
            break
        except BufferError:
            pr.poll(0.1)
pr.flush()

cfg = f"""[job]
name = "{run}"
workers = WORKERS
[source]
type = "kafka"
bootstrap_servers = "{KAFKA}"
topics = ["{run}"]
group_id = "{run}"
bounded = true
[sink]
type = "elasticsearch"
url = "{ES}"
index = "{run}-windows"
[window]
size = "10s"
allowed_lateness = "{LATENESS}ms"
SLIDE_LINE
out_of_orderness = "3s"
[checkpoint]
dir = "{work}/ckpt"
interval = "1s"
[dead_letter]
type = "file"
path = "{work}/dead.ndjson"
[late]
type = "file"
path = "{work}/late.ndjson"
"""
runs = []
for n, w in enumerate(WORKERS):
    path = f"{work}/job{n}.toml"
    open(path, "w").write(cfg.replace("WORKERS", str(w)).replace("SLIDE_LINE", f'slide = "{SLIDE}ms"' if SLIDE != W else ""))
    log = open(f"{work}/job{n}.log", "w")
    t0 = time.time()
    proc = subprocess.Popen([BIN, "run", "--config", path], stdout=log, stderr=subprocess.STDOUT)
    if n < KILLS:
        time.sleep(rnd.uniform(float(os.environ.get("KMIN", "1")), float(os.environ.get("KMAX", "6"))))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        runs.append(f"workers {w}: killed after {time.time()-t0:.1f}s")
        continue
    rc = proc.wait(timeout=900)
    runs.append(f"workers {w}: exit {rc} after {time.time()-t0:.1f}s")
    break
print("; ".join(runs), flush=True)

def es(path, body=None):
    req = urllib.request.Request(ES + path, data=json.dumps(body).encode() if body else None,
                                 headers={"content-type": "application/json"})
    return json.load(urllib.request.urlopen(req))

es(f"/{run}-windows/_refresh", {})
docs = []
r = es(f"/{run}-windows/_search?scroll=1m", {"size": 5000, "sort": ["_doc"]})
while r["hits"]["hits"]:
    docs += r["hits"]["hits"]
    r = es("/_search/scroll", {"scroll": "1m", "scroll_id": r["_scroll_id"]})

def ms_of(s):
    d = datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
    return int(d.timestamp()) * 1000 + d.microsecond // 1000

got = {}
dups = 0
for h in docs:
    d = h["_source"]
    k = (d["host"], d["metric"], ms_of(d["window_start"]))
    if k in got: dups += 1
    got[k] = d
problems = []
for k, vals in windows.items():
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
    if k not in windows:
        problems.append(f"unexpected {k[0][:30]!r} {k[1]!r} {k[2]}")
dl = [json.loads(l) for l in open(f"{work}/dead.ndjson")]
lt = [l for l in open(f"{work}/late.ndjson")]
ids = [x.get("id") for x in dl]
print(f"windows: {len(got)} indexed ({dups} duplicates), {len(windows)} expected; "
      f"dead letters {len(dl)} ({len(set(ids))} distinct ids), expected {bad_count}; late {len(lt)}, expected {late}")
print(f"{len(problems)} problems")
for p in problems[:15]:
    print("  ", p)
if len(dl) != bad_count or len(lt) != late or problems or dups:
    sys.exit(1)
