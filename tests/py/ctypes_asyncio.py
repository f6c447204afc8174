"""libacademy's completion queue driven by Python's asyncio, through ctypes
only (no academy-py): one event loop watches the queue's fd with
loop.add_reader, keeps N actions in flight with asyncio.gather, and serves
the agent they call (academy_agent_serve_queue) on the same thread.

Usage: ctypes_asyncio.py PATH/TO/libacademy.so N
"""

import asyncio
import ctypes
import json
import sys
import threading

lib = ctypes.CDLL(sys.argv[1])
N = int(sys.argv[2])
OK, CALL, REQUEST, ENDED = 0, 1, 3, 4


class Event(ctypes.Structure):
    """struct academy_event, as include/academy.h declares it."""

    _fields_ = [
        ('kind', ctypes.c_int),
        ('token', ctypes.c_uint64),
        ('status', ctypes.c_int),
        ('json', ctypes.c_char_p),
        ('error', ctypes.c_char_p),
        ('rtt_s', ctypes.c_double),
        ('action', ctypes.c_char_p),
        ('args_json', ctypes.c_char_p),
        ('kwargs_json', ctypes.c_char_p),
        ('reply', ctypes.c_void_p),
    ]


P, S, D, U64 = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_double, ctypes.c_uint64
OUT = ctypes.POINTER(ctypes.c_void_p)
signatures = {
    'academy_exchange_spawn': [S, OUT],
    'academy_exchange_url': [P, OUT],
    'academy_exchange_stop': [P],
    'academy_http_factory_new': [S, S, OUT],
    'academy_user_client_new': [P, S, OUT],
    'academy_client_register_agent': [P, S, S, OUT],
    'academy_agent_client_new': [P, S, OUT],
    'academy_client_shutdown_agent': [P, S, ctypes.c_int],
    'academy_client_close': [P],
    'academy_queue_new': [OUT],
    'academy_queue_fd': [P, ctypes.POINTER(ctypes.c_int)],
    'academy_queue_poll': [P, D, ctypes.POINTER(ctypes.POINTER(Event))],
    'academy_client_action_async': [P, S, S, S, S, D, P, U64],
    'academy_agent_serve_queue': [P, P, U64],
    'academy_reply_ok': [P, S],
}
for name, argtypes in signatures.items():
    getattr(lib, name).argtypes = argtypes
    getattr(lib, name).restype = ctypes.c_int
for name in ('academy_client_free', 'academy_factory_free', 'academy_exchange_free', 'academy_queue_free',
             'academy_string_free', 'academy_event_free'):
    getattr(lib, name).argtypes = [P]
    getattr(lib, name).restype = None
lib.academy_last_error.restype = S
lib.academy_status_str.restype = S


def check(status):
    if status != OK:
        raise RuntimeError(f'{lib.academy_status_str(status).decode()}: {lib.academy_last_error().decode()}')


def out_string(call, *args):
    ptr = ctypes.c_void_p()
    check(call(*args, ctypes.byref(ptr)))
    text = ctypes.cast(ptr, ctypes.c_char_p).value.decode()
    lib.academy_string_free(ptr)
    return text


def new(call, *args):
    handle = ctypes.c_void_p()
    check(call(*args, ctypes.byref(handle)))
    return handle


async def main():
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()
    exchange = new(lib.academy_exchange_spawn, None)
    url = out_string(lib.academy_exchange_url, exchange)
    factory = new(lib.academy_http_factory_new, url.encode(), None)
    user = new(lib.academy_user_client_new, factory, b'asyncio')
    registration = out_string(lib.academy_client_register_agent, user, b'ctypes.Adder', None)
    agent = new(lib.academy_agent_client_new, factory, registration.encode())
    agent_id = json.dumps(json.loads(registration)['agent_id']).encode()
    queue = new(lib.academy_queue_new)
    fd = ctypes.c_int()
    check(lib.academy_queue_fd(queue, ctypes.byref(fd)))

    serving = 0  # the token of the serving; calls use 1..N
    check(lib.academy_agent_serve_queue(agent, queue, serving))
    calls = {}
    served = []
    ended = loop.create_future()

    def on_readable():
        """The fd is readable: take every waiting event (never blocks)."""
        event = ctypes.POINTER(Event)()
        while lib.academy_queue_poll(queue, 0.0, ctypes.byref(event)) == OK:
            e = event.contents
            if e.kind == CALL:
                future = calls.pop(e.token)
                if e.status == OK:
                    future.set_result(json.loads(e.json))
                else:
                    future.set_exception(RuntimeError(e.error.decode()))
            elif e.kind == REQUEST:
                args = json.loads(e.args_json)
                check(lib.academy_reply_ok(e.reply, json.dumps(sum(args)).encode()))
                served.append(threading.get_ident())
            elif e.kind == ENDED:
                ended.set_result(e.status)
            lib.academy_event_free(event)

    loop.add_reader(fd.value, on_readable)
    peak = 0

    async def add(i):
        nonlocal peak
        future = loop.create_future()
        calls[i] = future
        args = json.dumps([i, 1]).encode()
        check(lib.academy_client_action_async(user, agent_id, b'add', args, None, 60.0, queue, i))
        peak = max(peak, len(calls))
        return await future

    results = await asyncio.gather(*(add(i) for i in range(1, N + 1)))
    correct = sum(result == i + 1 for i, result in enumerate(results, 1))
    on_one_thread = sum(t == loop_thread for t in served)
    print(f'{N} actions, {peak} in flight at the peak, {correct} correct, {on_one_thread} served on one thread',
          flush=True)
    check(lib.academy_client_shutdown_agent(user, agent_id, 1))
    status = await asyncio.wait_for(ended, 10)
    print(f'serving ended: {status}', flush=True)
    loop.remove_reader(fd.value)
    lib.academy_queue_free(queue)
    for client in (agent, user):
        check(lib.academy_client_close(client))
        lib.academy_client_free(client)
    lib.academy_factory_free(factory)
    check(lib.academy_exchange_stop(exchange))
    lib.academy_exchange_free(exchange)


asyncio.run(main())
