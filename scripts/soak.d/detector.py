"""The anomaly detector's independent reference for the soak: the README's
rules ([anomaly]) run over the reference group-by's windows, key by key in
event-time order, and the comparison with the job's anomaly and
current-status documents.

Written from the rules, not from the job's code: a window's z is its
average's distance from the baseline mean over the spread (at least 0.1 %
of the larger of |mean| and |avg|); during the warm-up the baseline is the
plain running mean and standard deviation, after it West's EWMA with
weight alpha; anomalous windows (|z| >= threshold) do not move it; the
`consecutive`th in a row reports the episode; a shift `relearn_after`
windows long becomes the mean. The spread is kept as a standard deviation
and updated through hypot, the textbook way to take sqrt(a² + b²) without
squares: averages of 1e300 would overflow a variance. A series whose last
window started at `last` is forgotten at the end of the `forget_after`
period after the one `last` is in; a window that ends after that finds it
forgotten (warms up again)."""
import math

FLOOR = 1e-3


class Settings:
    def __init__(self, rnd):
        """Seeded settings, so that reports, relearns and forgetting all
        happen in a soak's few hundred seconds of event time."""
        self.alpha = rnd.choice([0.1, 0.3, 1.0])
        self.threshold = rnd.choice([1.0, 2.0, 4.0])
        self.consecutive = rnd.choice([1, 2, 3])
        self.warmup = rnd.choice([0, 1, 3, 12])
        self.relearn_after = self.consecutive + rnd.choice([0, 1, 3])
        self.forget_s = rnd.choice([30, 45, 60, 7 * 86400])

    def section(self):
        return (f"[anomaly]\nalpha = {self.alpha}\nthreshold = {self.threshold}\n"
                f"consecutive = {self.consecutive}\nwarmup = {self.warmup}\n"
                f"relearn_after = {self.relearn_after}\nforget_after = \"{self.forget_s}s\"\n")

    def __str__(self):
        return self.section().replace("\n", " ").replace("[anomaly] ", "")


def z_of(x, mean, std):
    used = max(std, FLOOR * max(abs(x), abs(mean)))
    return (0.0 if used == 0 else (x - mean) / used), used


def detect(windows, size_ms, cfg):
    """`windows`: (key1, key2, start) -> values. Returns the current
    document each key should end with and the anomaly documents, both by
    (key1, key2[, episode start]), and how many times a series came back
    forgotten."""
    forget = cfg.forget_s * 1000
    by_key = {}
    for (k1, k2, start), vals in windows.items():
        by_key.setdefault((k1, k2), []).append((start, math.fsum(vals) / len(vals), len(vals)))
    current, anomalies, forgotten = {}, {}, 0
    for key, ws in by_key.items():
        ws.sort()
        st = None
        for start, x, count in ws:
            if st is not None and (st["last"] // forget + 2) * forget < start + size_ms - 1:
                st = None  # forgotten before this window ended
                forgotten += 1
            if st is None:
                st = dict(mean=0.0, std=0.0, seen=0, streak=0, episode=None, last=None)
            st["last"] = start
            z, used = z_of(x, st["mean"], st["std"])
            if st["seen"] == 0:
                z = 0.0
            before = (st["mean"], used)
            warming = st["seen"] < cfg.warmup
            if not warming and abs(z) >= cfg.threshold:
                if st["streak"] == 0:
                    st["episode"] = start
                st["streak"] += 1
                if st["streak"] == cfg.consecutive:
                    anomalies[key + (st["episode"],)] = dict(
                        window_start=start, value=x, baseline_mean=before[0], baseline_std=before[1],
                        z_score=z, consecutive_windows=st["streak"],
                        direction="above" if z > 0 else "below")
                status = "anomalous" if st["streak"] >= cfg.consecutive else "suspect"
                if st["streak"] >= cfg.relearn_after:
                    st["mean"], st["streak"] = x, 0
            else:
                st["streak"] = 0
                status = "warming_up" if warming else "ok"
                d = x - st["mean"]
                if warming:
                    n = st["seen"] + 1.0
                    st["mean"] += d / n
                    st["std"] = math.sqrt((n - 1) / n) * math.hypot(st["std"], d / math.sqrt(n))
                else:
                    a = cfg.alpha
                    st["mean"] += a * d
                    st["std"] = math.sqrt(1 - a) * math.hypot(st["std"], math.sqrt(a) * d)
                st["seen"] += 1
            current[key] = dict(window_start=start, avg=x, count=count, baseline_mean=before[0],
                                baseline_std=before[1], z_score=z, status=status,
                                anomalous_windows=st["streak"])
    return current, anomalies, forgotten


def close(a, b):
    """Equal, or within 1e-12 of the larger: the reference's hypot and the
    job's may round the last bit differently."""
    return a == b or abs(a - b) <= 1e-12 * max(abs(a), abs(b))


def compare(want, got, what, ms_of):
    """Problems between the reference's documents and the job's, by key."""
    problems = []
    for k, w in want.items():
        d = got.get(k)
        if d is None:
            problems.append(f"{what}: missing {k[0][:30]!r} {k[1]!r} {k[2:]}")
            continue
        for f, v in w.items():
            have = d.get(f)
            if f == "window_start":
                have = ms_of(have)
            ok = close(have, v) if isinstance(v, float) and isinstance(have, (int, float)) else have == v
            if not ok:
                problems.append(f"{what} {k[0][:30]!r} {k[1]!r} {k[2:]}: {f} {have!r}, want {v!r}")
    for k in got:
        if k not in want:
            problems.append(f"{what}: unexpected {k[0][:30]!r} {k[1]!r} {k[2:]} {got[k]}")
    return problems
