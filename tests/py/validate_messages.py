"""Validates messages with academy-py's pydantic models.

Usage: validate_messages.py JSON...
Prints one line per message: 'ok <body kind>' or 'invalid <error>'.
"""

import sys

from academy.message import Message

for text in sys.argv[1:]:
    try:
        message = Message.model_validate_json(text)
        body = message.get_body()
        print('ok', body.kind, flush=True)
    except Exception as e:  # noqa: BLE001
        print('invalid', type(e).__name__, str(e).replace('\n', ' '), flush=True)
