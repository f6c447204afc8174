"""academy-py 1.0.0 peers on the Redis and hybrid exchanges, for tests/redis_exchange.rs.

Usage: redis_peer.py MODE KIND REDIS_PORT NAMESPACE [ARGS...]
  KIND is "redis" or "hybrid"; NAMESPACE is used by "hybrid" only.

  agent                 launch a Python agent with academy's Manager; print its id, its
                        registration and a spare registration (registered, not launched);
                        run until the agent is shut down; exit 0.
  user AGENT_JSON CLASS call a (C) agent through academy's Handle; one line per check.
  inspect ID_JSON       what academy-py's client says about a mailbox, as one JSON line.
  bytes                 check every key in Redis against what academy-py writes: one JSON line.
  mixed CALC_BIN OPTS   run a Python agent and spawn the C calculator_agent on the same
                        exchange, call both, shut both down.
"""

import asyncio
import json
import subprocess
import sys

import interop_agent
from interop_user import check_agent, out
from parent_watch import exit_when_parent_goes

from academy.agent import Agent
from academy.exception import AcademyRemoteError
from academy.exchange import HybridExchangeFactory, RedisExchangeFactory
from academy.exchange.hybrid import HybridAgentRegistration, base32_to_uuid
from academy.exchange.redis import RedisAgentRegistration
from academy.handle import Handle
from academy.identifier import AgentId, UserId
from academy.manager import Manager
from academy.message import Header, Message


class Calc(interop_agent.Calc):
    """The calculator of interop_agent.py, discovered as __main__.Calc."""


class Spare(Agent):
    pass


def factory(kind, port, namespace):
    if kind == 'redis':
        return RedisExchangeFactory('127.0.0.1', port)
    return HybridExchangeFactory(redis_host='127.0.0.1', redis_port=port, namespace=namespace)


def registration_type(kind):
    return RedisAgentRegistration if kind == 'redis' else HybridAgentRegistration


async def run_agent(kind, port, namespace):
    async with await Manager.from_exchange_factory(factory(kind, port, namespace)) as manager:
        registration = await manager.register_agent(Calc)
        spare = await manager.register_agent(Spare, name='spare')
        handle = await manager.launch(Calc, registration=registration)
        out(handle.agent_id.model_dump_json())
        out(registration.model_dump_json())
        out(spare.model_dump_json())
        await manager.wait([handle])
    return 0


async def run_user(kind, port, namespace, agent_json, agent_class):
    async with await factory(kind, port, namespace).create_user_client(name='py-user') as client:
        aid = AgentId.model_validate_json(agent_json)
        await check_agent(client, aid, agent_class)
        handle = Handle(aid)
        out('status', (await client.status(aid)).name)
        if kind == 'redis':
            stats = await handle.agent_stats()
            out('stats', stats.completed >= 14, stats.in_progress, stats.queued)
        await handle.shutdown()
        out('done')
    return 0


async def run_inspect(kind, port, namespace, id_json):
    entity = json.loads(id_json)
    eid = (AgentId if entity['role'] == 'agent' else UserId).model_validate(entity)
    async with await factory(kind, port, namespace).create_user_client(name='inspector') as client:
        report = {'status': (await client.status(eid)).name}
        try:
            report['heartbeat'] = await client._transport.heartbeat_status(eid)
        except Exception as e:  # noqa: BLE001
            report['heartbeat'] = type(e).__name__
        if kind == 'redis':
            try:
                report['stats'] = (await client._transport.agent_stats(eid)).__dict__
            except Exception as e:  # noqa: BLE001
                report['stats'] = repr(e)
        out(json.dumps(report, default=str))
    return 0


def run_bytes(kind, port, namespace):
    """Reads every key as raw bytes and checks it against academy-py's own writing."""
    import redis

    r = redis.Redis(host='127.0.0.1', port=port)
    report = {'keys': 0, 'bad': []}
    prefix = '' if kind == 'redis' else f'{namespace}:'
    for raw_key in r.scan_iter(f'{prefix}*'):
        key = raw_key.decode()
        report['keys'] += 1
        kind_of = key[len(prefix):].split(':')[0]
        uid = key.split(':')[-1] if kind_of != 'request' else key.split(':')[1]
        try:
            if kind == 'hybrid':
                base32_to_uuid(uid)
        except Exception:  # noqa: BLE001
            report['bad'].append(f'{key}: uid is not academy-py base32')
        if r.type(raw_key) == b'list':
            for item in r.lrange(raw_key, 0, -1):
                if item == b'<CLOSED>':
                    continue
                message = Message.model_deserialize(item)
                if message.model_serialize() != item:
                    report['bad'].append(f'{key}: queued message differs from pydantic bytes')
            continue
        value = r.get(raw_key)
        text = value.decode()
        if kind_of in ('active', 'status'):
            if text not in ('ACTIVE', 'INACTIVE'):
                report['bad'].append(f'{key} = {text!r}')
        elif kind_of == 'heartbeat':
            if str(float(text)) != text:
                report['bad'].append(f'{key} = {text!r} is not str(float)')
        elif kind_of == 'request':
            if Header.model_validate_json(text).model_dump_json() != text:
                report['bad'].append(f'{key}: header differs from pydantic bytes: {text}')
        elif kind_of in ('outgoing', 'completions'):
            if str(int(text)) != text:
                report['bad'].append(f'{key} = {text!r}')
        elif kind_of == 'address':
            host, port_text = text.split(':')
            if not port_text.isdigit() or host.count('.') != 3:
                report['bad'].append(f'{key} = {text!r}')
        elif kind_of == 'agent':
            if not text or ' ' in text:
                report['bad'].append(f'{key} = {text!r}')
        else:
            report['bad'].append(f'unexpected key {key}')
    out(json.dumps(report))
    return 0


async def run_mixed(kind, port, namespace, calc_bin, options):
    registration_model = registration_type(kind)
    async with await Manager.from_exchange_factory(factory(kind, port, namespace)) as manager:
        py_agent = await manager.launch(Calc)
        c_agent = subprocess.Popen([calc_bin, kind, options], stdout=subprocess.PIPE, text=True)
        try:
            c_id = AgentId.model_validate_json(c_agent.stdout.readline())
            # The registration a C agent makes is one academy-py reads.
            registration_model.model_validate_json(
                json.dumps({'agent_id': json.loads(c_id.model_dump_json()), 'exchange_type': kind})
            )
            c_handle = Handle(c_id)
            py_handle = Handle(py_agent.agent_id)
            out('python add', await py_handle.add(2, 3))
            out('c add', await c_handle.add(2, 3))
            out('c echo', await c_handle.echo('h\u00e9'))
            together = await asyncio.gather(*(c_handle.add(i, i) for i in range(20)),
                                            *(py_handle.add(i, i) for i in range(20)))
            out('together', together == [2.0 * i for i in range(20)] + [2 * i for i in range(20)])
            found_c = await manager.exchange_client.discover('examples.Calculator')
            found_py = await manager.exchange_client.discover(f'{Calc.__module__}.Calc')
            out('discover', c_id in found_c, py_agent.agent_id in found_py)
            out('status', (await manager.exchange_client.status(c_id)).name)
            try:
                await c_handle.nope()
            except AcademyRemoteError as e:
                out('c error', 'no action named' in str(e))
            await c_handle.shutdown()
            out('c exit', c_agent.wait(timeout=30))
        finally:
            if c_agent.poll() is None:
                c_agent.kill()
    out('done')
    return 0


if __name__ == '__main__':
    exit_when_parent_goes()
    mode, kind, port, namespace, *rest = sys.argv[1:]
    port = int(port)
    if mode == 'agent':
        sys.exit(asyncio.run(run_agent(kind, port, namespace)))
    elif mode == 'user':
        sys.exit(asyncio.run(run_user(kind, port, namespace, *rest)))
    elif mode == 'inspect':
        sys.exit(asyncio.run(run_inspect(kind, port, namespace, *rest)))
    elif mode == 'bytes':
        sys.exit(run_bytes(kind, port, namespace))
    elif mode == 'mixed':
        sys.exit(asyncio.run(run_mixed(kind, port, namespace, *rest)))
    raise SystemExit(f'unknown mode {mode}')
