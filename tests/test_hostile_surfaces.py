"""Hostile names on the newer input surfaces (issue 21 follow-up): torch module paths
(``FILE.py:FACTORY``), event-dataset folders and files (tonic layouts), ``--from
NAME:OPTION=VALUE`` values, the ``simulate`` subcommand and the chip/host split's reasons.

Each route runs the CLI in-process and checks what reaches the terminal: no control character
but newlines (tests/test_hostile_names.py's ``_safe_text``), no line a name forged (a line
starting ``loihi2: fits``), and the hostile text present in its neutralised form
(:func:`sbc_deploy.untrusted.shown`), never raw. Cost: ~15 s (two small torch factories, a few
tiny event files, one 6-sample simulation).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest

from sbc_deploy.cli import main
from sbc_deploy.untrusted import shown
from tests.test_hostile_names import (
    MARKERS,
    NEURON,
    SCALE,
    SYNAPSE,
    _leaks,
    _safe_text,
    _split_graph_file,
)

FORGED = "v\x1b[2J\x1b[H\nloihi2: fits <b>|`x`"


def _terminal(capsys: pytest.CaptureFixture, argv: list[str]) -> tuple[int, str]:
    """Exit code and everything the CLI wrote (stdout, stderr and its log lines)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logging.getLogger().addHandler(handler)
    try:
        code = main(argv)
    finally:
        logging.getLogger().removeHandler(handler)
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def _assert_neutral(text: str, *hostile: str) -> None:
    assert _safe_text(text), text
    assert not any(line.startswith("loihi2: fits") for line in text.splitlines()), text
    for name in hostile:
        assert name not in text
        assert shown(name) in text, (shown(name), text)


# --------------------------------------------------------------------------- torch modules

FACTORY = '''
from torch import nn
from spikingjelly.activation_based import layer, neuron

FC = "fc\\x1b[2J\\nloihi2: fits<script>"
SN = "sn\\x1b]0;T\\x07|`x`"


def build():
    net = nn.Sequential()
    net.add_module(FC, layer.Linear(8, 4, bias=False, step_mode="m"))
    net.add_module(SN, neuron.LIFNode(step_mode="m"))
    return net


def bad():
    net = nn.Sequential()
    net.add_module(FC, nn.Linear(8, 4))
    net.add_module(SN, nn.PReLU())
    return net


def broken():
    raise RuntimeError("cannot\\x1b[2J\\nloihi2: fits")
'''
FC, SN = "fc\x1b[2J\nloihi2: fits<script>", "sn\x1b]0;T\x07|`x`"


def test_torch_add_module_takes_control_characters_but_not_dots() -> None:
    """Why module paths are hostile: torch refuses only '.', '' and existing attributes."""
    torch = pytest.importorskip("torch")
    net = torch.nn.Sequential()
    net.add_module(FC, torch.nn.Identity())
    assert FC in dict(net.named_children())
    with pytest.raises(KeyError):
        net.add_module("a.b", torch.nn.Identity())


def test_torch_module_paths_become_plain_node_names_and_show_neutralised(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("spikingjelly")
    import torch

    factory = tmp_path / "net.py"
    factory.write_text(FACTORY)
    spec = f"{factory}:build"
    # the graph: node names from the module paths hold no trace of the escapes
    for argv in (["inspect", spec, "--input-shape", "8"],
                 ["check", spec, "--input-shape", "8", "--target", "loihi2,xylo"]):
        code, text = _terminal(capsys, argv)
        assert code in (0, 1), text
        assert _safe_text(text) and "fc__2J_loihi2__fits_script_" in text
        assert "\\x1b" not in text and "<script>" not in text
        assert sum(line.startswith("loihi2:") for line in text.splitlines()) <= 1
    # a module the importer refuses: the error names its path, neutralised
    code, text = _terminal(capsys, ["inspect", f"{factory}:bad", "--input-shape", "8"])
    assert code == 2 and "(PReLU)" in text
    _assert_neutral(text, SN)
    # the factory's own exception text, and a factory name that is itself hostile
    code, text = _terminal(capsys, ["inspect", f"{factory}:broken", "--input-shape", "8"])
    assert code == 2 and "RuntimeError" in text
    _assert_neutral(text, "cannot\x1b[2J\nloihi2: fits")
    code, text = _terminal(capsys, ["inspect", f"{factory}:{FORGED}", "--input-shape", "8"])
    assert code == 2
    _assert_neutral(text, FORGED)
    # --weights whose keys are hostile: every mismatch listed, each key neutralised
    module_keys = {"fc\x1b[2J\nloihi2: fits<script>.weight": torch.zeros(2, 2),
                   f"{FORGED}.weight": torch.zeros(4, 8)}
    ckpt = tmp_path / "w.pth"
    torch.save(module_keys, ckpt)
    code, text = _terminal(capsys, ["inspect", spec, "--weights", str(ckpt),
                                    "--input-shape", "8"])
    assert code == 2 and "mis-shaped" in text and "unexpected" in text
    _assert_neutral(text, FC, FORGED)


# --------------------------------------------------------------------------- event datasets


def test_event_dataset_folders_and_options_show_neutralised(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("tonic")
    from tests.test_data_tonic import gesture_tree, nmnist_tree

    # a DVS Gesture user folder (any name after user<NN>_) holding a truncated recording
    user = "user01_\x1b[2J\x1b]0;T\x07<b>|`x`"
    (cut,) = gesture_tree(tmp_path / "g", users=(user,), labels=(3,))
    cut.write_bytes(cut.read_bytes()[:-40])
    run = ["--target", "loihi2", "--eval-limit", "5", "-o", str(tmp_path / "out"), "--quiet"]
    code, text = _terminal(capsys, ["--calib", f"dvsgesture:{tmp_path / 'g'}", *run])
    assert code == 2 and "is truncated" in text, text
    _assert_neutral(text, str(cut))
    # a dataset folder whose name forges a line, with a bad option and a bad value
    root = tmp_path / FORGED
    nmnist_tree(root, per_class={0: 1})
    for option, said in ((f"window={FORGED}", "is not a duration"),
                         (f"x{FORGED}=1", "unknown option")):
        code, text = _terminal(capsys, ["--calib", f"nmnist:{root},{option}", *run])
        assert code == 2 and said in text, text
        assert _safe_text(text) and FORGED not in text and shown(str(root)) in text
        assert not any(line.startswith("loihi2: fits") for line in text.splitlines())
    # a file inside a dataset folder that is not a recording of it
    stray = root / "NMNIST" / "Test" / "0" / f"{FORGED}.bin"
    stray.write_bytes(b"\x00" * 7)
    code, text = _terminal(capsys, ["--calib", f"nmnist:{root}", *run])
    assert code == 2 and "not a multiple of 5" in text, text
    _assert_neutral(text, str(stray))
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- --from, simulate


def test_from_option_names_and_values_show_neutralised(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    model = _split_graph_file(tmp_path / "m.nir")
    for source in (f"norse:{FORGED}=1", f"rockpool:max_spikes_per_dt={FORGED}",
                   f"sinabs:{FORGED}", f"{FORGED.replace(':', '')}"):
        code, text = _terminal(capsys, ["inspect", str(model), "--from", source])
        assert code == 2, text
        assert _safe_text(text) and "\x1b" not in text
        assert not any(line.startswith("loihi2: fits") for line in text.splitlines()), text
        assert "--from" in text


def test_simulate_and_the_split_show_node_names_neutralised(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture
                                                            ) -> None:
    from sbc_deploy.data import Dataset
    from sbc_deploy.data.npz import write_npz

    model = _split_graph_file(tmp_path / "m.nir")
    rng = np.random.default_rng(0)
    x = (rng.random((6, 5, 4)) < 0.8).astype(np.uint8)
    data = write_npz(tmp_path / "d.npz", Dataset(x=x, y=np.zeros(6, np.int64), dt=1e-3,
                                                      source="generated"))
    names = (SYNAPSE, NEURON, SCALE)
    code, text = _terminal(capsys, ["simulate", str(model), str(data), "--layers", "--verbose",
                                    "-o", str(tmp_path / "s.npz")])
    assert code == 0 and "layer_0" in text, text
    assert _safe_text(text) and _leaks(text, [shown(n) for n in names]) == []
    # the integer core refuses the scale before the synapse, naming it
    code, text = _terminal(capsys, ["simulate", str(model), str(data), "--integer",
                                    "-o", str(tmp_path / "s2.npz")])
    assert code == 2 and shown(SCALE) in text, text
    assert _safe_text(text) and _leaks(text, [shown(n) for n in names]) == []
    # check on five targets: xylo runs the scale on the host (the split's reason), the others
    # judge every layer; every line that names a node shows it neutralised
    code, text = _terminal(capsys, ["check", str(model), "--target",
                                    "loihi2,xylo,speck,akida,generic"])
    assert code == 1, text
    assert _safe_text(text) and any(m in text for m in MARKERS)
    assert _leaks(text, [shown(n) for n in names]) == []
    assert sum(line.startswith("loihi2:") for line in text.splitlines()) == 1
