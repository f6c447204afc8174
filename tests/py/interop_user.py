"""A Python user that calls a C agent through academy's real Handle, with
academy-py's defaults (pickle).

Usage: interop_user.py URL AGENT_ID_JSON AGENT_CLASS
Prints one line per check (the Rust test asserts them), then asks the
agent to shut down.
"""

import asyncio
import json
import sys
import time

from parent_watch import exit_when_parent_goes

from academy.exception import AcademyRemoteError
from academy.exchange.cloud.client import HttpExchangeFactory
from academy.handle import Handle
from academy.identifier import AgentId
from academy.serialize import SerializationStrategy


def out(*parts) -> None:
    print(*parts, flush=True)


async def check_agent(client, aid: AgentId, agent_class: str) -> None:
    """The checks of a C agent through academy's Handle, one line each;
    tests/py/redis_peer.py makes the same on the Redis and hybrid exchanges."""
    handle = Handle(aid)
    out('add', await handle.add(2, 3))
    out('echo', json.dumps(await handle.echo({'k': [1, 'h\u00e9', None, 1.5]}), sort_keys=True))
    out('kwargs', await handle.add(a=40, b=2))
    try:
        await handle.fail('it broke')
        out('fail', 'no exception')
    except AcademyRemoteError as e:
        out('fail', type(e).__name__, str(e))
    start = time.monotonic()
    results = await asyncio.gather(*(handle.slow(i) for i in range(8)))
    out('concurrent', results == list(range(8)), round(time.monotonic() - start, 1) < 1.5)
    out('ping', (await handle.ping()) > 0)
    # The Handle option that JSON-only agents need works too.
    json_handle = Handle(aid, request_serializer=SerializationStrategy.JSON)
    try:
        out('json', await asyncio.wait_for(json_handle.add(1, 2), 10))
    except asyncio.TimeoutError:
        out('json', 'hang')
    found = await client.discover(agent_class)
    out('discover', any(f.uid == aid.uid for f in found))


async def main(url: str, agent_json: str, agent_class: str) -> int:
    factory = HttpExchangeFactory(url)
    async with await factory.create_user_client() as client:
        aid = AgentId.model_validate_json(agent_json)
        await check_agent(client, aid, agent_class)
        await Handle(aid).shutdown()
        out('done')
    return 0

if __name__ == '__main__':
    exit_when_parent_goes()
    sys.exit(asyncio.run(main(*sys.argv[1:4])))
