"""A Python user whose call is in progress when the agent's mailbox is
terminated, then calls another agent: its client must still work.

Usage: terminated_caller.py URL SLOW_AGENT_ID_JSON OTHER_AGENT_ID_JSON
Prints "calling", then the outcome of the call in progress, then (after a
pause in which a second answer to the same call would arrive) the outcome
of a call to the other agent. academy-py's Handle raises a KeyError in its
client's listener on a second answer to one call, which ends the listener:
the second call then hangs.
"""

import asyncio
import sys

from parent_watch import exit_when_parent_goes

from academy.exchange.cloud.client import HttpExchangeFactory
from academy.handle import Handle
from academy.identifier import AgentId


def out(*parts) -> None:
    print(*parts, flush=True)


async def main(url: str, slow_json: str, other_json: str) -> int:
    factory = HttpExchangeFactory(url)
    async with await factory.create_user_client():
        slow = Handle(AgentId.model_validate_json(slow_json))
        other = Handle(AgentId.model_validate_json(other_json))
        call = asyncio.ensure_future(slow.slow(1))
        await asyncio.sleep(0.5)
        out('calling')
        try:
            await asyncio.wait_for(call, 20)
            out('slow', 'answered')
        except Exception as e:  # noqa: BLE001
            out('slow', type(e).__name__)
        await asyncio.sleep(3)
        try:
            out('other', await asyncio.wait_for(other.add(2, 3), 10))
        except asyncio.TimeoutError:
            out('other', 'hang')
    return 0


if __name__ == '__main__':
    exit_when_parent_goes()
    sys.exit(asyncio.run(main(*sys.argv[1:4])))
