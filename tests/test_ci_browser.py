""".ci/browser, CI's chromium step, run in each of its branches without touching this machine:
PATH points at a folder of stand-ins (``id``, ``apt-get``, ``chromium``) that log how they were
called, so the install branch runs without installing anything. Then the browser tests
themselves with chromium off PATH: they must skip and say why in pytest's summary (-ra).
Cost: ~1 s for the script's branches, ~5 s for the pytest run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "browser"
BASH = "/bin/bash"


def _stand_in(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text(f"#!{BASH}\n{body}\n")
    path.chmod(0o755)


def _run(tmp_path: Path, *, uid: int, apt: str | None = None, chromium: bool = False,
         installs: bool = False) -> tuple[subprocess.CompletedProcess, list[str]]:
    """.ci/browser with PATH = a folder holding only the stand-ins asked for."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    _stand_in(bin_dir, "id", f'[ "$1" = -u ] && echo {uid}')
    if chromium:
        _stand_in(bin_dir, "chromium", "exit 0")
    if apt is not None:
        make = (f'[ "$1" = install ] && {{ printf "#!{BASH}\\n" > "{bin_dir}/chromium"; '
                f'/bin/chmod 755 "{bin_dir}/chromium"; }}' if installs else ":")
        _stand_in(bin_dir, "apt-get", f'echo "$*" >> "{log}"\n{make}\nexit {apt}')
    done = subprocess.run([BASH, str(SCRIPT)], env={"PATH": str(bin_dir)}, capture_output=True,
                          text=True, timeout=30, check=False)
    calls = log.read_text().splitlines() if log.exists() else []
    return done, calls


def test_an_installed_chromium_is_found_and_nothing_is_installed(tmp_path):
    done, calls = _run(tmp_path, uid=0, apt="0", chromium=True)
    assert done.returncode == 0 and calls == []
    assert done.stdout.strip() == (f".ci/browser: chromium found: {tmp_path}/bin/chromium "
                                   "(nothing installed)")


def test_this_machines_chromium_is_found_without_an_install():
    if not any(Path(d, "chromium").exists() for d in os.environ.get("PATH", "").split(":")):
        pytest.skip("chromium is not installed on this machine: the found branch is checked "
                    "with a stand-in above")
    done = subprocess.run([BASH, str(SCRIPT)], capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 0 and "chromium found:" in done.stdout and not done.stderr


def test_missing_as_root_installs_with_apt_and_finds_it(tmp_path):
    done, calls = _run(tmp_path, uid=0, apt="0", installs=True)
    assert done.returncode == 0
    assert calls == ["update -qq", "install -y -qq chromium"]
    assert "installing Debian's chromium" in done.stdout
    assert f"chromium installed: {tmp_path}/bin/chromium" in done.stdout


@pytest.mark.parametrize(("uid", "apt", "installs", "why"), [
    (1000, "0", True, "chromium missing and not root (cannot apt-get install): the browser "
                      "tests will SKIP"),
    (0, None, False, "chromium missing and no apt-get on this machine: the browser tests will "
                     "SKIP"),
    (0, "100", False, "apt-get could not install chromium: the browser tests will SKIP"),
    (0, "0", False, "apt-get installed chromium but it is not on PATH: the browser tests will "
                    "SKIP"),
])
def test_each_skip_says_why_in_the_log(tmp_path, uid, apt, installs, why):
    done, calls = _run(tmp_path, uid=uid, apt=apt, installs=installs)
    assert done.returncode == 0  # a missing browser skips its tests; CI goes on
    assert done.stderr.strip() == f".ci/browser: {why}"
    if uid != 0:
        assert calls == []  # never tries apt-get without root
    if apt == "100":
        assert calls == ["update -qq"]  # install is not tried after a failed update


def test_ci_run_calls_the_browser_step_before_the_test_command():
    text = (ROOT / ".ci" / "run").read_text()
    assert text.index("bash .ci/browser") < text.index('bash -euo pipefail -c "$command"')


def test_without_chromium_the_browser_tests_skip_and_say_why(tmp_path):
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(ROOT / "tests" / "test_screenshots.py")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:]
    skipped = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skipped and all("chromium is not installed" in line for line in skipped)
    assert " skipped in " in done.stdout.splitlines()[-1]
