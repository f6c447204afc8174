"""A Python user that calls the Fortran calculator agent
(examples-fortran/calculator_agent.f90) through academy's real Handle.

Usage: call_fortran_agent.py URL AGENT_ID_JSON
Prints one line per check (the Rust test asserts them), then asks the
agent to shut down.
"""

import asyncio
import json
import sys

from parent_watch import exit_when_parent_goes

from academy.exception import AcademyRemoteError
from academy.exchange.cloud.client import HttpExchangeFactory
from academy.handle import Handle
from academy.identifier import AgentId


def out(*parts) -> None:
    print(*parts, flush=True)


async def main(url: str, agent_json: str) -> int:
    factory = HttpExchangeFactory(url)
    async with await factory.create_user_client() as client:
        aid = AgentId.model_validate_json(agent_json)
        handle = Handle(aid)
        out('add', await handle.add(2, 3.5))
        out('echo', json.dumps(await handle.echo({'k': [1, 'x', None, 1.5]}), sort_keys=True))
        try:
            await handle.fail('on purpose')
            out('fail', 'no exception')
        except AcademyRemoteError as e:
            out('fail', type(e).__name__, str(e))
        try:
            await handle.divide(1, 0)
            out('divide', 'no exception')
        except AcademyRemoteError as e:
            out('divide', type(e).__name__, str(e))
        try:
            await handle.add(a=1, b=2)
            out('kwargs', 'no exception')
        except AcademyRemoteError as e:
            out('kwargs', type(e).__name__, str(e))
        out('calls', await handle.calls())
        out('ping', (await handle.ping()) > 0)
        found = await client.discover('examples.FortranCalculator')
        out('discover', any(f.uid == aid.uid for f in found))
        # Cancelling the call sends the agent a CancelRequest; its handler
        # sees it through academy_reply_cancelled and stops early. The
        # agent serves one request at a time, so cancelled() runs after.
        try:
            await asyncio.wait_for(handle.wait(), 0.5)
            out('wait', 'answered')
        except asyncio.TimeoutError:
            out('wait', 'cancelled')
        out('cancelled', await handle.cancelled())
        await handle.shutdown()
        out('done')
    return 0


if __name__ == '__main__':
    exit_when_parent_goes()
    sys.exit(asyncio.run(main(*sys.argv[1:3])))
