"""Turns the Redis, hybrid and HTTP-on-Redis results of bench/run into BENCHMARKS-exchanges.md.

Usage: report_exchanges.py RESULTS.jsonl REPS
"""

import datetime
import json
import os
import platform
import statistics
import sys
from collections import defaultdict

path, reps = sys.argv[1], sys.argv[2]
runs = defaultdict(list)
for line in open(path):
    r = json.loads(line)
    runs[(r['exchange'], r['client'], r['workload'])].append(r['result'])

EXCHANGES = [
    ('redis', "academy-py's Redis exchange"),
    ('hybrid', "academy-py's hybrid exchange"),
    ('httpredis', 'HTTP exchange (ours, Redis backend)'),
]
ROWS = [
    ('actions/s, 32 in flight', 'actions', 'actions_per_s'),
    ('action p50 (ms)', 'action', 'p50_ms'),
    ('one-way msg/s, 32 in flight', 'inflight32', 'msgs_per_s'),
]


def values(exchange, client, workload, key):
    return [r[key] for r in runs.get((exchange, client, workload), []) if r.get(key) is not None]


def med(exchange, client, workload, key):
    v = values(exchange, client, workload, key)
    return statistics.median(v) if v else None


def fmt(v, digits=2):
    if v is None:
        return 'n/a'
    if v >= 1000:
        return f'{v:,.0f}'
    return f'{v:.{digits}f}'


def each(exchange, client, workload, key):
    got = [fmt(v) for v in values(exchange, client, workload, key)]
    # A repetition whose run failed leaves no result: say so.
    failed = int(reps) - len(got)
    return ' / '.join(got + ['failed'] * max(failed, 0)) or 'n/a'


def ratio(a, b):
    if a is None or not b:
        return 'n/a'
    r = a / b
    return f'{r:.0f}x' if r >= 10 else f'{r:.1f}x' if r >= 1 else f'{r:.3f}x'


table = ['| metric | exchange | libacademy | academy-py | ours / academy-py |', '|---|---|---|---|---|']
for label, workload, key in ROWS:
    for exchange, name in EXCHANGES:
        ours, theirs = med(exchange, 'ours', workload, key), med(exchange, 'theirs', workload, key)
        table.append(f'| {label} | {name} | {fmt(ours)} | {fmt(theirs)} | {ratio(ours, theirs)} |')

reps_table = ['| metric | exchange | client | repetitions |', '|---|---|---|---|']
for label, workload, key in ROWS:
    for exchange, name in EXCHANGES:
        for client, cname in (('ours', 'libacademy'), ('theirs', 'academy-py')):
            reps_table.append(f'| {label} | {name} | {cname} | {each(exchange, client, workload, key)} |')

failures = [
    f'{cname} on {name}, {label}: {int(reps) - len(values(exchange, client, workload, key))} of {reps}'
    for label, workload, key in ROWS
    for exchange, name in EXCHANGES
    for client, cname in (('ours', 'libacademy'), ('theirs', 'academy-py'))
    if len(values(exchange, client, workload, key)) < int(reps)
]
failure_note = (
    'Runs that failed (no result; the medians are of the others): ' + '; '.join(failures) + '.'
    if failures else 'No run failed.'
)

lost = sum(r.get('lost', 0) for (e, _, _), rs in runs.items() if e in dict(EXCHANGES) for r in rs)
duplicated = sum(r.get('duplicated', 0) for (e, _, _), rs in runs.items() if e in dict(EXCHANGES) for r in rs)


def goal(text, ok):
    return f'| {text} | {"met" if ok else "not met"} |'


goals = ['| goal | result |', '|---|---|']
for exchange, name in EXCHANGES:
    ours, theirs = med(exchange, 'ours', 'actions', 'actions_per_s'), med(exchange, 'theirs', 'actions', 'actions_per_s')
    goals.append(goal(f'{name}: our actions/s >= 10x academy-py\'s ({fmt(ours)} vs {fmt(theirs)})',
                      ours is not None and theirs is not None and ours >= 10 * theirs))
for client, cname in (('ours', 'libacademy'), ('theirs', 'academy-py')):
    for workload, key, what in (('actions', 'actions_per_s', 'actions/s'), ('inflight32', 'msgs_per_s', 'msg/s')):
        h, r = med('hybrid', client, workload, key), med('httpredis', client, workload, key)
        goals.append(goal(f'{cname}: hybrid exchange beats the HTTP exchange on Redis in {what} '
                          f'({fmt(h)} vs {fmt(r)})', h is not None and r is not None and h > r))

cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')),
           platform.processor())
load = open('/proc/loadavg').read().strip()
doc = f"""# Benchmarks: the Redis and hybrid exchanges

libacademy's client beside academy-py 1.0.0's own client on academy-py's
Redis exchange (`RedisExchangeFactory`), its hybrid exchange
(`HybridExchangeFactory`) and, for comparison, the HTTP exchange (our
`academy-exchange` with its Redis backend), all on one redis-server (a
database each), measured in one run of `bench/run` on {datetime.date.today()}.
Each figure is the median of {reps} repetitions. Machine: {os.cpu_count()}
cores ({cpu}), Linux {platform.release()}; load at the end: {load}. The
machine is shared: compare figures within one run, not across runs.

{chr(10).join(table)}

Actions: a user calls `add(1, 2)` on an agent of its own language served in
the same process (libacademy: `academy_agent_serve` with `max_concurrency`
4, 32 threads each calling `academy_client_action` one after another;
academy-py: an `Agent` launched by its `Manager`, 32 coroutines each
awaiting `Handle.add` one after another, JSON serialization). Action p50:
one call at a time. One-way: small messages counted at the receiver, 32 in
flight from one thread (libacademy: `academy_client_send_async`;
academy-py: 32 coroutines on its event loop); lost {lost}, duplicated
{duplicated} in the whole run.

{failure_note}

## Goals

{chr(10).join(goals)}

## Every repetition

{chr(10).join(reps_table)}

## Rerun

```sh
BENCH_ONLY=exchanges bench/run    # this part only; bench/run runs it with the rest
```
"""
open('BENCHMARKS-exchanges.md', 'w').write(doc)
print(doc)
