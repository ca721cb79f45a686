"""Exit codes mean one thing each: 0 ok, 1 violates the target or a guard, 2 bad usage or input,
3 internal error (one line, 'please report'; the traceback only with --debug)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT, fixture_path
from sbc_deploy.cli import main


def test_a_bug_is_exit_3_with_one_line_and_the_traceback_only_with_debug(monkeypatch, capsys):
    import sbc_deploy.pipeline as pipeline

    def bug(*args, **kwargs):
        raise ZeroDivisionError("division by zero in a stage")

    monkeypatch.setattr(pipeline, "validate_request", bug)
    assert main(["--target", "loihi2", "--quiet", "-o", "never"]) == 3
    err = capsys.readouterr().err
    assert "please report" in err and "ZeroDivisionError" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert main(["--target", "loihi2", "--quiet", "-o", "never", "--debug"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "please report" in err
    assert not os.path.exists("never")


def test_a_reader_failure_of_any_kind_is_bad_input_naming_the_file(monkeypatch, capsys):
    """h5py raises RuntimeError/KeyError on some damaged files; that is exit 2, not 1 or 3."""
    import sbc_deploy.frontends as frontends

    model = fixture_path("nir", "lif_norse.nir")
    for error in (RuntimeError("Unable to synchronously open object"), KeyError("node"),
                  MemoryError()):
        def broken(*args, _error=error, **kwargs):
            raise _error

        monkeypatch.setattr(frontends, "from_nir", broken)
        assert main(["inspect", str(model)]) == 2
        err = capsys.readouterr().err
        assert str(model) in err and "cannot be read as a NIR graph" in err
        assert "Traceback" not in err


def test_interrupt_is_130_and_writes_nothing(monkeypatch, tmp_path, capsys):
    import sbc_deploy.pipeline as pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "compress", interrupted)
    out = tmp_path / "out"
    assert main(["--target", "loihi2", "--method", "magnitude", "--quiet", "-o", str(out)]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_through_a_real_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    run = subprocess.run([sys.executable, "-m", "sbc_deploy", "inspect", str(bad)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and str(bad) in run.stderr and "Traceback" not in run.stderr
    run = subprocess.run([sys.executable, "-m", "sbc_deploy", "--target", "loihi2",
                          "--export", "pdf", "-o", str(tmp_path / "o")], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "pdf" in run.stderr and not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv", [["--target"], ["inspect"], ["--target", "loihi2", "--bits",
                                                               "x"]])
def test_usage_errors_are_2(argv, capsys):
    assert main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err
