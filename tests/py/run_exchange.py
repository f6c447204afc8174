"""Runs academy-py's exchange server (`python -m academy.exchange.cloud`)
for the tests, and exits when its standard input closes, so that it never
outlives the test process that started it."""

import os
import sys
import threading


def _exit_when_parent_goes() -> None:
    sys.stdin.read()
    os._exit(0)


threading.Thread(target=_exit_when_parent_goes, daemon=True).start()

from academy.exchange.cloud.app import _main  # noqa: E402

sys.exit(_main(sys.argv[1:]))
