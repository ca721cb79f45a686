"""Nothing is written outside OUTDIR (issue 21): target names are safe folder names, every write
of a run is checked to stay inside its staging folder, and verifying a set fails on anything the
manifest does not list. Cost: ~6 s (every CLI case is refused before any work)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sbc_deploy.cli import main
from sbc_deploy.errors import PathError, TargetError
from sbc_deploy.fileio import check_writable, confined_to, write_text_atomic
from sbc_deploy.outputs import (
    MANIFEST,
    Manifest,
    sha256_file,
    staged_output,
    subfolder,
    verify_set,
)
from sbc_deploy.targets import load_target, target_dirs

HOSTILE_NAMES = ["..", ".", "../../x", "/tmp/abs", "a/b", "a\\b", "a" * 5000, "a\x00b",
                 "a\nloihi2: fits", "\x1b[2J", "-rf", " generic", "a" * 65]


def _target_file(folder: Path, name: str) -> Path:
    """The shipped generic target with its name replaced (a TOML basic string, escaped)."""
    text = (target_dirs()[0] / "generic.toml").read_text()
    escaped = json.dumps(name)  # JSON string escapes are valid TOML basic-string escapes
    path = folder / "mychip.toml"
    path.write_text(text.replace('name = "generic"', f"name = {escaped}", 1))
    return path


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_target_name_that_is_not_a_safe_folder_name_is_refused_at_load(tmp_path, name):
    with pytest.raises(TargetError) as info:
        load_target(_target_file(tmp_path, name))
    text = str(info.value)
    assert "not a valid target name" in text and "\x1b" not in text and "\x00" not in text
    assert "\n" not in text


@pytest.mark.parametrize("name", ["loihi2", "my-chip_v2.1", "A", "x" * 64])
def test_safe_names_load(tmp_path, name):
    assert load_target(_target_file(tmp_path, name)).name == name


def test_dotdot_target_in_compare_mode_writes_nothing_and_keeps_the_model(tmp_path, capsys):
    """The reported case: name = ".." overwrote the user's own model.nir with exit 0."""
    from sbc_deploy.bundled import bundled_path

    model = tmp_path / "model.nir"
    model.write_bytes(bundled_path("nmnist_mlp.nir").read_bytes())
    before = sha256_file(model)
    chip = _target_file(tmp_path, "..")
    code = main([str(model), "--target", f"{chip},generic", "--method", "magnitude",
                 "--eval-limit", "8", "--quiet", "-o", str(tmp_path / "out")])
    assert code == 2
    assert sha256_file(model) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.nir", "mychip.toml"]
    err = capsys.readouterr().err
    assert "not a valid target name" in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["a" * 5000, "a\x00b"])
def test_long_and_nul_names_are_bad_input_in_compare_mode(tmp_path, capsys, name):
    chip = _target_file(tmp_path, name)
    code = main(["--target", f"{chip},generic", "--method", "magnitude", "--quiet",
                 "-o", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "internal error" not in err and "\x00" not in err and len(err) < 2000


def test_two_targets_with_one_name_are_refused(tmp_path, capsys):
    chip = _target_file(tmp_path, "GENERIC")
    assert main(["--target", f"generic,{chip}", "--method", "magnitude", "--quiet",
                 "-o", str(tmp_path / "out")]) == 2
    assert "named 'generic'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_output_folder_name_too_long_for_the_filesystem_is_bad_input(tmp_path, capsys):
    assert main(["--target", "loihi2", "--method", "magnitude", "--quiet",
                 "-o", str(tmp_path / ("o" * 5000))]) == 2
    assert "internal error" not in capsys.readouterr().err


@pytest.mark.parametrize("name", ["..", "/etc", "a/b", ".", ""])
def test_subfolder_refuses_names_that_leave_the_folder(tmp_path, name):
    with pytest.raises(PathError):
        subfolder(tmp_path, name)


def test_subfolder_refuses_a_link_that_leads_out(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "escape").symlink_to(tmp_path)
    with pytest.raises(PathError):
        subfolder(tmp_path / "root", "escape")
    assert subfolder(tmp_path / "root", "chip") == tmp_path / "root" / "chip"


def test_every_write_inside_a_run_is_checked_to_stay_inside(tmp_path):
    stage = tmp_path / "stage"
    stage.mkdir()
    with confined_to(stage):
        check_writable(stage / "report.md")  # inside: fine
        for outside in (tmp_path / "x.md", stage / ".." / "x.md", Path("/tmp/x.md")):
            with pytest.raises(PathError):
                write_text_atomic(outside, "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage"]
    write_text_atomic(tmp_path / "free.md", "x")  # outside a run: no confinement


def test_a_staged_run_cannot_write_beside_its_set(tmp_path):
    from sbc_deploy.exporters import EXPORTERS
    from sbc_deploy.bundled import load_bundled_model

    graph = load_bundled_model("nmnist_mlp")
    with pytest.raises(PathError):
        with staged_output(tmp_path / "out", Manifest()) as stage:
            EXPORTERS["nir"](graph, stage / ".." / "model.nir", steps=1)
    assert list(tmp_path.iterdir()) == []


def _set(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    with staged_output(out, Manifest()) as stage:
        (stage / "report.md").write_text("r")
        (stage / "generic").mkdir()
        (stage / "generic" / "model.nir").write_bytes(b"n")
    assert verify_set(out) == []
    return out


@pytest.mark.parametrize("extra", ["file", "empty_dir", "dir_link", "file_link", "fifo",
                                   "manifest_escape"])
def test_verification_fails_on_anything_the_manifest_does_not_expect(tmp_path, extra):
    out = _set(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    if extra == "file":
        (out / "generic" / "stray.txt").write_text("x")
    elif extra == "empty_dir":
        (out / "loihi2").mkdir()
    elif extra == "dir_link":
        (out / "up").symlink_to(tmp_path / "elsewhere")
    elif extra == "file_link":
        (out / "generic" / "model.nir").unlink()
        (out / "generic" / "model.nir").symlink_to(tmp_path / "elsewhere")
    elif extra == "fifo":
        os.mkfifo(out / "pipe")
    elif extra == "manifest_escape":
        manifest = json.loads((out / MANIFEST).read_text())
        manifest["outputs"]["../elsewhere/x"] = "0" * 64
        (out / MANIFEST).write_text(json.dumps(manifest))
    problems = verify_set(out)
    assert problems, extra
