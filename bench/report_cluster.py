"""Turns bench/cluster_results.jsonl (bench/cluster) into the section
"Past one Redis" of BENCHMARKS-redis.md: throughput on one Redis and on the
cluster, the commands and CPU each Redis node spent per message and per
action, how the load spread over the masters, discovery among many
mailboxes, and the sizing model computed from these figures.
"""

import datetime
import json
import math
import os
import platform
import statistics
import sys
from collections import defaultdict

BEGIN = '<!-- cluster:begin -->'
END = '<!-- cluster:end -->'
SETUPS = {
    'redis': 'one Redis',
    'cluster': 'cluster, durability = "master"',
    'replica': 'cluster, durability = "replica"',
}
# The sizing model's assumptions (stated in the text).
TARGET_UTILISATION = 0.5      # a master runs at half its core at most
HEARTBEAT_S = 30              # heartbeat_interval_s, libacademy's and academy-py's default
LISTEN_S = 60                 # listen_timeout_s: a waiting receive starts again this often
SAFETY_TAKE_S = 30            # a waiting mailbox is taken from this often anyway

rows = [json.loads(line) for line in open(sys.argv[1])]
runs = defaultdict(list)
failed = defaultdict(list)
for r in rows:
    if 'failed' in r:
        failed[(r['setup'], r['workload'])].append(r['failed'])
    else:
        runs[(r['setup'], r['workload'])].append(r)


def fmt(v, digits=0):
    if v is None:
        return 'n/a'
    if abs(v) >= 1000:
        return f'{v:,.0f}'
    return f'{v:.{digits}f}'


def units(r):
    """What one repetition did: messages, actions (each a request and a
    response; with the benchmark's warm-up of up to 200), or mailboxes."""
    res = r['result']
    if r['workload'] == 'actions':
        return res['n'] + min(res['n'], 200)
    return res.get('n') or res.get('mailboxes') or 1


def idle_rates(setup):
    """CPU seconds per second each node, and the exchanges, spend with no
    workload (the cluster bus, timers, topology reads)."""
    rs = runs.get((setup, 'idle'), [])
    if not rs:
        return {}, 0.0
    r = rs[-1]
    dt = r['after']['t'] - r['before']['t']
    nodes = {p: max(0.0, (a['cpu_s'] - r['before']['nodes'][p]['cpu_s']) / dt)
             for p, a in r['after']['nodes'].items()}
    ex = (r['after']['exchanges_cpu_ns'] - r['before']['exchanges_cpu_ns']) / 1e9 / dt
    return nodes, max(0.0, ex)


def deltas(r):
    """Per node: (role, commands, EVALSHA, CPU s, memory bytes) during the
    run; the CPU less what the node spends idle."""
    idle, _ = idle_rates(r['setup'])
    dt = r['after']['t'] - r['before']['t']
    out = {}
    for port, after in r['after']['nodes'].items():
        before = r['before']['nodes'][port]
        cpu = max(0.0, after['cpu_s'] - before['cpu_s'] - idle.get(port, 0.0) * dt)
        out[port] = (after['role'], after['calls'] - before['calls'],
                     after['evalsha'] - before['evalsha'], cpu, after['memory'] - before['memory'])
    return out


def per_unit(setup, workload, role, field):
    """Median over repetitions of a field summed over the nodes of a role,
    per message or action."""
    values = []
    for r in runs.get((setup, workload), []):
        d = deltas(r)
        total = sum(v[field] for v in d.values() if v[0] == role)
        values.append(total / units(r))
    return statistics.median(values) if values else None


def exchange_us(setup, workload):
    _, idle = idle_rates(setup)
    values = []
    for r in runs.get((setup, workload), []):
        dt = r['after']['t'] - r['before']['t']
        ns = r['after']['exchanges_cpu_ns'] - r['before']['exchanges_cpu_ns'] - idle * dt * 1e9
        values.append(max(0.0, ns) / 1e3 / units(r))
    return statistics.median(values) if values else None


def rate(setup, workload, key):
    values = [r['result'][key] for r in runs.get((setup, workload), []) if key in r['result']]
    return (statistics.median(values) if values else None), values


def spread(setup, workload):
    """Each master's share of the masters' commands (medians)."""
    shares = defaultdict(list)
    for r in runs.get((setup, workload), []):
        d = {p: v for p, v in deltas(r).items() if v[0] == 'master'}
        total = sum(v[1] for v in d.values()) or 1
        for p, v in d.items():
            shares[p].append(100.0 * v[1] / total)
    return {p: statistics.median(s) for p, s in shares.items()}


cpu = next((l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name')),
           platform.processor())
reps = max((len(v) for k, v in runs.items() if k[1] == 'messages'), default=0)
out = [BEGIN, '', '## Past one Redis: a Redis Cluster', '',
       f'Measured {datetime.date.today()} on {os.cpu_count()} cores ({cpu}), Linux {platform.release()}, '
       'by `bench/cluster`: one redis-server, and a Redis Cluster of 3 masters with a replica each, all '
       'on loopback without persistence, each behind two `academy-exchange` processes; the same client '
       '(ours, through the C API) on both. Messages: `examples/bench throughput` (20,000 one-way messages, '
       '32 in flight, between 8 users and 8 sinks, four of each on each exchange process, every message '
       'crossing from one process to the other). Actions: '
       '`examples/bench actions` (5,000 `add` actions, 32 callers, one exchange process). Medians of '
       f'{reps} repetitions (each listed). The whole machine (Redis nodes, exchanges and client) shares '
       'two cores, so the absolute rates say little about a real deployment; the commands and CPU per '
       'message do, and feed the model below. The one Redis has no replica; each master of the cluster '
       'feeds one (part of its CPU).', '',
       '| setup | msg/s | (repetitions) | actions/s | (repetitions) | action p50 ms |',
       '|---|---:|---|---:|---|---:|']
for setup, label in SETUPS.items():
    m, mv = rate(setup, 'messages', 'msgs_per_s')
    a, av = rate(setup, 'actions', 'actions_per_s')
    p50, _ = rate(setup, 'actions', 'p50_ms')
    out.append(f'| {label} | {fmt(m)} | {" / ".join(fmt(v) for v in mv)} | {fmt(a)} | '
               f'{" / ".join(fmt(v) for v in av)} | {fmt(p50, 2)} |')

lost_runs = [f'{SETUPS[k[0]]} {k[1]}: {why}' for k, whys in failed.items() if k[1] != 'discover'
             for why in whys]
if lost_runs:
    out += ['', 'Failed repetitions (not in the medians): ' + '; '.join(lost_runs) + '.']
idle_text = []
for setup, label in SETUPS.items():
    nodes, ex = idle_rates(setup)
    if nodes:
        idle_text.append(f'{label} {sum(nodes.values()) * 100:.1f}% of a core over its nodes, '
                         f'{ex * 100:.1f}% for its two exchange processes')
out += ['', 'What Redis did per message and per action (INFO commandstats and INFO cpu, before and after '
        'each run; "commands" counts those run inside scripts too; EVALSHA counts round trips that ran a '
        'script; the exchange processes\' CPU from /proc). CPU is what the workload added: each node\'s '
        'and each setup\'s exchanges\' rate with no workload (measured for 5 s first: '
        + '; '.join(idle_text) + ') is subtracted. All three setups\' exchanges stay up throughout, so the '
        'cluster\'s idle figure includes four exchange processes reading its topology every second.', '',
        '| setup | workload | EVALSHA (masters) | commands (masters) | commands (replicas) | '
        'Redis CPU µs (masters) | Redis CPU µs (replicas) | exchanges\' CPU µs |',
        '|---|---|---:|---:|---:|---:|---:|---:|']
for setup, label in SETUPS.items():
    for workload, what in (('messages', 'per message'), ('actions', 'per action')):
        ev = per_unit(setup, workload, 'master', 2)
        cm = per_unit(setup, workload, 'master', 1)
        cr = per_unit(setup, workload, 'slave', 1)
        um = per_unit(setup, workload, 'master', 3)
        ur = per_unit(setup, workload, 'slave', 3)
        ex = exchange_us(setup, workload)
        out.append(f'| {label} | {what} | {fmt(ev, 2)} | {fmt(cm, 1)} | {fmt(cr, 1) if cr else "-"} | '
                   f'{fmt(um * 1e6 if um is not None else None, 1)} | '
                   f'{fmt(ur * 1e6, 1) if ur else "-"} | {fmt(ex, 1)} |')

out += ['', 'How the load spread over the masters (each master\'s share of the masters\' commands, '
        'medians):', '', '| setup | workload | shares |', '|---|---|---|']
for setup in ('cluster', 'replica'):
    for workload in ('messages', 'actions'):
        sh = spread(setup, workload)
        text = ', '.join(f'{v:.0f}%' for v in sorted(sh.values(), reverse=True))
        out.append(f'| {SETUPS[setup]} | {workload} | {text} |')
out += ['', 'A mailbox\'s traffic stays on the master of its slot: the load spreads as the mailboxes do '
        '(here 8 sinks and 8 users for messages, and one agent for actions, whose master carries most '
        'of that workload).']

disc = {s: runs.get((s, 'discover'), []) for s in ('redis', 'cluster')}
if any(disc.values()) or failed:
    out += ['', '### Discovery among many mailboxes', '',
            'Agent mailboxes registered through the HTTP API (`bench/discover.py`, 64 requests in '
            'flight): 1% of class `bench_d.Rare`, the rest `bench_d.Common`, both subclasses of '
            '`bench_d.Base`; each query the median of 5. One Redis scans every `agent:*` key (as '
            'academy-py does); the cluster reads the 16 shards of the class\'s index and checks each '
            'candidate on its own master.', '',
            '| setup | mailboxes | register/s | memory per mailbox (masters) | Rare (1%) | Common (99%) | '
            'Base, with subclasses |', '|---|---:|---:|---:|---:|---:|---:|']
    for setup, rs in disc.items():
        if not rs:
            for why in failed.get((setup, 'discover'), []):
                out.append(f'| {SETUPS[setup]} | | | | failed: {why} | | |')
            continue
        r = rs[-1]
        res = r['result']
        mem = sum(v[4] for v in deltas(r).values() if v[0] == 'master') / res['mailboxes']
        q = {(x['agent'], x['subclasses']): x for x in res['queries']}
        cell = lambda k: f'{q[k]["median_s"] * 1e3:,.0f} ms ({q[k]["found"]:,} found)'
        out.append(f'| {SETUPS[setup]} | {res["mailboxes"]:,} | {res["mailboxes"] / res["register_s"]:,.0f} | '
                   f'{mem:,.0f} B | {cell(("bench_d.Rare", False))} | {cell(("bench_d.Common", False))} | '
                   f'{cell(("bench_d.Base", True))} |')

# The model.
um = per_unit('cluster', 'messages', 'master', 3) or 0
ur = per_unit('cluster', 'messages', 'slave', 3) or 0
cm = per_unit('cluster', 'messages', 'master', 1) or 0
ev = per_unit('cluster', 'messages', 'master', 2) or 0
umr = per_unit('replica', 'messages', 'master', 3) or 0
ex = exchange_us('cluster', 'messages') or 0
mem = 0.0
if disc.get('cluster'):
    r = disc['cluster'][-1]
    mem = sum(v[4] for v in deltas(r).values() if v[0] == 'master') / r['result']['mailboxes']
per_core = 1 / um if um else 0
script_us = um / ev * 1e6 if ev else 0
masters_1m = math.ceil(1e6 * um / TARGET_UTILISATION) if um else 0
masters_1m_replica = math.ceil(1e6 * umr / TARGET_UTILISATION) if umr else 0
published = 100_000
masters_published = math.ceil(1e6 * cm / (published * TARGET_UTILISATION)) if cm else 0
idle_ops = 100_000 / HEARTBEAT_S + 100_000 / LISTEN_S + 100_000 / SAFETY_TAKE_S
exchanges_1m = math.ceil(1e6 * ex / 1e6 / 0.7) if ex else 0
out += ['', '### What 100,000 agents and 1,000,000 msg/s would need (a model)', '',
        'From the figures above (cluster, durability = "master", one-way messages):', '',
        f'- Per message the masters ran {ev:.2f} scripts (round trips) and {cm:.1f} commands, and spent '
        f'{um * 1e6:.1f} µs of CPU; the replicas {ur * 1e6:.1f} µs (they apply the same writes). With '
        f'durability = "replica" the masters spent {umr * 1e6:.1f} µs (the `WAIT` after every write).',
        f'- A master whose core is busy with nothing else would so serve about {per_core:,.0f} msg/s on '
        f'this machine. Planning at {TARGET_UTILISATION:.0%} of a core, 1,000,000 msg/s need '
        f'**{masters_1m} masters** ({masters_1m_replica} with durability = "replica"), and as many '
        f'replicas: **{2 * masters_1m} nodes** ({2 * masters_1m_replica}).',
        f'- Cross-check with Redis\' published single-node figures: redis-benchmark measures on the '
        f'order of {published:,} simple requests per second per instance without pipelining (about '
        f'10 µs of a core each; several hundred thousand with pipelining), redis.io, "Redis benchmark". '
        f'Here a script round trip cost {script_us:.0f} µs of master CPU in all (it runs about '
        f'{cm / ev if ev else 0:.0f} commands, replicates its writes and, for a put, announces the '
        f'message): counted as {cm:.0f} simple requests per message, the published rate gives '
        f'{masters_published} masters at {TARGET_UTILISATION:.0%}, the same order as the measured '
        f'{masters_1m}.',
        f'- 100,000 agents add, with no messages at all: a heartbeat each every {HEARTBEAT_S} s, a '
        f'listen that starts again every {LISTEN_S} s (one take each), and a take every '
        f'{SAFETY_TAKE_S} s for each waiting mailbox: about {idle_ops:,.0f} scripts/s, spread over the '
        'masters (each mailbox on its own slot), a fraction of one master. Their mailboxes take about '
        f'{mem:,.0f} B each on the masters ({100_000 * mem / 2**20:,.0f} MiB for 100,000, the same again '
        'on the replicas) before any message is queued; 100,000 subscribed wake-up channels cost each '
        'exchange process one connection per master. Discovery reads 16 index shards and checks the '
        'candidates it finds, so its cost follows the answer, not the 100,000.',
        f'- The exchange processes: {ex:.1f} µs of CPU per message here (both processes, sending and '
        f'receiving side); at 70% of a core each, 1,000,000 msg/s need about {exchanges_1m} exchange '
        'cores (processes or threads), in front of the nodes above, with the clients spread over them.',
        '- Not modelled: the network (a message crosses it four times: client, exchange, Redis, '
        'exchange, client), persistence (appendonly with fsync every second adds disk writes on every '
        'node), and messages larger than these (about 300 bytes).',
        '', 'Rerun: `bench/cluster` (installs academy-py 1.0.0 and redis-server if missing; '
        '`BENCH_REPS`, `BENCH_DISCOVER`, `BENCH_QUICK=1`).', '', END]

section = '\n'.join(out)
path = 'BENCHMARKS-redis.md'
text = open(path).read() if os.path.exists(path) else ''
if BEGIN in text and END in text:
    text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END):]
else:
    text = text.rstrip('\n') + '\n\n' + section + '\n'
open(path, 'w').write(text)
print(section)
