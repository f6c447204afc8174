"""Cross-checks with academy-py's own HttpExchangeTransport.

Usage: xcheck.py URL MODE [ARGS...]
  recv MAILBOX_ID_JSON       receive one message on that (agent) mailbox and
                             print its JSON exactly as model_dump_json gives it
  send SRC_JSON DEST_JSON    send a ping request from SRC to DEST and print it
  discover CLASS             print the uids academy-py's discover finds
"""

import asyncio
import sys

from parent_watch import exit_when_parent_goes

from academy.exchange.cloud.client import HttpExchangeTransport
from academy.exchange.cloud.client import _HttpConnectionInfo
from academy.message import Message, PingRequest
from pydantic import TypeAdapter
from academy.identifier import EntityId


async def main() -> int:
    url, mode, *args = sys.argv[1:]
    info = _HttpConnectionInfo(url=url, additional_headers={})
    if mode == 'recv':
        mailbox = TypeAdapter(EntityId).validate_json(args[0])
        transport = await HttpExchangeTransport.new(
            connection_info=info, auth_method=None, mailbox_id=mailbox,
        )
        print('ready', flush=True)
        async for message in transport.listen(timeout=30):
            print(message.model_dump_json(), flush=True)
            break
        await transport.close()
    elif mode == 'send':
        src = TypeAdapter(EntityId).validate_json(args[0])
        dest = TypeAdapter(EntityId).validate_json(args[1])
        transport = await HttpExchangeTransport.new(
            connection_info=info, auth_method=None, mailbox_id=src,
        )
        message = Message.create(src=src, dest=dest, body=PingRequest())
        await transport.send(message)
        print(message.model_dump_json(), flush=True)
        await transport.close()
    elif mode == 'discover':
        console_transport = await HttpExchangeTransport.new(
            connection_info=info, auth_method=None,
        )
        found = await console_transport.discover(args[0], allow_subclasses=True)
        print(','.join(str(a.uid) for a in found), flush=True)
        await console_transport.terminate(console_transport.mailbox_id)
        await console_transport.close()
    else:
        raise SystemExit(f'unknown mode {mode}')
    return 0


if __name__ == '__main__':
    exit_when_parent_goes()
    sys.exit(asyncio.run(main()))
