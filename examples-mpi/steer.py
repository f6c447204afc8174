"""Steers the MPI simulation of examples-mpi/steered_sim.c from Python,
with academy-py's own client: discovers every rank (agents of class
examples_mpi.SimRank), advances them, changes their rates, watches a run
from outside while it goes on, and shuts the ranks down.

Usage: steer.py EXCHANGE_URL NUMBER_OF_RANKS
"""

import asyncio
import sys
import time

from academy.exchange.cloud.client import HttpExchangeFactory
from academy.handle import Handle


def out(*parts) -> None:
    # One write per line: the ranks print to the same terminal or pipe, and
    # a line written in pieces can be cut by theirs.
    sys.stdout.write(' '.join(['steer:', *map(str, parts)]) + '\n')
    sys.stdout.flush()


async def main(url: str, ranks: int) -> int:
    factory = HttpExchangeFactory(url)
    async with await factory.create_user_client() as client:
        # The ranks register as they start: wait until all have.
        deadline = time.monotonic() + 60
        while len(found := await client.discover('examples_mpi.SimRank')) < ranks:
            if time.monotonic() > deadline:
                out(f'only {len(found)} of {ranks} ranks registered')
                return 1
            await asyncio.sleep(0.1)
        # Discovery gives ids without names: ask each rank who it is.
        handles = [Handle(aid) for aid in found]
        states = await asyncio.gather(*(h.state() for h in handles))
        ranks_ = [h for _, h in sorted(zip((s['rank'] for s in states), handles))]
        out('found', len(ranks_), 'ranks:', sorted(s['rank'] for s in states), 'of size', states[0]['size'],
            'at steps', [s['step'] for s in states])

        async def on_all(action, *args, **kwargs):
            return await asyncio.gather(*(getattr(r, action)(*args, **kwargs) for r in ranks_))

        # Every rank adds its rate (rank + 1) at each step.
        states = await on_all('step', 10)
        out('step(10): steps', [s['step'] for s in states], 'values', [s['value'] for s in states],
            'totals', [s['total'] for s in states])

        # Steer: every rank's rate becomes 1.
        states = await on_all('step', 5, rate=1.0)
        out('step(5, rate=1): values', [s['value'] for s in states], 'totals', [s['total'] for s in states])

        # A long run, watched from outside while it goes on.
        run = asyncio.ensure_future(on_all('step', 200))
        before = 15
        while (now := (await ranks_[0].state())['step']) == before:
            await asyncio.sleep(0.02)
        mid_run = not run.done()
        states = await run
        out('step(200) seen mid-run:', mid_run and before < now < 215, 'steps', [s['step'] for s in states],
            'totals', [s['total'] for s in states])

        await asyncio.gather(*(r.shutdown() for r in ranks_))
        out('shut down', len(ranks_), 'ranks')
    return 0


if __name__ == '__main__':
    sys.exit(asyncio.run(main(sys.argv[1], int(sys.argv[2]))))
