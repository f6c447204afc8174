"""Runs academy-py's exchange server (`python -m academy.exchange.cloud`)
for the tests, and exits when its standard input closes, so that it never
outlives the test process that started it."""

import sys

from parent_watch import exit_when_parent_goes


exit_when_parent_goes(0)

from academy.exchange.cloud.app import _main  # noqa: E402

sys.exit(_main(sys.argv[1:]))
