"""README's worked examples, word for word, from a fresh copy of the repository.

The block after ``<!-- worked-examples -->`` is parsed into commands (a trailing backslash
continues a line); the comment above each says its exit code as ``(exit N)``. Each runs with
``sbc-deploy`` as ``python -m sbc_deploy`` of the copy (``PYTHONPATH`` = the copy, so the copy's
package and bundled files are what run), in the copy's root: a clone's tracked files, nothing
else. Cost: ~2-4 min on an idle 2-core machine (marked slow).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def worked_examples(readme: str) -> list[tuple[str, int]]:
    """``(command, expected exit code)`` of every command in the marked block."""
    block = readme.split("<!-- worked-examples -->", 1)[1]
    body = block.split("```bash", 1)[1].split("```", 1)[0]
    commands, expected, current = [], None, ""
    for line in body.splitlines():
        if line.startswith("#"):
            found = re.search(r"\(exit (\d)", line)
            expected = int(found.group(1)) if found else expected
            continue
        if not line.strip():
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            assert expected is not None, f"no '(exit N)' comment above {current!r}"
            commands.append((current.strip(), expected))
            current, expected = "", None
    return commands


def test_the_block_parses_into_commands_with_exit_codes():
    commands = worked_examples((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(commands) >= 5
    assert all(c.startswith("sbc-deploy ") for c, _ in commands)
    assert {code for _, code in commands} <= {0, 1, 2}
    # nothing outside a clone: no ../shared, no files the clone does not hold
    for command, _ in commands:
        assert "../" not in command
        for word in command.split():
            if "/" in word and not word.endswith("/"):
                assert (ROOT / word).is_file(), word


def _fresh_copy(dest: Path) -> Path:
    """The tracked files of the repository (as a clone has them), copied to ``dest``."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                            check=False)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: cannot tell which files a clone has")
    for name in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


@pytest.mark.slow
def test_the_worked_examples_run_from_a_fresh_clone_with_the_documented_exit_codes(tmp_path):
    clone = _fresh_copy(tmp_path / "clone")
    env = dict(os.environ, PYTHONPATH=str(clone))
    env.pop("TQDM_DISABLE", None)
    for command, expected in worked_examples((clone / "README.md").read_text(encoding="utf-8")):
        argv = [sys.executable, "-m", "sbc_deploy", *command.split()[1:]]
        done = subprocess.run(argv, cwd=clone, env=env, capture_output=True, text=True,
                              timeout=1200, check=False)
        assert done.returncode == expected, (command, done.stdout[-2000:], done.stderr[-2000:])
        if "-o" in argv:  # the output folder holds the report it says it wrote
            out = clone / argv[argv.index("-o") + 1]
            assert (out / "report.html").is_file() and (out / "report.json").is_file()
