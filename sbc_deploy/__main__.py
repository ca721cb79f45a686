"""``python -m sbc_deploy`` and the ``sbc-deploy`` command (entry point :func:`run`).

Ctrl-C is answered from this module's first line: until :func:`sbc_deploy.cli.main` takes over
(it turns an interrupt into one line and exit code 130 after the output set is cleaned up), a
SIGINT prints the same line and exits 130 at once. Nothing heavy (torch) is imported before
``main`` runs; the package's ``__init__`` imports nothing heavy either.
"""

import os
import signal


def _interrupted(signum: int, frame: object) -> None:
    os.write(2, b"interrupted\n")
    os._exit(130)  # nothing to clean up yet: no output exists before main() runs


signal.signal(signal.SIGINT, _interrupted)  # SIGINT-GUARD (first statement that runs)


def run() -> None:
    """The console entry point: guard SIGINT, then import and run the CLI."""
    import sys

    signal.signal(signal.SIGINT, _interrupted)
    from sbc_deploy.cli import main

    sys.exit(main())


if __name__ == "__main__":
    run()
