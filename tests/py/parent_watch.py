"""What every Python peer of the tests shares: it exits when the test that
started it goes away (its stdin closes), so that no peer outlives a test.
"""

import os
import sys
import threading


def exit_when_parent_goes(code: int = 3) -> None:
    """Starts a thread that ends the process with `code` once stdin closes."""

    def watch() -> None:
        sys.stdin.read()
        os._exit(code)

    threading.Thread(target=watch, daemon=True).start()
