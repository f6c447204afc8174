"""A Python user (academy's HttpExchangeFactory, default settings) that
calls a C agent through academy's Handle, on an exchange whose mailboxes
live in a Redis Cluster.

Usage: cluster_user.py URL AGENT_ID_JSON AGENT_CLASS
Prints one line per check (the Rust test asserts them): actions, a remote
error, calls in flight, ping, discovery, status and heartbeat of the agent;
then shuts the agent down (terminating its mailbox) and prints the status
and discovery after that.
"""

import asyncio
import json
import sys

from parent_watch import exit_when_parent_goes

from academy.exception import AcademyRemoteError
from academy.exchange.cloud.client import HttpExchangeFactory
from academy.handle import Handle
from academy.identifier import AgentId
from academy.serialize import SerializationStrategy


def out(*parts) -> None:
    print(*parts, flush=True)


async def main(url: str, agent_json: str, agent_class: str) -> int:
    factory = HttpExchangeFactory(url)
    async with await factory.create_user_client() as client:
        aid = AgentId.model_validate_json(agent_json)
        # JSON: C agents take JSON arguments.
        handle = Handle(aid, request_serializer=SerializationStrategy.JSON)
        out('add', await handle.add(2, 3))
        out('echo', json.dumps(await handle.echo({'k': [1, 'h\u00e9', None, 1.5]}), sort_keys=True))
        out('kwargs', await handle.add(a=40, b=2))
        try:
            await handle.fail('it broke')
            out('fail', 'no exception')
        except AcademyRemoteError as e:
            out('fail', type(e).__name__, str(e))
        results = await asyncio.gather(*(handle.slow(i) for i in range(8)))
        out('concurrent', results == list(range(8)))
        out('ping', (await handle.ping()) > 0)
        found = await client.discover(agent_class)
        out('discover', any(f.uid == aid.uid for f in found))
        out('status', (await client.status(aid)).name)
        beat = await client.heartbeat_status(aid)
        out('heartbeat', beat is not None and 0 <= beat < 60)
        await handle.shutdown(terminate=True)
        for _ in range(100):
            if (await client.status(aid)).name == 'TERMINATED':
                break
            await asyncio.sleep(0.1)
        out('after', (await client.status(aid)).name)
        found = await client.discover(agent_class)
        out('discover after', any(f.uid == aid.uid for f in found))
    return 0


if __name__ == '__main__':
    exit_when_parent_goes()
    sys.exit(asyncio.run(main(*sys.argv[1:4])))
