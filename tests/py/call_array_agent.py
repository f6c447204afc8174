"""A numpy user that calls the C array agent (examples-c/array_agent.c)
through academy's Handle with academy-py's defaults, and checks each result
with numpy.

Usage: call_array_agent.py URL AGENT_ID_JSON
Prints "ok CHECK" or "FAIL CHECK ..." per check, "done", then asks the agent
to shut down.
"""

import asyncio
import sys

import numpy as np
from parent_watch import exit_when_parent_goes

from academy.exception import AcademyRemoteError
from academy.exchange.cloud.client import HttpExchangeFactory
from academy.handle import Handle
from academy.identifier import AgentId


def out(*parts) -> None:
    print(*parts, flush=True)


def check(name: str, got, want) -> None:
    same = (
        isinstance(got, np.ndarray)
        and got.dtype == want.dtype
        and got.shape == want.shape
        and got.flags.f_contiguous == want.flags.f_contiguous
        and np.array_equal(got, want)
    )
    out('ok' if same else 'FAIL', name, '' if same else f'got {got!r}, want {want!r}')


async def main(url: str, agent_json: str) -> int:
    factory = HttpExchangeFactory(url)
    async with await factory.create_user_client():
        handle = Handle(AgentId.model_validate_json(agent_json))
        a = np.arange(6, dtype=np.float64).reshape(2, 3)
        check('scale', await handle.scale(a, 2.5), a * 2.5)
        f = np.asfortranarray(a)
        check('scale F order', await handle.scale(f, -1.0), -f)
        s = np.linspace(0, 1, 5, dtype=np.float32)
        check('scale float32', await handle.scale(s, 3.0), s * np.float32(3.0))
        big = np.random.default_rng(7).random(32768)
        check('scale 256 KiB', await handle.scale(big, 0.5), big * 0.5)
        ints = np.arange(10, dtype=np.int64)
        check('cumsum', await handle.cumsum(ints), np.cumsum(ints).astype(np.float64))
        check('cumsum big-endian', await handle.cumsum(np.arange(4, dtype='>f8')),
              np.cumsum(np.arange(4.0)))
        try:
            await handle.scale(np.array(['ab', 'c']), 2)
            out('FAIL strings', 'no exception')
        except AcademyRemoteError as e:
            out('ok' if '<U2' in str(e) else 'FAIL', 'strings refused:', e)
        try:
            await handle.cumsum(a)
            out('FAIL 2-d cumsum', 'no exception')
        except AcademyRemoteError as e:
            out('ok' if '1-d' in str(e) else 'FAIL', '2-d cumsum refused:', e)
        out('done')
        await handle.shutdown()
    return 0


if __name__ == '__main__':
    exit_when_parent_goes()
    sys.exit(asyncio.run(main(*sys.argv[1:3])))
