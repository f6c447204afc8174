"""A Python agent launched by academy's own Manager with HttpExchangeFactory.

Usage: interop_agent.py URL
Prints the agent id JSON, then runs until the agent is shut down; exits 0.
"""

import asyncio
import sys

from parent_watch import exit_when_parent_goes

from academy.agent import Agent, action
from academy.exchange.cloud.client import HttpExchangeFactory
from academy.manager import Manager


class Calc(Agent):
    @action
    async def add(self, a, b):
        return a + b

    @action
    async def echo(self, x):
        return x

    @action
    async def fail(self):
        raise ValueError('boom')

    @action
    async def slow(self, x, seconds):
        await asyncio.sleep(seconds)
        return x


async def main(url: str) -> int:
    async with await Manager.from_exchange_factory(HttpExchangeFactory(url)) as manager:
        handle = await manager.launch(Calc)
        print(handle.agent_id.model_dump_json(), flush=True)
        await manager.wait([handle])
    return 0


if __name__ == '__main__':
    exit_when_parent_goes()
    sys.exit(asyncio.run(main(sys.argv[1])))
