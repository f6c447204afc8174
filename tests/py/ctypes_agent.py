"""libacademy from Python through ctypes (as Julia's ccall loads it): no
academy-py client involved. Spawns the embedded exchange, serves an agent
from a Python callback, calls it, shuts it down.

Usage: ctypes_agent.py PATH/TO/libacademy.so
"""

import ctypes
import json
import sys
import threading

lib = ctypes.CDLL(sys.argv[1])
c_char_pp = ctypes.POINTER(ctypes.c_char_p)
OK = 0

lib.academy_version.restype = ctypes.c_char_p
lib.academy_last_error.restype = ctypes.c_char_p
lib.academy_status_str.restype = ctypes.c_char_p
lib.academy_string_free.argtypes = [ctypes.c_void_p]
HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)
lib.academy_agent_serve.argtypes = [ctypes.c_void_p, HANDLER, ctypes.c_void_p]
lib.academy_reply_ok.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
lib.academy_reply_error.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
lib.academy_client_action.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                      ctypes.c_char_p, ctypes.c_double, ctypes.POINTER(ctypes.c_void_p)]
for name in ('academy_exchange_spawn', 'academy_exchange_url', 'academy_http_factory_new', 'academy_user_client_new',
             'academy_client_register_agent', 'academy_agent_client_new', 'academy_client_shutdown_agent',
             'academy_client_close', 'academy_exchange_stop'):
    getattr(lib, name).restype = ctypes.c_int


def check(status: int) -> None:
    if status != OK:
        raise RuntimeError(f'{lib.academy_status_str(status).decode()}: {lib.academy_last_error().decode()}')


def take(ptr: ctypes.c_void_p) -> str:
    text = ctypes.cast(ptr, ctypes.c_char_p).value.decode()
    lib.academy_string_free(ptr)
    return text


def out_string(call, *args) -> str:
    ptr = ctypes.c_void_p()
    check(call(*args, ctypes.byref(ptr)))
    return take(ptr)


@HANDLER
def handler(user_data, action, args, kwargs, reply):
    args = json.loads(args)
    if action == b'add':
        lib.academy_reply_ok(reply, json.dumps(sum(args)).encode())
    else:
        lib.academy_reply_error(reply, f'no action {action.decode()}'.encode())


exchange = ctypes.c_void_p()
check(lib.academy_exchange_spawn(None, ctypes.byref(exchange)))
url = out_string(lib.academy_exchange_url, exchange)
factory, user, agent = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
check(lib.academy_http_factory_new(url.encode(), None, ctypes.byref(factory)))
check(lib.academy_user_client_new(factory, b'py-ctypes', ctypes.byref(user)))
registration = out_string(lib.academy_client_register_agent, user, b'ctypes.Adder', None)
check(lib.academy_agent_client_new(factory, registration.encode(), ctypes.byref(agent)))
served = []
thread = threading.Thread(target=lambda: served.append(lib.academy_agent_serve(agent, handler, None)))
thread.start()

agent_id = json.dumps(json.loads(registration)['agent_id']).encode()
result = ctypes.c_void_p()
check(lib.academy_client_action(user, agent_id, b'add', b'[1, 2, 39]', None, 10.0, ctypes.byref(result)))
print('add', take(result), flush=True)
status = lib.academy_client_action(user, agent_id, b'sub', None, None, 10.0, ctypes.byref(result))
print('sub', lib.academy_status_str(status).decode(), lib.academy_last_error().decode(), flush=True)
check(lib.academy_client_shutdown_agent(user, agent_id, 1))
thread.join(10)
print('served', served, flush=True)
check(lib.academy_client_close(user))
check(lib.academy_exchange_stop(exchange))
print('version', lib.academy_version().decode(), flush=True)
