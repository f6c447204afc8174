"""academy-py 1.0.0 peers with academy-py's defaults (pickle) for
tests/pyvalues.rs, on any exchange.

Usage: pyvalues_peer.py MODE EXCHANGE [ARGS...]
  EXCHANGE is "http,URL", "redis,PORT" or "hybrid,PORT,NAMESPACE".

  user AGENT_JSON   call a C echo agent through a default Handle with every
                    value of pickle_values.py: one line per value ("ok NAME"
                    or "FAIL NAME ..."), then the error and kwargs checks,
                    "done"; then ask the agent to shut down.
  agent             launch the Values agent with academy's Manager; print its
                    id; run until it is shut down.
  json-agent        the same agent, launched to accept JSON requests only
                    (RuntimeConfig(allowed_deserializers={JSON})).
  refused AGENT_JSON  call a C echo agent that accepts only JSON: with a
                    default Handle (refused), then with request_serializer=JSON
                    (the option that agent needs); then shut it down.
"""

import asyncio
import sys

import interop_agent
import numpy as np
from parent_watch import exit_when_parent_goes
from pickle_corpus import same
from pickle_values import all_values as values

from academy.agent import action
from academy.exception import AcademyRemoteError
from academy.exchange import HybridExchangeFactory, RedisExchangeFactory
from academy.exchange.cloud.client import HttpExchangeFactory
from academy.handle import Handle
from academy.identifier import AgentId
from academy.manager import Manager
from academy.runtime import RuntimeConfig
from academy.serialize import SerializationStrategy


def out(*parts) -> None:
    print(*parts, flush=True)


def factory(spec: str):
    kind, *rest = spec.split(',')
    if kind == 'http':
        return HttpExchangeFactory(rest[0])
    if kind == 'redis':
        return RedisExchangeFactory('127.0.0.1', int(rest[0]))
    if kind == 'hybrid':
        return HybridExchangeFactory(
            redis_host='127.0.0.1', redis_port=int(rest[0]), namespace=rest[1]
        )
    raise SystemExit(f'unknown exchange {spec}')


def describe(x) -> str:
    """What a value is, as the test expects to read it."""
    if isinstance(x, np.ndarray):
        order = 'F' if x.flags.f_contiguous and not x.flags.c_contiguous else 'C'
        return f'ndarray {x.dtype.str} {list(x.shape)} {order} {x.tolist()}'
    return f'{type(x).__module__}.{type(x).__qualname__} {x!r}'


class Values(interop_agent.Calc):
    """The calculator (add, echo, fail), and each value of pickle_values.py,
    and what it received."""

    @action
    async def names(self):
        return list(values())

    @action
    async def value(self, name):
        return values()[name]

    @action
    async def same_as(self, name, x):
        want = values()[name]
        return True if same(x, want) else f'got {describe(x)}, want {describe(want)}'

    @action
    async def describe(self, x):
        return describe(x)


async def run_user(spec: str, agent_json: str) -> int:
    async with await factory(spec).create_user_client(name='py-user') as client:
        handle = Handle(AgentId.model_validate_json(agent_json))
        out('values', len(values()))
        for name, value in values().items():
            try:
                got = await asyncio.wait_for(handle.echo(value), 30)
            except Exception as e:  # noqa: BLE001
                out('FAIL', name, 'raised', type(e).__name__, e)
                continue
            if same(got, value):
                out('ok', name)
            else:
                out('FAIL', name, 'sent', describe(value), 'got', describe(got))
        kwargs = {'t': (1, 2), 'a': np.arange(3.0), 'b': b'x'}
        got = await handle.kwargs(**kwargs)
        out('kwargs', same(got, kwargs))
        try:
            await handle.fail('it broke')
            out('fail', 'no exception')
        except AcademyRemoteError as e:
            out('fail', type(e).__name__, str(e))
        # A handle that asks for JSON answers still works (results and
        # errors follow the request).
        json_handle = Handle(
            AgentId.model_validate_json(agent_json),
            result_serializer=SerializationStrategy.JSON,
            exception_serializer=SerializationStrategy.JSON,
        )
        out('json answers', await json_handle.echo((1, 'a')))
        try:
            await json_handle.fail('json broke')
        except AcademyRemoteError as e:
            out('json fail', type(e).__name__, str(e))
        out('done')
        await handle.shutdown()
    return 0


async def run_refused(spec: str, agent_json: str) -> int:
    async with await factory(spec).create_user_client(name='py-user') as client:
        aid = AgentId.model_validate_json(agent_json)
        try:
            await asyncio.wait_for(Handle(aid).echo((1, 2)), 30)
            out('default', 'no exception')
        except Exception as e:  # noqa: BLE001
            out('default', type(e).__name__, str(e))
        json_handle = Handle(aid, request_serializer=SerializationStrategy.JSON)
        out('json', await json_handle.echo([1, 2]))
        out('done')
        await json_handle.shutdown()
    return 0


async def run_agent(spec: str, json_only: bool) -> int:
    config = RuntimeConfig(
        allowed_deserializers={SerializationStrategy.JSON} if json_only else None,
    )
    async with await Manager.from_exchange_factory(factory(spec)) as manager:
        handle = await manager.launch(Values, config=config)
        out(handle.agent_id.model_dump_json())
        await manager.wait([handle])
    return 0


if __name__ == '__main__':
    exit_when_parent_goes()
    mode, spec, *rest = sys.argv[1:]
    if mode == 'user':
        sys.exit(asyncio.run(run_user(spec, *rest)))
    elif mode == 'refused':
        sys.exit(asyncio.run(run_refused(spec, *rest)))
    elif mode in ('agent', 'json-agent'):
        sys.exit(asyncio.run(run_agent(spec, mode == 'json-agent')))
    raise SystemExit(f'unknown mode {mode}')
