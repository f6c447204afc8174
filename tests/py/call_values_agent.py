"""A Python user with academy-py's default Handle (pickle requests, no
request_serializer) that calls an agent written in another language with
numpy arrays and bytes: the Go agent of go/values_test.go and the Fortran
agent examples-fortran/array_agent.f90 serve the same actions.

Usage: call_values_agent.py URL AGENT_ID_JSON [values]
Prints one line per call (the Go and Rust tests assert them), then asks
the agent to shut down. With `values`, also round trips of a tuple, bytes
and a dict with int keys through the Go agent's helpers.
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


def show(value) -> str:
    """The type, dtype, shape and elements of an array result."""
    if isinstance(value, np.ndarray):
        return f'{type(value).__name__} {value.dtype.str} {value.shape} {value.tolist()}'
    return f'{type(value).__name__} {value!r}'


async def arrays(handle: Handle) -> None:
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    out('scale', show(await handle.scale(a, 2.0)))
    out('row_sums', show(await handle.row_sums(a)))
    # The same elements laid out column-major, and in the other byte order.
    out('row_sums F', show(await handle.row_sums(np.asfortranarray(a))))
    out('row_sums >f8', show(await handle.row_sums(a.astype('>f8'))))
    # A transposed view is pickled as an F-ordered (3, 2) array.
    out('row_sums T', show(await handle.row_sums(a.T)))
    out('cumsum', show(await handle.cumsum(np.array([1, 2, 3, 2**40], dtype=np.int64))))
    out('conj', show(await handle.conj(np.array([1 - 2j, -3 + 0.5j]))))
    out('count', show(await handle.count(np.array([True, False, True, True]))))
    out('reverse', show(await handle.reverse(b'abc\x00\xff')))
    try:
        await handle.scale(np.arange(6, dtype=np.int32).reshape(2, 3), 2.0)
        out('wrong dtype', 'no exception')
    except AcademyRemoteError as e:
        out('wrong dtype', type(e).__name__, str(e))


async def values(handle: Handle) -> None:
    out('swap', show(await handle.swap((1, 'two', 3.5))))
    out('concat', show(await handle.concat(b'ab', bytearray(b'\x00\xff'))))
    out('invert', show(await handle.invert({1: 'one', 2: 'two'})))
    value = (1, b'\x00', {2: 'two', (3, 4): [5]}, frozenset({1}), 1 + 2j, None, 'x')
    out('echo', (await handle.echo(value)) == value)


async def main(url: str, agent_json: str, *modes: str) -> int:
    factory = HttpExchangeFactory(url)
    async with await factory.create_user_client():
        handle = Handle(AgentId.model_validate_json(agent_json))
        await arrays(handle)
        if 'values' in modes:
            await values(handle)
        await handle.shutdown()
        out('done')
    return 0


if __name__ == '__main__':
    exit_when_parent_goes()
    sys.exit(asyncio.run(main(*sys.argv[1:])))
