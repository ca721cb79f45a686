"""Ctrl-C at any moment prints one line and exits 130 (issue 21): a real SIGINT is sent to the
real command at early moments (Python starting, the package and torch importing, the data
loading) and later ones. Cost: ~12 s (eight short runs)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT

ENTRY = {"module": [sys.executable, "-m", "sbc_deploy"],
         # what the installed sbc-deploy script does (pyproject's entry point)
         "script": [sys.executable, "-c", "from sbc_deploy.__main__ import run; run()"]}


def _before_the_guard(err: str) -> bool:
    """True when the traceback's frames of this package all lie before the line of
    sbc_deploy/__main__.py that installs the SIGINT handler (or there are none)."""
    main_file = ROOT / "sbc_deploy" / "__main__.py"
    guard = next(i for i, line in enumerate(main_file.read_text().splitlines(), 1)
                 if "SIGINT-GUARD" in line)
    frames = re.findall(r'File "([^"]*sbc_deploy[^"]*)", line (\d+)', err)
    return all(path.endswith("sbc_deploy/__init__.py") or
               (path.endswith("sbc_deploy/__main__.py") and int(line) <= guard)
               for path, line in frames)


@pytest.mark.parametrize("entry, delay", [("script", 0.15), ("module", 0.15), ("script", 0.3),
                                          ("module", 0.6), ("script", 1.0), ("module", 1.5),
                                          ("script", 2.5), ("module", 4.0)])
def test_sigint_at_any_moment_prints_one_line_and_exits_130(tmp_path, entry, delay):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([*ENTRY[entry], "--target", "loihi2", "--quiet", "-o",
                             str(tmp_path / "out")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    if (proc.returncode == -signal.SIGINT and _before_the_guard(err)) or \
            "Fatal Python error: init_import_site" in err:
        # the interpreter's own start, before sbc-deploy's first line could install its handler
        pytest.skip(f"the signal came before sbc-deploy's handler existed: {err[-200:]!r}")
    assert proc.returncode == 130, (proc.returncode, err)
    assert err.strip() == "interrupted" and "Traceback" not in err, err
    assert list(tmp_path.iterdir()) == []  # no output set, no staging folder


def test_an_interrupt_a_library_rewraps_is_still_an_interrupt(monkeypatch, capsys):
    """numpy turns a Ctrl-C during its import into ImportError('IMPORTANT: PLEASE READ ...')."""
    import sbc_deploy.cli as cli

    def importing(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise ImportError("IMPORTANT: PLEASE READ THIS FOR ADVICE") from None

    monkeypatch.setattr(cli, "_run_targets", importing)
    assert cli.main(["targets"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"
