"""Turns the arrays results of bench/run into BENCHMARKS-arrays.md: a default
academy-py Handle (pickle) sending a 256 KiB float64 array to a C echo agent
and to a Python echo agent.

Usage: report_arrays.py RESULTS.jsonl REPS
"""

import datetime
import json
import os
import platform
import statistics
import sys

path, reps = sys.argv[1], int(sys.argv[2])
runs = {}
for line in open(path):
    r = json.loads(line)
    if r['workload'] in ('arrays1', 'arrays8'):
        runs.setdefault((r['exchange'], r['workload']), []).append(r['result'])

EXCHANGES = [('python', "academy-py's HTTP exchange"), ('embedded', 'our exchange')]
WORKLOADS = [('arrays1', 1), ('arrays8', 8)]


def fmt(v):
    return f'{v:,.0f}' if v >= 100 else f'{v:.1f}'


lines = [
    '# A numpy user calling a C agent and a Python agent',
    '',
    'A Python user with a plain `academy.handle.Handle` (academy-py 1.0.0 defaults:',
    'arguments and results pickled) calls `echo(array)` with a 256 KiB float64',
    'numpy array on an echo agent written in C (through the C API:',
    '`examples/bench.rs echo_agent`: `academy_json_get` of the first argument,',
    '`academy_reply_ok`; libacademy reads the pickle and writes the answer\'s)',
    'and on one written in Python (academy\'s `Manager`), each in a process of its',
    'own, on the same exchange. Calls/s, one call at a time and 8 in flight',
    '(`asyncio.gather`); within a run the two agents take turns, three rounds each.',
    f'Each cell: the median over {reps} run(s) x 3 rounds, then every sample.',
    f'Made by `bench/run` (`BENCH_ONLY=arrays`) on {datetime.date.today()}, '
    f'{platform.machine()}, {os.cpu_count()} CPUs.',
    '',
    '| exchange | in flight | C agent calls/s | Python agent calls/s | C / Python (median of rounds) |',
    '|---|---|---|---|---|',
]
for exchange, exchange_name in EXCHANGES:
    for workload, in_flight in WORKLOADS:
        results = runs.get((exchange, workload), [])
        c = [v for r in results for v in r['c']]
        py = [v for r in results for v in r['python']]
        if not c or not py:
            lines.append(f'| {exchange_name} | {in_flight} | failed | failed | n/a |')
            continue
        ratios = [a / b for r in results for a, b in zip(r['c'], r['python'])]
        failed = reps - len(results)
        lines.append(
            f'| {exchange_name} | {in_flight} | **{fmt(statistics.median(c))}** '
            f'({", ".join(fmt(v) for v in c)}) | **{fmt(statistics.median(py))}** '
            f'({", ".join(fmt(v) for v in py)}) | {statistics.median(ratios):.2f}x'
            f'{f" ({failed} run(s) failed)" if failed > 0 else ""} |'
        )
lines += [
    '',
    'The CPU time each agent process spends per call (its threads\' run time,',
    'from /proc; a busy machine blurs it less than calls/s). The C agent\'s is',
    'libacademy reading the pickle and the JSON form, the handler, and writing',
    'the answer\'s pickle; the Python agent\'s is academy-py\'s runtime and',
    'pickle. Each cell: the median per call, then every sample.',
    '',
    '| exchange | in flight | C agent CPU ms/call | Python agent CPU ms/call | C / Python |',
    '|---|---|---|---|---|',
]
for exchange, exchange_name in EXCHANGES:
    for workload, in_flight in WORKLOADS:
        results = [r for r in runs.get((exchange, workload), []) if 'c_cpu_ms' in r]
        c = [v for r in results for v in r['c_cpu_ms']]
        py = [v for r in results for v in r['python_cpu_ms']]
        if not c or not py:
            lines.append(f'| {exchange_name} | {in_flight} | n/a | n/a | n/a |')
            continue
        lines.append(
            f'| {exchange_name} | {in_flight} | **{statistics.median(c):.2f}** '
            f'({", ".join(f"{v:.2f}" for v in c)}) | **{statistics.median(py):.2f}** '
            f'({", ".join(f"{v:.2f}" for v in py)}) | {statistics.median(c) / statistics.median(py):.2f}x |'
        )
lines.append('')
with open('BENCHMARKS-arrays.md', 'w') as f:
    f.write('\n'.join(lines))
