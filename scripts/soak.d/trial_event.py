#!/usr/bin/env python3
"""trial.py for events of another shape ([event]): epoch-ms times given as
integers, strings and decimals, a nested key field, and a three-field key
whose values are strings, numbers and booleans; the same weird values, bad
records, late events, SIGKILLs and restarts with other worker counts, and
the same independent group-by (common.py)."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import METRICS, Trial, jdump, rnd, value  # noqa: E402

EVENT = """[event]
timestamp = "t"
timestamp_format = "epoch_ms"
value = "reading"
key = ["dc", "host.name", "kind"]
"""


def bads(i, t):
    return [
        b'{"t":1767225600000,"dc":"x","host":{"name":"h"},"kind":"k","reading":"3.5"}',
        b'{"t":1767225600000,"dc":"x","host":{"name":"h"},"kind":"k"}',
        b'{"t":"soon","dc":"x","host":{"name":"h"},"kind":"k","reading":1}',
        b'{"t":1767225600000,"dc":null,"host":{"name":"h"},"kind":"k","reading":1}',
        b'{"t":1767225600000,"dc":"x","host":"h","kind":"k","reading":1}',
        b'{"t":1767225600000,"dc":"x","host":{"name":[1]},"kind":"k","reading":1}',
        b'{"t":1767225600000,"dc":"x","host":{"name":"h"},"kind":"k","reading":1e400}',
        b'{"t":1767225600000,"dc":"x","host":{"name":"h"},"kind":"k","reading":9007199254740993}',
        b'{"t":4102444800000,"dc":"x","host":{"name":"h"},"kind":"k","reading":1}',
        b'', b'null', b'[]', b'{"t":1e30,"dc":"x","host":{"name":"h"},"kind":"k","reading":1}',
    ]


def ktext(x):
    """A key value as the job writes it: booleans and numbers as JSON text."""
    return ("true" if x else "false") if isinstance(x, bool) else (str(x) if isinstance(x, int) else x)


def good(ts, host):
    dc = rnd.choice(["eu|1", "us-east", 7, True, "ü\"q"])
    kind = rnd.choice(METRICS + [False, 12])
    text, v = value()
    tstyle = rnd.randrange(4)
    frac = rnd.randrange(10)
    tjson = [str(ts), '"%d"' % ts, "%d.%d" % (ts, frac), '"%d.%d9"' % (ts, frac)][tstyle]
    payload = '{"t":%s,"dc":%s,"host":{"name":%s},"kind":%s,"reading":%s%s}' % (
        tjson, json.dumps(dc), jdump(host), json.dumps(kind), text,
        ',"extra":[1,{"a":null}]' if rnd.random() < 0.3 else "")
    return payload, (json.dumps([ktext(dc), ktext(host)], ensure_ascii=False), ktext(kind), ts, v)


trial = Trial("trial-ev")
trial.generate(bads, good)
trial.produce()
trial.run_jobs(EVENT)
trial.check(lambda d: (json.dumps([d["dc"], d["host.name"]], ensure_ascii=False), d["kind"]))
