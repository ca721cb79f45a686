"""Progress bars on a terminal: every stage draws one, in real units; none with --quiet or off
a terminal. The CLI runs in a child process whose stderr is a pseudo-terminal (python's pty)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import pytest

from sbc_deploy import bundled

REPO = Path(__file__).resolve().parents[1]
N = 24  # samples: calibration and evaluation (quick)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """The first N bundled samples as a plain .npz (x [N, T, ...], y)."""
    data = bundled.load_bundled_data("eval")
    path = tmp_path_factory.mktemp("data") / "small.npz"
    np.savez(path, x=np.asarray(data.x[:N]), y=np.asarray(data.y[:N]), dt=data.dt)
    return path


def _command(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sbc_deploy", "nmnist_mlp", "--target", "loihi2",
            "--calib", str(data), "--eval", str(data), "-o", str(out), *extra]


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="160")
    env.pop("TQDM_DISABLE", None)
    return env


def _run_on_pty(command: list[str]) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal (stdout piped); return (code, stdout, terminal)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # rows, columns
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=slave,
                             stdin=subprocess.DEVNULL, env=_env(), cwd=REPO)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif child.poll() is not None:
            break
    os.close(master)
    stdout = child.stdout.read().decode() if child.stdout else ""
    code = child.wait(timeout=60)
    return code, stdout, b"".join(chunks).decode(errors="replace")


def test_every_stage_draws_progress_on_a_terminal(small_data, tmp_path):
    code, stdout, terminal = _run_on_pty(_command(small_data, tmp_path))
    assert code == 0, terminal[-3000:]
    for stage in ("evaluate dense", "calibrate", "compress loihi2", "export loihi2",
                  "evaluate loihi2", "integer core loihi2"):
        assert stage in terminal, f"no progress for {stage!r}"
    # compression names the layer being compressed, with its size, and counts layers
    assert re.search(r"compress loihi2.*linear1 -> leaky2 \d+x\d+", terminal)
    assert re.search(r"compress loihi2.*2/2 \[", terminal)
    # issue 20: every bar says its stage's place in the run (load, evaluate dense, calibrate,
    # then compress, export, evaluate and integer core for the one target: 7 stages) ...
    for k, stage in enumerate(("load", "evaluate dense", "calibrate", "compress loihi2",
                               "export loihi2", "evaluate loihi2", "integer core loihi2")):
        assert f"[{k + 1}/7] {stage}:" in terminal, stage
    # ... and the compress bar moves inside a layer: the columns the quantising sweep solved
    columns = [int(v) for v in re.findall(r"linear1 -> leaky2 256x2312: quantize columns "
                                          r"(\d+)/2312", terminal)]
    assert len(set(columns)) >= 3 and max(columns) > 2312 // 2, columns  # tqdm skips some
    assert re.search(r"compress loihi2: +\d+%\|[^|]*\| 0\.\d/2 \[", terminal)
    assert re.search(r"calibrate.*\b24/24 \[", terminal)
    # rates in real units (samples/s, layers/s) and plausible: a CPU simulates at most a few
    # thousand of these N-MNIST samples per second; the old bar showed 1,973,790 it/s
    rates = [float(v) for v in re.findall(r"([\d.]+) samples/s", terminal)]
    assert rates and max(rates) < 5000, rates
    assert "it/s" not in terminal
    # the summary lists every file written, the models too
    for name in ("report.json", "report.md", "report.html", "model.net", "model.nir",
                 "model.onnx"):
        assert str(tmp_path / name) in stdout


def test_quiet_draws_nothing_on_a_terminal(small_data, tmp_path):
    code, stdout, terminal = _run_on_pty(_command(small_data, tmp_path, "--quiet"))
    assert code == 0, terminal[-3000:]
    assert terminal.strip() == "", terminal[-2000:]
    assert "loihi2: FITS" in stdout


def test_nothing_is_drawn_off_a_terminal(small_data, tmp_path):
    done = subprocess.run(_command(small_data, tmp_path), capture_output=True, text=True,
                          env=_env(), cwd=REPO, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.strip() == ""
    assert "\r" not in done.stdout and "loihi2: FITS" in done.stdout
