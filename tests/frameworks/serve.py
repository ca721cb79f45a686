"""Run driver commands for one framework environment in one process (started by
tests/frameworks/harness.py inside that environment: ``python serve.py``).

Each line on stdin is a JSON request ``{"driver": "snntorch", "argv": ["consume", ...]}``: the
command of tests/frameworks/<driver>_driver.py (its ``command(argv)``, or, for a driver without
one, the driver run as a script with ``argv`` as its command line); each answer is one JSON
line on the process's original stdout, ``{"ok": true}`` or ``{"ok": false, "error":
"<traceback>"}``. What the frameworks print goes to stderr (the harness keeps it in a log file),
so it cannot mix with the answers. The frameworks are imported once, by the first command that
needs them, instead of once per command; the process ends when stdin closes (the test session
ends or dies). Only the standard library is used here.
"""

from __future__ import annotations

import importlib
import json
import os
import runpy
import sys
import traceback
from pathlib import Path


def _run(driver: str, argv: list[str]) -> None:
    module = importlib.import_module(f"{driver}_driver")
    if hasattr(module, "command"):
        module.command(argv)
        return
    saved = sys.argv
    sys.argv = [module.__file__ or driver, *argv]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as done:
        if done.code not in (None, 0):
            raise
    finally:
        sys.argv = saved


def serve() -> None:
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # the frameworks' prints: to the log
    sys.path.insert(0, str(Path(__file__).parent))
    for line in sys.stdin:
        try:
            request = json.loads(line)
            _run(str(request["driver"]), [str(a) for a in request["argv"]])
            answer = {"ok": True}
        except (Exception, SystemExit):  # a failing command must not end the others' process
            answer = {"ok": False, "error": traceback.format_exc()[-4000:]}
        sys.stdout.flush()
        sys.stderr.flush()
        answers.write(json.dumps(answer) + "\n")


if __name__ == "__main__":
    serve()
