"""The same workloads as examples/bench.rs, with academy-py's own client.

Usage: bench_python.py WORKLOAD EXCHANGE [ARGS]   (prints one JSON object)

Two workloads of their own, with academy-py's defaults (pickle):
  echo_agent URL: launches a Python agent whose `echo` returns its argument
      (academy's Manager, in this process), prints its id, runs until shut down.
  arrays URL C_AGENT_JSON PY_AGENT_JSON N IN_FLIGHT [C_PID PY_PID]: a default
      Handle sends a 256 KiB float64 numpy array to each echo agent
      (examples/bench.rs echo_agent in C, and the one above) N times,
      IN_FLIGHT at once under asyncio.gather; calls/s of each, the agents
      taken in turn; with the agents' process ids, also the CPU time each
      agent spent per call (which a busy machine does not blur as it blurs
      calls/s).

EXCHANGE is an HTTP exchange's URL, redis://HOST:PORT/DB (RedisExchangeFactory)
or hybrid://HOST:PORT/DB (HybridExchangeFactory, namespace "bench").
"""

import asyncio
import json
import os
import resource
import sys
import time
import uuid

from academy.agent import Agent, action
from academy.exchange import HybridExchangeFactory, RedisExchangeFactory
from academy.exchange.cloud.client import HttpExchangeFactory
from academy.handle import Handle
from academy.identifier import AgentId
from academy.manager import Manager
from academy.message import Message, PingRequest
from academy.serialize import SerializationStrategy


class Calc(Agent):
    @action
    async def add(self, a, b):
        return a + b


class Echo(Agent):
    @action
    async def echo(self, x):
        return x


def make_factory(exchange):
    """The academy-py factory for EXCHANGE (see the module's doc)."""
    for scheme in ('redis://', 'hybrid://'):
        if exchange.startswith(scheme):
            address, _, db = exchange[len(scheme):].partition('/')
            host, _, port = address.rpartition(':')
            kwargs = {'db': int(db or 0)}
            if scheme == 'redis://':
                return RedisExchangeFactory(host, int(port), **kwargs)
            return HybridExchangeFactory(redis_host=host, redis_port=int(port), redis_kwargs=kwargs,
                                         namespace='bench')
    return HttpExchangeFactory(exchange)


def percentile(xs, p):
    xs = sorted(xs)
    return xs[round((len(xs) - 1) * p)]


async def latencies(n, f):
    for _ in range(min(n, 50)):
        await f()
    ms = []
    for _ in range(n):
        t = time.perf_counter()
        await f()
        ms.append((time.perf_counter() - t) * 1e3)
    return {'p50_ms': percentile(ms, 0.5), 'p99_ms': percentile(ms, 0.99), 'n': n}


async def with_agent(url, n, what):
    async with await Manager.from_exchange_factory(make_factory(url)) as manager:
        handle = await manager.launch(Calc)
        h = Handle(handle.agent_id, request_serializer=SerializationStrategy.JSON)
        if what == 'ping':
            result = await latencies(n, h.ping)
        else:
            result = await latencies(n, lambda: h.add(1, 2))
        await handle.shutdown()
        return result


async def gather(url, total, concurrency):
    """`concurrency` Handle calls in flight under asyncio.gather, as
    academy-py's users keep actions in flight: actions/s, and the latency
    of a call under that load."""
    async with await Manager.from_exchange_factory(make_factory(url)) as manager:
        handle = await manager.launch(Calc)
        h = Handle(handle.agent_id, request_serializer=SerializationStrategy.JSON)
        ms = []

        async def worker(k):
            for _ in range(k):
                t = time.perf_counter()
                await h.add(1, 2)
                ms.append((time.perf_counter() - t) * 1e3)

        async def run(n):
            ms.clear()
            start = time.perf_counter()
            await asyncio.gather(*(worker(n // concurrency + (i < n % concurrency)) for i in range(concurrency)))
            return time.perf_counter() - start

        await run(min(total, 200))  # warm up
        seconds = await run(total)
        await handle.shutdown()
        return {'actions_per_s': total / seconds, 'p50_ms': percentile(ms, 0.5), 'p99_ms': percentile(ms, 0.99),
                'n': total, 'in_flight': concurrency, 'callers': 'asyncio.gather'}


async def pending(url, n):
    """The RSS that n Handle calls add while they wait (for an agent
    registered but not running)."""
    async with await Manager.from_exchange_factory(HttpExchangeFactory(url)) as manager:
        registration = await manager.register_agent(Calc)
        h = Handle(registration.agent_id, request_serializer=SerializationStrategy.JSON)
        first = asyncio.create_task(h.add(1, 2))
        await asyncio.sleep(0.5)
        base = rss_mib()
        calls = [asyncio.create_task(h.add(1, 2)) for _ in range(n)]
        await asyncio.sleep(3)
        with_calls = rss_mib()
        ended = sum(c.done() for c in calls)
        for c in [first, *calls]:
            c.cancel()
        await asyncio.gather(first, *calls, return_exceptions=True)
        return {'pending': n - ended, 'added_mib': with_calls - base, 'rss_mib': with_calls, 'base_rss_mib': base}


async def transport(url, mailbox=None):
    return await make_factory(url)._create_transport(mailbox_id=mailbox)


async def throughput(url, total, in_flight):
    sender = await transport(url)
    registration = await sender.register_agent(Calc)
    sink = await transport(url, registration.agent_id)
    dest = registration.agent_id
    tags, duplicated = set(), 0

    async def receive():
        nonlocal duplicated
        async for message in sink.listen():
            if message.tag in tags:
                duplicated += 1
            tags.add(message.tag)
            if len(tags) >= total:
                return

    receiving = asyncio.create_task(receive())
    start = time.perf_counter()

    async def send(k):
        for _ in range(k):
            await sender.send(Message.create(src=sender.mailbox_id, dest=dest, body=PingRequest()))

    await asyncio.gather(*(send(total // in_flight + (i < total % in_flight)) for i in range(in_flight)))
    try:
        await asyncio.wait_for(receiving, 60)
    except asyncio.TimeoutError:
        pass
    seconds = time.perf_counter() - start
    await sender.close()
    await sink.close()
    return {'msgs_per_s': len(tags) / seconds, 'lost': total - len(tags), 'duplicated': duplicated,
            'in_flight': in_flight, 'n': total}


async def cpu(url, n):
    sender = await transport(url)
    registration = await sender.register_agent(Calc)
    message = Message.create(src=sender.mailbox_id, dest=registration.agent_id, body=PingRequest())
    before = time.process_time()
    for _ in range(n):
        await sender.send(message)
    spent = time.process_time() - before
    await sender.close()
    return {'cpu_s_per_1000': spent * 1000 / n,
            'peak_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 'n': n}


def rss_mib():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return 0.0


async def clients(url, n):
    base = rss_mib()
    factory = make_factory(url)
    held = [await factory.create_user_client() for _ in range(n)]
    await asyncio.sleep(1)
    result = {'clients': n, 'rss_mib': rss_mib(), 'base_rss_mib': base}
    for c in held:
        await c.close()
    return result


async def echo_agent(url):
    async with await Manager.from_exchange_factory(make_factory(url)) as manager:
        handle = await manager.launch(Echo)
        print(handle.agent_id.model_dump_json(), flush=True)
        await manager.wait([handle])
    return None


def process_cpu_s(pid):
    """CPU seconds a process's threads have run (schedstat: nanoseconds)."""
    total = 0
    for task in os.listdir(f'/proc/{pid}/task'):
        with open(f'/proc/{pid}/task/{task}/schedstat') as f:
            total += int(f.read().split()[0])
    return total / 1e9


async def arrays(url, c_json, py_json, n, in_flight, pids=None):
    import numpy as np

    array = np.random.default_rng(1).random(32768)  # 256 KiB of float64
    async with await make_factory(url).create_user_client():
        handles = {'c': Handle(AgentId.model_validate_json(c_json)),
                   'python': Handle(AgentId.model_validate_json(py_json))}
        for name, h in handles.items():
            back = await h.echo(array)
            if not (isinstance(back, np.ndarray) and np.array_equal(back, array)):
                raise SystemExit(f'the {name} echo agent did not return the array')

        async def calls_per_s(h, total):
            async def worker(k):
                for _ in range(k):
                    await h.echo(array)

            start = time.perf_counter()
            await asyncio.gather(*(worker(total // in_flight + (i < total % in_flight))
                                   for i in range(in_flight)))
            return total / (time.perf_counter() - start)

        result = {'c': [], 'python': [], 'n': n, 'in_flight': in_flight, 'bytes': array.nbytes}
        if pids:
            result.update({'c_cpu_ms': [], 'python_cpu_ms': []})
        # Each agent in turn, three times, so that both see the same machine.
        for _ in range(3):
            for name, h in handles.items():
                await calls_per_s(h, max(in_flight, n // 10))  # warm up
                before = process_cpu_s(pids[name]) if pids else 0
                result[name].append(await calls_per_s(h, n))
                if pids:
                    result[f'{name}_cpu_ms'].append((process_cpu_s(pids[name]) - before) * 1e3 / n)
        return result


async def main():
    workload, url, *rest = sys.argv[1:]
    if workload == 'echo_agent':
        await echo_agent(url)
        return
    if workload == 'arrays':
        c_json, py_json, n, in_flight, *pids = rest
        pids = dict(zip(('c', 'python'), pids)) if pids else None
        print(json.dumps(await arrays(url, c_json, py_json, int(n), int(in_flight), pids)), flush=True)
        return
    nums = [int(x) for x in rest]
    if workload in ('ping', 'action'):
        out = await with_agent(url, nums[0] if nums else 2000, workload)
    elif workload == 'throughput':
        out = await throughput(url, nums[0], nums[1])
    elif workload == 'cpu':
        out = await cpu(url, nums[0])
    elif workload == 'clients':
        out = await clients(url, nums[0])
    elif workload == 'actions':
        out = await gather(url, nums[0], nums[1])
    elif workload == 'pending':
        out = await pending(url, nums[0])
    else:
        raise SystemExit(f'unknown workload {workload}')
    print(json.dumps(out), flush=True)


if __name__ == '__main__':
    asyncio.run(main())
