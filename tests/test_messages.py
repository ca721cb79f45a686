"""The first-run messages of issue 20: each defect a new user met, and what they see now.

Each test failed before its fix (the defect is quoted in its docstring). They run the CLI's
validation and message paths only (no calibration or compression): ~10 s in all.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import numpy as np
import pytest

from sbc_deploy.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_sparsity_beyond_the_layers_maxima_is_refused_with_the_largest_that_works(
        tmp_path, capsys, no_stage):
    """Was: ``--sparsity 0.99`` passed validation and failed after calibration, in the
    allocation, naming ``max_sparsity`` (a setting the CLI does not have)."""
    from sbc_deploy.bundled import load_bundled_model
    from sbc_deploy.pipeline import DeployRequest
    from sbc_deploy.validate import validate_request

    assert main(["--target", "loihi2", "--sparsity", "0.99", "--quiet",
                 "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "max_sparsity" not in err and "before any work" in err
    largest = float(re.search(r"largest --sparsity that works is ([\d.]+)", err).group(1))
    # independently: each layer keeps at least 1 % (floor(0.99 n) removable); LAMP takes
    # round(s N) synapses in all, so s works while round(s N) <= sum floor(0.99 n_l)
    sizes = [layer.synapse.weight.size for layer in load_bundled_model("nmnist_mlp")
             .synapse_layers()]
    removable, total = sum(math.floor(0.99 * n) for n in sizes), sum(sizes)
    assert round(largest * total) <= removable < round((largest + 1e-4) * total)
    assert f"{removable:,} removed" in err and f"{total:,} synapses" in err
    # the value it names passes validation (nothing else is in the way)
    plan = validate_request(DeployRequest(targets=("loihi2",), sparsity=largest,
                                          out_dir=str(tmp_path / "never")))
    assert plan.targets[0].name == "loihi2"
    # uniform allocation: the layer that cannot take it is named
    assert main(["--target", "loihi2", "--sparsity", "0.995", "--allocation", "uniform",
                 "--quiet", "-o", str(tmp_path / "out")]) == 2
    assert "layer 'linear1'" in capsys.readouterr().err


def test_misspelt_flags_get_a_suggestion(capsys):
    """Was: ``--sparsty`` got 'unrecognized arguments' and nothing else."""
    assert main(["--target", "loihi2", "--sparsty", "0.5"]) == 2
    assert "--sparsty: did you mean --sparsity?" in capsys.readouterr().err
    assert main(["check", "nmnist_mlp", "--target", "loihi2", "--reprot"]) == 2
    assert "--reprot: did you mean --report?" in capsys.readouterr().err
    assert main(["--target", "loihi2", "--zzzzzz"]) == 2  # nothing close: no guess
    assert "did you mean" not in capsys.readouterr().err


def test_target_names_ignore_case(capsys):
    """Was: ``--target Loihi2`` was refused as an unknown target."""
    from sbc_deploy.targets import load_target

    assert load_target("Loihi2").name == "loihi2" and load_target("XYLO").name == "xylo"
    assert main(["check", "nmnist_mlp", "--target", "LOIHI1"]) in (0, 1)
    assert capsys.readouterr().out.startswith("loihi1:")


def test_a_text_file_as_data_says_what_it_is_not_numpys_pickle_advice(tmp_path, capsys,
                                                                      no_stage):
    """Was: ``--calib README.md`` printed numpy's 'allow_pickle' advice."""
    assert main(["--target", "loihi2", "--calib", str(ROOT / "README.md"), "--quiet",
                 "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "pickle" not in err
    assert "README.md: is not a readable .npz archive: the file is text" in err
    assert ".npz with x [N, T, *input]" in err  # what DATA should be


def test_violation_remedies_name_commands_that_exist():
    """Was: a float network on Loihi said 'compress with --target loihi2' (no such
    subcommand); akida said '(supported: none)'; speck listed its one neuron kind."""
    from sbc_deploy.bundled import load_bundled_model
    from sbc_deploy.check import check
    from sbc_deploy.cli import deploy_parser

    graph = load_bundled_model("nmnist_mlp")
    messages = {t: [v.message for v in check(graph, t).violations]
                for t in ("loihi2", "akida", "speck")}
    grid = [m for m in messages["loihi2"] if "float weights" in m]
    assert grid and all("sbc-deploy MODEL --target loihi2" in m for m in grid)
    assert not any("compress with" in m for ms in messages.values() for m in ms)
    # the command the remedy names parses (MODEL and --target are the deploy command's)
    deploy_parser().parse_args(["model.nir", "--target", "loihi2"])
    assert any("akida runs no spiking neuron model" in m for m in messages["akida"])
    assert not any("supported: none" in m for m in messages["akida"])
    assert any("speck cannot run LIF neurons: speck runs IF neurons only" in m
               for m in messages["speck"])


def test_the_time_step_hints_agree():
    """Was: the silent-layer hint said 'snntorch counts time in steps: try --dt 1' while the
    missing-dt message said 1e-4 for snntorch exports. Both are half right: snntorch's LIF
    time constants assume 1e-4 s, its IF neurons (r = 1) add their input once per step. Both
    messages now say both, from the one conventions table, and each half is checked on a real
    snntorch export below."""
    from conftest import fixture_path

    import sbc_deploy as sd
    from sbc_deploy.bundled import load_bundled_data
    from sbc_deploy.errors import ConfigError
    from sbc_deploy.frontends.conventions import CONVENTIONS
    from sbc_deploy.frontends.from_nir import _resolve_dt
    from sbc_deploy.guards import Activity, dense_findings, measure_activity

    silent = Activity(rate={"lif1": 0.0}, silent_neurons={"lif1": 1.0}, samples=8,
                      source="evaluation")
    (finding,) = dense_findings(silent, None, dt=1e-3, n_classes=None)
    with pytest.raises(ConfigError) as missing:
        _resolve_dt({}, None, "model.nir")
    for hint in (finding.hint, missing.value.hint):
        lif = float(re.search(r"snntorch LIF time constants assume dt = ([\d.e-]+) s",
                              hint).group(1))
        assert lif == CONVENTIONS["snntorch"].producer.dt == 1e-4
        assert re.search(r"an IF neuron adds r times its input once per step in [a-z, ]*"
                         r"snntorch[a-z, ]* \(--from NAME; spec NIR adds dt r: --dt 1\)", hint)
        assert "--from FRAMEWORK" in hint
    assert "snntorch counts time in steps" not in finding.hint
    # the IF half on the scnn_mnist fixture (IF, r = 1): as spec NIR silent at 1e-4 s and alive
    # at 1; --from snntorch adds the input once per step whatever dt
    model = fixture_path("nir", "scnn_mnist_snntorch.nir")
    x = np.asarray(load_bundled_data("eval").x[:8])
    rates = {dt: measure_activity(sd.load(model, dt=dt, reset="subtract"), x,
                                  "evaluation").rate for dt in (1e-4, 1.0)}
    assert max(rates[1e-4].values()) == 0.0 and min(rates[1.0].values()) > 0.01
    snntorch = measure_activity(sd.load(model, source="snntorch"), x, "evaluation").rate
    assert min(snntorch.values()) > 0.01


def test_help_says_where_the_integer_core_runs(capsys):
    """Was: --help said the integer core runs on the CPU; it runs on --device (README)."""
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(the integer core runs on the CPU)" not in text
    assert "the float simulator and the integer core: cpu (default), cuda, cuda:N" in text
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "the float simulator and the integer core on a GPU" in readme


def test_repeated_warnings_are_one_line_with_a_count_and_the_worst_case(monkeypatch, capsys):
    """Was: one CSNN run printed 32,686 lines of 'bias / unit = ... is not a whole number;
    rounded to ...' (66 distinct)."""
    import sbc_deploy.cli as cli
    from sbc_deploy.exporters.to_netx import _rounded

    def noisy(args):
        values = np.linspace(10.1, 30.4, 66)  # 66 distinct values, 0.3..0.5 off the grid
        for i in range(3000):
            _rounded(float(values[i % 66]), "bias / unit", f"layer conv{i % 3}")
        logging.getLogger("sbc_deploy.other").warning("a different warning")
        return 0

    monkeypatch.setattr(cli, "_run_targets", noisy)
    assert main(["targets"]) == 0
    lines = capsys.readouterr().err.splitlines()
    rounding = [line for line in lines if "not a whole number" in line]
    assert len(rounding) == 2, lines[:5]  # the first one, and the summary at the end
    # independently: the export warns where rounding moves the value by more than 1 %
    values = np.linspace(10.1, 30.4, 66)
    deviation = np.abs(values - np.rint(values)) / values
    warned = [i for i in range(3000) if deviation[i % 66] > 0.01]
    distinct = {(i % 66, i % 3) for i in warned}
    summary = rounding[1]
    assert f"{len(warned):,} messages like" in summary
    assert f"({len(distinct):,} distinct)" in summary
    worst = values[np.argmax(deviation)]  # the largest relative change
    assert summary.endswith(f"bias / unit = {worst:.6g} is not a whole number; rounded to "
                            f"{int(np.rint(worst))}")
    assert sum("a different warning" in line for line in lines) == 1
    assert len(lines) == 3
