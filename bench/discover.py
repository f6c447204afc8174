"""Discovery among many mailboxes, through an exchange's HTTP API (as
academy-py's client makes the calls).

Usage: discover.py URL N
Registers N agent mailboxes (64 requests in flight): 1% of class
bench_d.Rare, the rest bench_d.Common, both subclasses of bench_d.Base;
then times `discover` (median of 5, each a fresh request) for the rare
class, the common class, and the base class with subclasses. Prints one
JSON object: seconds to register, and per query the answers' size and the
median seconds.
"""

import asyncio
import json
import statistics
import sys
import time
import uuid

import aiohttp


async def register(session, url, n):
    sem = asyncio.Semaphore(64)

    async def one(i):
        cls = 'bench_d.Rare' if i % 100 == 0 else 'bench_d.Common'
        aid = json.dumps({'uid': str(uuid.uuid4()), 'name': None, 'role': 'agent'})
        async with sem:
            async with session.post(
                f'{url}/mailbox', json={'mailbox': aid, 'agent': f'{cls},bench_d.Base'},
            ) as r:
                r.raise_for_status()

    await asyncio.gather(*(one(i) for i in range(n)))


async def discover(session, url, agent, subclasses):
    times, found = [], 0
    for _ in range(5):
        start = time.perf_counter()
        async with session.get(
            f'{url}/discover', json={'agent': agent, 'allow_subclasses': subclasses},
        ) as r:
            r.raise_for_status()
            ids = (await r.json())['agent_ids']
        times.append(time.perf_counter() - start)
        found = len(ids.split(',')) if ids else 0
    return {'agent': agent, 'subclasses': subclasses, 'found': found,
            'median_s': statistics.median(times)}


async def main(url, n):
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        start = time.perf_counter()
        await register(session, url, n)
        registered = time.perf_counter() - start
        queries = [await discover(session, url, a, s) for a, s in (
            ('bench_d.Rare', False), ('bench_d.Common', False), ('bench_d.Base', True))]
    print(json.dumps({'mailboxes': n, 'register_s': registered, 'queries': queries}))


if __name__ == '__main__':
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
