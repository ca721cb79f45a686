"""Fuzz every reader through the CLI: damaged NIR, netx, npz, N-MNIST .bin and target TOML files.

Each corrupted variant (truncation, byte flips, inserted junk) goes through ``main()`` in this
process (hundreds of variants in ~a minute); a few go through a real ``sbc-deploy`` subprocess.
Whatever the bytes, a run ends in exit 0 (the reader accepted a file that is still valid: a
flipped weight is still a weight) or exit 2 with a message that names the file; never a
traceback, never exit 1 or 3, never a hang, and never an output folder. Hand-made files cover
what random bytes rarely reach: HDF5 external links, object references and virtual datasets
pointing outside the file (never followed), absurd declared shapes, NaN/inf, wrong types.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, fixture_path
from sbc_deploy.cli import main

FUZZ = settings(max_examples=100, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TIME_BOUND_S = 20.0  # per variant: a reader that loops on a damaged file fails the test

MLP = ROOT / "sbc_deploy" / "bundled" / "nmnist_mlp.nir"


@st.composite
def damage(draw, original: bytes) -> bytes:
    """Truncate, flip bytes (biased to the header, where the structure lives) or insert junk."""
    data = bytearray(original)
    n = len(data)
    kind = draw(st.sampled_from(["truncate", "flip", "flip", "insert"]))
    position = st.one_of(st.integers(0, min(4095, n - 1)), st.integers(0, n - 1))
    if kind == "truncate":
        return bytes(data[:draw(st.integers(0, n - 1))])
    if kind == "flip":
        for _ in range(draw(st.integers(1, 8))):
            data[draw(position)] ^= draw(st.integers(1, 255))
        return bytes(data)
    at = draw(position)
    return bytes(data[:at]) + draw(st.binary(min_size=1, max_size=64)) + bytes(data[at:])


def _run(argv: list[str]) -> tuple[int, str, float]:
    err = io.StringIO()
    start = time.monotonic()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, err.getvalue(), time.monotonic() - start


def _assert_clean(code: int, err: str, seconds: float, path: Path | None,
                  out: Path | None = None, allowed: tuple[int, ...] = (0, 2)) -> None:
    assert code in allowed, (code, err)
    assert "Traceback" not in err and "internal error" not in err, err
    if code == 2 and path is not None:
        assert str(path) in err or path.name in err, err  # the message names the file
    assert seconds < TIME_BOUND_S
    if out is not None:
        assert not out.exists()
        assert not [p for p in out.parent.iterdir() if ".sbc-staging-" in p.name]


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


@contextlib.contextmanager
def _folder():
    folder = Path(tempfile.mkdtemp(prefix="sbc-fuzz-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- models


def _model_fuzz(source: Path, name: str):
    original = source.read_bytes()

    @FUZZ
    @given(damage(original))
    def run(data: bytes) -> None:
        with _folder() as folder:
            path = _write(folder, name, data)
            code, err, seconds = _run(["inspect", str(path), "--dt", "1e-3", "--reset", "zero"])
            _assert_clean(code, err, seconds, path)

    run()


def test_fuzz_nir():
    _model_fuzz(fixture_path("nir", "lif_norse.nir"), "lif.nir")
    _model_fuzz(fixture_path("nir", "braille_noDelay_bias_zero.nir"), "braille.nir")


def test_fuzz_netx():
    original = fixture_path("netx", "tinynet", "tiny.net").read_bytes()

    @FUZZ
    @given(damage(original))
    def run(data: bytes) -> None:
        with _folder() as folder:
            path = _write(folder, "tiny.net", data)
            code, err, seconds = _run(["inspect", str(path)])
            _assert_clean(code, err, seconds, path)

    run()


# --------------------------------------------------------------------------- data and targets


@pytest.fixture(scope="module")
def small_npz(tmp_path_factory) -> bytes:
    from sbc_deploy.bundled import load_bundled_data
    from sbc_deploy.data.npz import write_npz

    data = load_bundled_data("calib").subset(slice(0, 3))
    path = tmp_path_factory.mktemp("npz") / "small.npz"
    write_npz(path, data.with_steps(4) if hasattr(data, "with_steps") else data)
    return path.read_bytes()


def _data_argv(data: Path, out: Path) -> list[str]:
    # '--export pdf' makes validation fail after reading everything: the run stops there (exit
    # 2) whether or not the data was readable, and the message says which problems it found
    return [str(MLP), "--target", "loihi2", "--method", "magnitude", "--eval", str(data),
            "--export", "pdf", "--quiet", "-o", str(out)]


def test_fuzz_npz(small_npz):
    @FUZZ
    @given(damage(small_npz))
    def run(data: bytes) -> None:
        with _folder() as folder:
            path = _write(folder, "eval.npz", data)
            out = folder / "out"
            code, err, seconds = _run(_data_argv(path, out))
            assert code == 2 and "unknown format 'pdf'" in err
            if "1 problem before" not in err:  # the data was refused too: the message names it
                assert str(path) in err
            _assert_clean(code, err, seconds, None, out)

    run()


def test_fuzz_nmnist_bin():
    original = fixture_path("events", "sample_nmnist.bin").read_bytes()

    @FUZZ
    @given(damage(original))
    def run(data: bytes) -> None:
        with _folder() as folder:
            path = _write(folder, "rec.bin", data)
            out = folder / "out"
            code, err, seconds = _run(_data_argv(path, out))
            assert code == 2 and "unknown format 'pdf'" in err
            if len(data) % 5:
                assert str(path) in err and "multiple of 5" in err
            _assert_clean(code, err, seconds, None, out)

    run()


def test_fuzz_target_toml():
    original = (ROOT / "targets" / "loihi2.toml").read_bytes()

    @FUZZ
    @given(damage(original))
    def run(data: bytes) -> None:
        with _folder() as folder:
            path = _write(folder, "chip.toml", data)
            out = folder / "out"
            code, err, seconds = _run(["check", str(MLP), "--target", str(path),
                                       "-o", str(out)])
            if code in (0, 1):  # still a valid target file: the check ran and wrote its set
                assert (out / "report.json").is_file()
                shutil.rmtree(out)
            _assert_clean(code, err, seconds, path, out, allowed=(0, 1, 2))

    run()


# --------------------------------------------------------------------------- hand-made cases


def _nir_with(folder: Path, edit) -> Path:
    path = folder / "edited.nir"
    shutil.copy(fixture_path("nir", "lif_norse.nir"), path)
    with h5py.File(path, "r+") as f:
        edit(f, folder)
    return path


def _external(f, folder):
    outside = folder / "outside.h5"
    with h5py.File(outside, "w") as o:
        o.create_dataset("secret", data=np.arange(3))
    f["node/nodes/lif/ext"] = h5py.ExternalLink(str(outside), "/secret")


def _reference(f, folder):
    f.create_dataset("node/ref", data=f["node"].ref, dtype=h5py.ref_dtype)


def _virtual(f, folder):
    outside = folder / "source.h5"
    with h5py.File(outside, "w") as o:
        o.create_dataset("data", data=np.arange(4.0))
    layout = h5py.VirtualLayout(shape=(4,), dtype="f8")
    layout[:] = h5py.VirtualSource(str(outside), "data", shape=(4,))
    f.create_virtual_dataset("node/virtual", layout)


def _huge(f, folder):
    f.create_dataset("node/huge", shape=(10**7, 10**6), dtype="f8")  # chunked, never allocated


@pytest.mark.parametrize("edit, message", [
    (_external, "external link"), (_reference, "references"), (_virtual, "virtual dataset"),
    (_huge, "more than a model file can hold")])
def test_links_and_references_out_of_the_file_are_refused(tmp_path, capsys, edit, message):
    path = _nir_with(tmp_path, edit)
    assert main(["inspect", str(path), "--dt", "1e-4", "--reset", "zero"]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err and "Traceback" not in err


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.full((2, 3, 2, 34, 34), np.nan), "dt": 0.01}, "NaN or infinite"),
    ({"x": np.full((2, 3, 2, 34, 34), np.inf), "dt": 0.01}, "NaN or infinite"),
    ({"x": np.array([["a", "b"]]), "dt": 0.01}, "must be numeric"),
    ({"x": np.zeros((2, 3, 2, 34, 34)), "y": np.array([0.5, 1.0]), "dt": 0.01}, "integer"),
    ({"x": np.zeros((2, 3, 2, 34, 34)), "dt": "soon"}, "'dt' must be one number"),
    ({"x_packbits": np.zeros(3, np.uint8), "x_shape": np.array([10**9, 10**9]), "dt": 0.01},
     "x_packbits"),
])
def test_wrong_types_and_non_finite_data(tmp_path, capsys, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    out = tmp_path / "out"
    assert main([str(MLP), "--target", "loihi2", "--method", "magnitude", "--eval", str(path),
                 "--quiet", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err and not out.exists()


def test_an_npz_declaring_a_huge_shape_is_not_allocated(tmp_path, capsys):
    """A header that declares 10^12 values over a 10-byte payload is refused before numpy
    allocates the array."""
    import zipfile

    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        member, {"descr": "|u1", "fortran_order": False, "shape": (10**4, 10**4, 10**4)})
    member.write(bytes(10))
    path = tmp_path / "huge.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", member.getvalue())
    code = main([str(MLP), "--target", "loihi2", "--eval", str(path), "--quiet",
                 "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "declares shape (10000, 10000, 10000)" in err and str(path) in err


def test_non_finite_and_wrong_typed_target_values(tmp_path, capsys):
    text = (ROOT / "targets" / "loihi2.toml").read_text()
    for old, new in (("value = 8", "value = nan"), ("value = 8", 'value = "eight"'),
                     ("value = 8", "value = inf"), ("value = 8", "value = [8, [8]]")):
        assert old in text
        path = tmp_path / "bad.toml"
        path.write_text(text.replace(old, new, 1))
        assert main(["check", str(MLP), "--target", str(path)]) == 2
        err = capsys.readouterr().err
        assert "bad.toml" in err and "Traceback" not in err


def test_a_few_damaged_files_through_a_real_subprocess(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    nir_bytes = fixture_path("nir", "lif_norse.nir").read_bytes()
    cases = [
        (_write(tmp_path, "cut.nir", nir_bytes[:3000]), ["inspect"]),
        (_write(tmp_path, "flip.net", bytes(b ^ 0x5A if i in range(0, 2048, 7) else b for i, b
                                            in enumerate(fixture_path("netx", "tinynet",
                                                                  "tiny.net").read_bytes()))),
         ["inspect"]),
        (_write(tmp_path, "chip.toml", b"[weights\nbits = 8"), ["check", str(MLP), "--target"]),
    ]
    for path, argv in cases:
        run = subprocess.run([sys.executable, "-m", "sbc_deploy", *argv, str(path)], env=env,
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 2, run.stderr
        assert str(path) in run.stderr or path.name in run.stderr
        assert "Traceback" not in run.stderr
