"""A Python agent with numpy, launched by academy's own Manager with
HttpExchangeFactory and its defaults, for callers in other languages
(go/values_test.go) that send and receive numpy arrays, bytes, tuples and
dicts with int keys.

Usage: numpy_agent.py URL
Prints the agent id JSON, then runs until the agent is shut down; exits 0.
"""

import asyncio
import sys

import numpy as np
from parent_watch import exit_when_parent_goes

from academy.agent import Agent, action
from academy.exchange.cloud.client import HttpExchangeFactory
from academy.manager import Manager


class Arrays(Agent):
    @action
    async def describe(self, x):
        """What the agent received: its type, and for an array its dtype,
        shape, elements and layout."""
        if isinstance(x, np.ndarray):
            layout = 'F' if x.flags.f_contiguous and not x.flags.c_contiguous else 'C'
            return f'ndarray {x.dtype.str} {x.shape} {x.tolist()} {layout}'
        return f'{type(x).__name__} {x!r}'

    @action
    async def scale(self, a, factor):
        return a * factor

    @action
    async def make(self):
        return (np.arange(6, dtype=np.int32).reshape(2, 3), b'\x00\xff', {1: 'one', 2: 'two'}, 1 + 2j)


async def main(url: str) -> int:
    async with await Manager.from_exchange_factory(HttpExchangeFactory(url)) as manager:
        handle = await manager.launch(Arrays)
        print(handle.agent_id.model_dump_json(), flush=True)
        await manager.wait([handle])
    return 0


if __name__ == '__main__':
    exit_when_parent_goes()
    sys.exit(asyncio.run(main(sys.argv[1])))
