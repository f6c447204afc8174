"""Turns bench/results.jsonl into BENCHMARKS.md and bench/chart.png.

With a third argument `overhead` it only prints the table of what metrics
and logging cost the embedded exchange (BENCH_ONLY=overhead bench/run).
"""

import datetime
import json
import os
import statistics
import subprocess
import sys
from collections import defaultdict

path, reps = sys.argv[1], sys.argv[2]
only = sys.argv[3] if len(sys.argv) > 3 else None
runs = defaultdict(list)
for line in open(path):
    r = json.loads(line)
    runs[(r['exchange'], r['client'], r['workload'])].append(r['result'])


def med(exchange, client, workload, key):
    values = [r[key] for r in runs.get((exchange, client, workload), []) if key in r]
    return statistics.median(values) if values else None


def reps_of(exchange, client, workload, key, scale=1.0, digits=0):
    """The repetitions of a figure, in run order: 'a / b / c'."""
    values = [r[key] * scale for r in runs.get((exchange, client, workload), []) if key in r]
    return ' / '.join(fmt(v, digits) for v in values)


def fmt(v, digits=2):
    if v is None:
        return 'n/a'
    if v >= 1000:
        return f'{v:,.0f}'
    return f'{v:.{digits}f}'


def ratio(a, b):
    return f'{a / b:.2f}x' if a is not None and b not in (None, 0) else 'n/a'


def overhead_table():
    """The default exchange (metrics on, log at WARNING) beside the bare one
    (metrics = false, ACADEMY_LOG=off): medians, and the median of the
    ratios of back-to-back pairs (the pairs are recorded in order)."""
    out = ['| libacademy client, async sends | metrics + default log | bare | median of paired ratios | pairs | pairs within 5% |',
           '|---|---|---|---|---|---|']
    for workload, label in (('overhead32', '32 in flight'), ('overhead128', '128 in flight')):
        for key, what, digits in (('msgs_per_s', 'msg/s', 0), ('exchange_cpu_us_per_msg', 'exchange CPU us/msg', 2)):
            on = [r[key] for r in runs.get(('embedded', 'ours', workload), []) if r.get(key)]
            off = [r[key] for r in runs.get(('bare', 'ours', workload), []) if r.get(key)]
            ratios = [a / b for a, b in zip(on, off)]
            within = sum(1 for q in ratios if 0.95 <= q <= 1.05)
            paired = f'{statistics.median(ratios):.3f}' if ratios else 'n/a'
            out.append(f'| {what}, {label} | {fmt(med("embedded", "ours", workload, key), digits)} | '
                       f'{fmt(med("bare", "ours", workload, key), digits)} | {paired} | {len(ratios)} | {within} |')
    book_on = med('embedded', 'ours', 'bookkeeping', 'with_metrics_ns')
    book_off = med('embedded', 'ours', 'bookkeeping', 'without_metrics_ns')
    cpu = med('bare', 'ours', 'overhead32', 'exchange_cpu_us_per_msg')
    if book_on is not None and book_off is not None:
        share = f'{book_on / (cpu * 1000):.2%} of the bare exchange\'s {cpu:.2f} us CPU per message' if cpu else 'n/a'
        out.append(f'| bookkeeping per request, timed alone (ns: route lookup, clock, access line at WARNING; metrics) '
                   f'| {book_on:.0f} | {book_off:.0f} without metrics | {share} | | |')
    per = {name: instructions_per_message(name) for name in ('embedded', 'bare')}
    if all(per.values()):
        on, off = per['embedded'], per['bare']
        out.append(f'| exchange instructions per message (cachegrind, sequential sends) | {on:,.0f} | {off:,.0f} | '
                   f'{on / off:.3f} ({on - off:+,.0f} per message) | | |')
    return out


def instructions_per_message(name):
    """The median over repetitions of the slope of instructions against
    messages between the two run lengths of each repetition."""
    results = runs.get((name, 'ours', 'overhead_ir'), [])
    slopes = []
    for first, second in zip(results[::2], results[1::2]):
        if second['n'] != first['n']:
            slopes.append((second['ir'] - first['ir']) / (second['n'] - first['n']))
    return statistics.median(slopes) if slopes else None


if only == 'overhead':
    print('\n'.join(overhead_table()))
    sys.exit(0)

def goal(text, ok):
    return f'| {text} | {"met" if ok else "not met"} |'


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:  # noqa: BLE001
        return ''


def serving_section():
    """Serving by handler threads (academy_agent_serve, Go's Serve) beside
    serving from a queue (academy_agent_serve_queue, Go's ServeQueue), for
    one echo handler: actions/s of each repetition, and the ratio of each
    back-to-back pair."""
    t = ['| exchange | binding | max_concurrency | serve actions/s (repetitions) | queue actions/s (repetitions) '
         '| serve / queue, each pair | median of the pairs |',
         '|---|---|---|---|---|---|---|']
    g = ['| goal | result |', '|---|---|']
    for exchange, ename in (('inproc', 'embedded, in the process'), ('embedded', 'academy-exchange, another process')):
        for binding, bname in (('c', 'C API'), ('go', 'Go')):
            for mc in (1, 8, 64):
                serve = [r['actions_per_s'] for r in runs.get((exchange, binding, f'serve_mc{mc}'), [])]
                queue = [r['actions_per_s'] for r in runs.get((exchange, binding, f'queue_mc{mc}'), [])]
                if not serve and not queue:
                    continue
                pairs = [a / b for a, b in zip(serve, queue) if b]
                paired = statistics.median(pairs) if pairs else None
                t.append(f'| {ename} | {bname} | {mc} | {" / ".join(fmt(v) for v in serve)} '
                         f'| {" / ".join(fmt(v) for v in queue)} | {" / ".join(f"{q:.2f}" for q in pairs)} '
                         f'| {fmt(paired)} |')
                if binding == 'c':
                    g.append(goal(f'{ename}, max_concurrency {mc}: `academy_agent_serve` >= 0.8 x '
                                  f'`academy_agent_serve_queue` (median of the pairs {fmt(paired)})',
                                  paired is not None and paired >= 0.8))
    return f"""<!-- serving: begin -->
## Serving: handler threads beside a queue

Measured {datetime.date.today()}, {reps} repetitions, through the C API as a
C program calls it (`examples/bench.rs`, workload `serving`) and through
the Go binding (`go/bench/serving`): a user keeps 1,000 actions in flight
(C: one thread, `academy_client_action_async`; Go: 1,000 goroutines,
`ActionAsync`) to an echo agent in the same process that replies at once,
served either by handler threads (`academy_agent_serve`, Go's `Serve`: at
most `max_concurrency` handlers at once) or from a queue
(`academy_agent_serve_queue` polled by one thread; Go's `ServeQueue`, a
goroutine per request, where `max_concurrency` does not apply). Each serve
run is followed (or preceded, alternating) by its queue run, and the ratio
is taken per pair. Exchanges: the embedded one started inside the process
(`academy_exchange_spawn`) and `academy-exchange` as another process. Rerun
with `BENCH_ONLY=serving bench/run` (this section only). Load of the
machine at the end: {sh('cat /proc/loadavg')} ({sh('nproc')} cores, shared):
compare within the run.

{chr(10).join(t)}

{chr(10).join(g)}
<!-- serving: end -->"""


def replace_section(name, section):
    """Replaces the section between `<!-- name: begin -->` and `<!-- name:
    end -->` of BENCHMARKS.md (or adds it before "Where the time goes")."""
    old = open('BENCHMARKS.md').read()
    begin, end = f'<!-- {name}: begin -->', f'<!-- {name}: end -->'
    if begin in old:
        old = old[:old.index(begin)] + section + old[old.index(end) + len(end):]
    else:
        old = old.replace('\n## Where the time goes', f'\n{section}\n\n## Where the time goes', 1)
    open('BENCHMARKS.md', 'w').write(old)


if os.environ.get('BENCH_SECTION') == 'serving':
    # A run of only the serving workloads: replace only its section.
    replace_section('serving', serving_section())
    sys.exit(0)


import matplotlib  # noqa: E402

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

rows = [
    ('ping p50 (ms)', 'ping', 'p50_ms'),
    ('ping p99 (ms)', 'ping', 'p99_ms'),
    ('action p50 (ms)', 'action', 'p50_ms'),
    ('one-way msg/s, sequential', 'seq', 'msgs_per_s'),
    ('one-way msg/s, 32 in flight from one thread', 'inflight32', 'msgs_per_s'),
    ('one-way msg/s, 32 in flight from 32 threads', 'inflight32threads', 'msgs_per_s'),
    ('client CPU s per 1,000 sends', 'cpu', 'cpu_s_per_1000'),
    ('peak RSS of a sending process (MiB)', 'cpu', 'peak_rss_mib'),
    ('RSS with 1 listening client (MiB)', 'clients1', 'rss_mib'),
    ('RSS with 100 listening clients (MiB)', 'clients100', 'rss_mib'),
]
lines = ['| metric | exchange | libacademy | academy-py | ours / academy-py |', '|---|---|---|---|---|']
for label, workload, key in rows:
    for exchange in ('python', 'embedded'):
        ours, theirs = med(exchange, 'ours', workload, key), med(exchange, 'theirs', workload, key)
        name = 'academy-py 1.0.0' if exchange == 'python' else 'embedded (Rust)'
        lines.append(f'| {label} | {name} | {fmt(ours)} | {fmt(theirs)} | {ratio(ours, theirs)} |')
lost = sum(r.get('lost', 0) for rs in runs.values() for r in rs)
duplicated = sum(r.get('duplicated', 0) for rs in runs.values() for r in rs)

exch = ['| metric (same client) | client | academy-py exchange | embedded exchange | embedded / academy-py |', '|---|---|---|---|---|']
for label, workload, key in rows[:6]:
    for client, name in (('ours', 'libacademy'), ('theirs', 'academy-py')):
        a, b = med('python', client, workload, key), med('embedded', client, workload, key)
        exch.append(f'| {label} | {name} | {fmt(a)} | {fmt(b)} | {ratio(b, a)} |')

def ceiling(exchange):
    both = [med(exchange, 'ours', w, 'msgs_per_s') for w in ('ceiling', 'ceiling_async')]
    both = [v for v in both if v is not None]
    return max(both) if both else None


ceiling_py = ceiling('python')
ceiling_ours = ceiling('embedded')
c10k = med('embedded', 'ours', 'clients10000', 'rss_mib')
c10k_py = med('python', 'ours', 'clients10000', 'rss_mib')
many = med('embedded', 'ours', 'clients10000', 'clients')
many = f'{many:,.0f}' if many else '10,000'


g = ['| goal | result |', '|---|---|']
o32 = med('python', 'ours', 'inflight32', 'msgs_per_s')
g.append(goal(f'through academy-py\'s exchange, 32 in flight >= 90% of its ceiling ({fmt(o32)} of {fmt(ceiling_py)} msg/s)',
              o32 is not None and ceiling_py and o32 >= 0.9 * ceiling_py))
oseq, tseq = med('python', 'ours', 'seq', 'msgs_per_s'), med('python', 'theirs', 'seq', 'msgs_per_s')
g.append(goal(f'sequential sends >= 2x academy-py\'s ({fmt(oseq)} vs {fmt(tseq)} msg/s)', oseq and tseq and oseq >= 2 * tseq))
op = med('python', 'ours', 'ping', 'p50_ms')
g.append(goal(f'ping p50 <= 1.2 ms through academy-py\'s exchange ({fmt(op)} ms)', op is not None and op <= 1.2))
oc, tc = med('python', 'ours', 'cpu', 'cpu_s_per_1000'), med('python', 'theirs', 'cpu', 'cpu_s_per_1000')
g.append(goal(f'client CPU per message <= 1/10 of academy-py\'s ({fmt(oc, 3)} vs {fmt(tc, 3)} s per 1,000)', oc and tc and oc <= tc / 10))
r1 = med('python', 'ours', 'clients1', 'rss_mib')
g.append(goal(f'a process with one client < 10 MB RSS ({fmt(r1)} MiB)', r1 is not None and r1 < 10))
ep = med('embedded', 'ours', 'ping', 'p50_ms')
g.append(goal(f'embedded exchange: ping p50 < 150 us ({fmt(ep * 1000 if ep else None, 0)} us; repetitions '
              f'{reps_of("embedded", "ours", "ping", "p50_ms", 1000)})', ep is not None and ep < 0.150))
e32 = med('embedded', 'ours', 'inflight32', 'msgs_per_s')
g.append(goal(f'embedded exchange: >= 50,000 msg/s with 32 in flight ({fmt(e32)} msg/s; repetitions '
              f'{reps_of("embedded", "ours", "inflight32", "msgs_per_s")})', e32 is not None and e32 >= 50000))
g.append(goal(f'10,000 listening clients in one process < 300 MB RSS ({many} clients: {fmt(c10k)} MiB)',
              c10k is not None and many == '10,000' and c10k < 300))


ccpu = med('embedded', 'ours', 'inflight32', 'client_cpu_us_per_msg')
ecpu = med('embedded', 'ours', 'inflight32', 'exchange_cpu_us_per_msg')
tcpu = med('embedded', 'ours', 'inflight32threads', 'client_cpu_us_per_msg')
tecpu = med('embedded', 'ours', 'inflight32threads', 'exchange_cpu_us_per_msg')
if ccpu is not None and ecpu is not None:
    cores_n = int(sh('nproc') or 2)
    cpu_text = f"""

With 32 in flight from one thread each message cost {fmt(ccpu, 1)} us of CPU
in the sending and receiving process and {fmt(ecpu, 1)} us in the exchange,
{fmt(ccpu + ecpu, 1)} us in all, so {cores_n} cores could carry about
{fmt(cores_n * 1e6 / (ccpu + ecpu))} msg/s;
{fmt(med('embedded', 'ours', 'inflight32', 'msgs_per_s'))} were measured (the rest is
time in which each side waits for the other to wake). From 32 threads a
message cost {fmt(tcpu, 1)} + {fmt(tecpu, 1)} us: each send is its own TCP segment
each way and wakes its thread, and that kernel work is most of the cost.
`academy_client_send_async` pipelines the sends in flight on one
connection (HTTP/1.1), so a burst of sends leaves in one segment and the
exchange reads it in one read and answers it in one write."""
else:
    cpu_text = ''

wake = med('machine', 'c', 'floor', 'thread_wake_rtt_us')
tcp = med('machine', 'c', 'floor', 'tcp_process_rtt_us')
ping_ours = med('embedded', 'ours', 'ping', 'p50_ms')
if wake is not None and tcp is not None:
    floor_us = 2 * tcp + wake
    floor_text = f"""`bench/floor.c`, in the same run, measures what this machine charges for
the steps of a round trip (medians of 20,000): a ping-pong between two
threads over a pipe, {fmt(wake, 1)} us (repetitions {reps_of('machine', 'c', 'floor', 'thread_wake_rtt_us', 1, 1)}:
a few us when the scheduler keeps both threads on one CPU, tens when the
other CPU has to wake from idle, which on this virtual machine is slow),
and a loopback TCP round trip between two processes, {fmt(tcp, 1)} us
(repetitions {reps_of('machine', 'c', 'floor', 'tcp_process_rtt_us', 1, 1)}). A ping through an exchange process is two
such round trips' worth, {fmt(2 * tcp, 0)} us: user to exchange, exchange to the
agent's listen stream, agent to exchange, exchange to the user's listen
stream; then the library's thread hands the answer to the C caller. While
a call waits, the blocked caller polls for its answer and the library's
runtime thread polls too (`busy_poll_us`, 200 us by default), so the CPUs
do not fall idle between hops: measured ping p50
{fmt(ping_ours * 1000 if ping_ours else None, 0)} us. The rest is HTTP and JSON work in the exchange
and the client.{cpu_text}"""
else:
    floor_text = 'Not measured in this run.'

def queues_section():
    """Calls in flight: (a) ours, one thread, 1,000 in flight through a
    completion queue; (b) ours, 32 threads each blocking; (c) academy-py's
    Handle calls under asyncio.gather, 32 and 1,000 at once."""
    t = ['| exchange | caller | in flight | actions/s | p50 (ms) | p99 (ms) |', '|---|---|---|---|---|---|']
    for exchange, ename in (('python', 'academy-py 1.0.0'), ('embedded', 'embedded (Rust)')):
        for client, workload, caller, k in (
            ('ours', 'queue1000', '(a) libacademy, one thread, `academy_client_action_async` + queue', '1,000'),
            ('ours', 'threads32', '(b) libacademy, 32 threads, `academy_client_action`', '32'),
            ('theirs', 'gather32', '(c) academy-py `Handle`, `asyncio.gather`', '32'),
            ('theirs', 'gather1000', '(c) academy-py `Handle`, `asyncio.gather`', '1,000'),
        ):
            t.append(f'| {ename} | {caller} | {k} | {fmt(med(exchange, client, workload, "actions_per_s"))} '
                     f'| {fmt(med(exchange, client, workload, "p50_ms"))} | {fmt(med(exchange, client, workload, "p99_ms"))} |')
    mem = ['| exchange | libacademy (`_async` calls) | academy-py (`Handle` calls as tasks) |', '|---|---|---|']
    for exchange, ename in (('python', 'academy-py 1.0.0'), ('embedded', 'embedded (Rust)')):
        mem.append(f'| {ename} | {fmt(med(exchange, "ours", "pending10000", "added_mib"))} MiB '
                   f'| {fmt(med(exchange, "theirs", "pending10000", "added_mib"))} MiB |')
    qg = ['| goal | result |', '|---|---|']
    for exchange, ename in (('python', "academy-py's exchange"), ('embedded', 'the embedded exchange')):
        a = med(exchange, 'ours', 'queue1000', 'actions_per_s')
        s32 = med(exchange, 'ours', 'inflight32', 'msgs_per_s')
        pairs = zip([r['actions_per_s'] for r in runs.get((exchange, 'ours', 'queue1000'), [])],
                    [r['msgs_per_s'] for r in runs.get((exchange, 'ours', 'inflight32'), [])])
        per_rep = ' / '.join(f'{x / y:.2f}' for x, y in pairs if y)
        qg.append(goal(f'{ename}: (a) >= 0.4 x one-way `send_async` msg/s (32 in flight) of this run ({fmt(a)} vs '
                       f'{fmt(s32)}: {ratio(a, s32)} on medians; each repetition: {per_rep})',
                       a is not None and s32 and a >= 0.4 * s32))
    a = med('embedded', 'ours', 'queue1000', 'actions_per_s')
    cs = [v for v in (med('embedded', 'theirs', w, 'actions_per_s') for w in ('gather32', 'gather1000')) if v]
    c_best = max(cs) if cs else None
    qg.append(goal(f'the embedded exchange: (a) >= 20 x (c), the better of academy-py\'s two ({fmt(a)} vs {fmt(c_best)}: '
                   f'{ratio(a, c_best)})', a is not None and c_best and a >= 20 * c_best))
    p = [v for v in (med(e, 'ours', 'pending10000', 'added_mib') for e in ('python', 'embedded')) if v is not None]
    qg.append(goal(f'10,000 pending calls add < 50 MB ({" / ".join(fmt(v) for v in p)} MiB)', p and max(p) < 50))
    return f"""<!-- queues: begin -->
## Calls in flight (completion queues)

Measured {datetime.date.today()}, medians of {reps} repetitions, through the C
API as a C program calls it (`examples/bench.rs`, workload `actions`): a
user calls `add(1, 2)` on an agent served in the same process with
`academy_agent_serve_queue` (a thread of its own answers from its queue).
(a) one thread keeps 1,000 actions in flight with
`academy_client_action_async`, waiting on the queue's fd with poll(2) and
taking events with `academy_queue_poll(queue, 0, ...)`; (b) 32 threads each
call the blocking `academy_client_action`; (c) academy-py's client: a
`Handle` to an `Agent` launched by its `Manager`, with 32 or 1,000 calls in
flight under `asyncio.gather` on one event loop. Latency is that of one
call under that load. Rerun with `BENCH_ONLY=queues bench/run` (this
section only). Load of the machine at the end: {sh('cat /proc/loadavg')}
({sh('nproc')} cores, shared): compare within the run.

{chr(10).join(t)}

RSS added by 10,000 calls pending at once from one thread (to an agent
registered but not running, so they wait):

{chr(10).join(mem)}

{chr(10).join(qg)}
<!-- queues: end -->"""


cores = sh('nproc')
model = sh("lscpu | sed -n 's/^Model name: *//p'")
memory = sh("free -g | awk '/Mem:/ {print $2}'")
load = sh('cat /proc/loadavg')
machine = f'{cores} cores ({model}), {memory} GiB memory; load at the end: {load}'
doc = f"""# Benchmarks

libacademy (C API and Rust core) beside academy-py 1.0.0's own client
(`HttpExchangeTransport` with SSE listen, and `Handle` with JSON
serialization), on academy-py's exchange and on libacademy's embedded
exchange, measured in one run of `bench/run` on {datetime.date.today()}.
Each figure is the median of {reps} repetitions. The machine is a shared
virtual machine whose speed changes through the day (the floor measured
under "Where the time goes" moves with it, and so do academy-py's
figures): compare figures within one run, not across runs.

Machine: {machine}.

## Client beside client

{chr(10).join(lines)}

Ping and action: a user calls an agent of its own language served in the
same process, through the exchange (libacademy: `academy_agent_serve`;
academy-py: an `Agent` launched by its `Manager`). Throughput: 5,000 small
messages counted at the receiver; lost {lost}, duplicated {duplicated} in
the whole run. 32 in flight from one thread: academy-py's client sends from
32 coroutines on its event loop; libacademy's C caller hands every message
to `academy_client_send_async` with `max_in_flight` 32. From 32 threads:
each thread sends with the blocking `academy_client_send` and waits. CPU: process CPU time while sending to a mailbox nobody reads.

## Exchange beside exchange

{chr(10).join(exch)}

Exchange ceiling (libacademy client, 128 in flight, the better of 128
threads and one thread): academy-py's exchange
{fmt(ceiling_py)} msg/s, the embedded exchange {fmt(ceiling_ours)} msg/s.
RSS of one process holding {many} listening clients: {fmt(c10k)} MiB on the
embedded exchange, {fmt(c10k_py)} MiB on academy-py's.

## Goals

{chr(10).join(g)}

## What metrics and logging cost

The embedded exchange as configured by default (metrics on, the log at
academy-py's default level, WARNING) beside the same exchange with
`metrics = false` and `ACADEMY_LOG=off`, alternating, in this run
(the ratio is default / bare of each back-to-back pair, whose median is
shown: 0.95 or more for msg/s, or 1.05 or less for CPU per message, means
metrics and logging cost under 5%):

{chr(10).join(overhead_table())}

{queues_section()}

{serving_section()}

## Where the time goes

{floor_text}

## Rerun

```sh
bench/run                 # BENCH_REPS=3 by default; BENCH_QUICK=1 for a 10x smaller trial
```

It installs academy-py 1.0.0 and matplotlib into `.venv-bench`, starts both
exchanges on loopback ports, runs `examples/bench.rs` (ours) and
`bench/bench_python.py` (academy-py) for every workload, and writes this
file and `bench/chart.png` from `bench/results.jsonl`.

![latency and throughput](bench/chart.png)
"""
if os.environ.get('BENCH_SECTION') == 'queues':
    # A run of only the queue workloads: replace only its section.
    replace_section('queues', queues_section())
    sys.exit(0)
open('BENCHMARKS.md', 'w').write(doc)

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
labels = ['academy-py exchange', 'embedded exchange']
x = range(2)
for i, (client, name) in enumerate((('ours', 'libacademy'), ('theirs', 'academy-py client'))):
    vals = [med(e, client, 'ping', 'p50_ms') or 0 for e in ('python', 'embedded')]
    ax1.bar([p + i * 0.38 for p in x], vals, width=0.38, label=name)
    vals = [med(e, client, 'inflight32', 'msgs_per_s') or 0 for e in ('python', 'embedded')]
    ax2.bar([p + i * 0.38 for p in x], vals, width=0.38, label=name)
for ax, title in ((ax1, 'ping p50 (ms, lower is better)'), (ax2, 'msg/s, 32 in flight (higher is better)')):
    ax.set_xticks([p + 0.19 for p in x])
    ax.set_xticklabels(labels)
    ax.set_title(title)
    ax.legend()
fig.tight_layout()
fig.savefig('bench/chart.png', dpi=100)
