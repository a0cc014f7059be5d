#!/usr/bin/env python3
"""A stranger's trial of flowline on a round-robin (null-key) topic:
odd keys, offsets, fractions, extremes, duplicates, bad records, late events,
SIGKILLs at random moments, restarts with other worker counts. The expected
windows come from a plain group-by (common.py, math.fsum for sums)."""
import datetime
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import METRICS, Trial, jdump, rnd, value  # noqa: E402


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


def bads(i, t):
    return [
        b'{"host":"h","metric":"m","value":NaN,"timestamp":"2026-01-01T00:00:00Z"}',
        b'{"host":"h","metric":"m","value":"3.5","timestamp":"2026-01-01T00:00:00Z"}',
        b'{"host":"h","value":1,"timestamp":"2026-01-01T00:00:00Z"}',
        ('{"host":"h","metric":"m","value":1,"timestamp":"%s"}' % iso(t, 0)[:-5]).encode(),
        b'{"host":"h","metric":"m","value":1,"timestamp":"2026-13-45T00:00:00Z"}',
        b'{"host":"h","metric":"m","value":1e400,"timestamp":"2026-01-01T00:00:00Z"}',
        b'{"host":"h","metric":"m","value":9007199254740993,"timestamp":"2026-01-01T00:00:00Z"}',
        b'{"host":"\xff\xfe","metric":"m","value":1,"timestamp":"2026-01-01T00:00:00Z"}',
        b'', b'null', b'[]', b'{"host":null,"metric":"m","value":1,"timestamp":"2026-01-01T00:00:00Z"}',
        b'{"host":"h","metric":"m","value":1,"timestamp":"2099-01-01T00:00:00Z"}',
        b'{"host":"h","metric":"m","value":1,"timestamp":1767225600000}',
    ]


def good(ts, host):
    metric = rnd.choice(METRICS)
    text, v = value()
    style = rnd.randrange(7)
    payload = '{"host":%s,"metric":%s,"value":%s,"timestamp":"%s"%s}' % (
        jdump(host), jdump(metric), text, iso(ts, style),
        ',"extra":{"tags":[1,2,{"z":null}],"s":"%s"}' % ("x" * rnd.randint(0, 50)) if rnd.random() < 0.3 else "")
    return payload, (host, metric, ts, v)


trial = Trial("trial")
trial.generate(bads, good)
trial.produce()
trial.run_jobs()
trial.check(lambda d: (d["host"], d["metric"]))
