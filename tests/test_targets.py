"""Target files: every bundled target loads, every value carries a source, the schema is strict."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from sbc_deploy.errors import TargetError
from sbc_deploy.ir import NEURON_TYPES, NODE_TYPES
from sbc_deploy.targets import (
    EVIDENCE,
    RULE_NAMES,
    SCHEMA,
    Target,
    format_targets,
    list_targets,
    load_target,
    read_target_file,
    target_dirs,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
TARGET_DIR = ROOT / "targets"
SHIPPED = ("akida", "generic", "loihi1", "loihi2", "speck", "xylo")


def _raw(name: str) -> dict:
    with (TARGET_DIR / f"{name}.toml").open("rb") as handle:
        return tomllib.load(handle)


def _write_variant(tmp_path: Path, name: str, edit) -> Path:
    """A copy of a shipped target with ``edit(text) -> text`` applied."""
    text = (TARGET_DIR / f"{name}.toml").read_text()
    changed = edit(text)
    assert changed != text, "the edit did not change the file"
    path = tmp_path / f"{name}_variant.toml"
    path.write_text(changed)
    return path


# --------------------------------------------------------------------------- shipped targets


def test_the_required_targets_are_shipped():
    assert {t.name for t in list_targets()} == set(SHIPPED)
    assert sorted(p.stem for p in TARGET_DIR.glob("*.toml")) == sorted(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_target_loads_by_name(name):
    target = load_target(name)
    assert isinstance(target, Target)
    assert target.name == name
    assert target.path is not None and target.path.name == f"{name}.toml"
    assert set(target.rules) <= set(RULE_NAMES)
    assert target.weights.bits >= 1


@pytest.mark.parametrize("name", SHIPPED)
def test_every_value_has_a_source_and_an_evidence_grade(name):
    """Read the TOML independently of the loader: each hardware value is a table with a
    non-empty source and a known evidence grade, and the loader exposes the same provenance."""
    raw = _raw(name)
    target = load_target(name)
    count = 0
    for section, keys in SCHEMA.items():
        assert set(raw[section]) == set(keys), f"{name} [{section}] keys differ from the schema"
        for key, entry in raw[section].items():
            assert {"value", "source", "evidence"} <= set(entry) <= {
                "value", "source", "evidence", "borrowed_from"}, f"{name} {section}.{key}"
            # a figure borrowed from another chip says so in its source too (issue 20)
            if "borrowed_from" in entry:
                assert entry["borrowed_from"] in SHIPPED and entry["borrowed_from"] != name
                assert "borrowed" in entry["source"].lower() or "stand" in entry["source"]
                assert target.source(f"{section}.{key}").borrowed_from == entry["borrowed_from"]
            assert isinstance(entry["source"], str) and re.search("[a-z]{2}", entry["source"])
            assert entry["evidence"] in EVIDENCE
            provenance = target.source(f"{section}.{key}")
            assert provenance.source == entry["source"].strip()
            assert provenance.evidence == entry["evidence"]
            count += 1
    assert count == sum(len(keys) for keys in SCHEMA.values())


def test_estimates_are_labelled_where_no_public_number_exists():
    loihi1, loihi2 = load_target("loihi1"), load_target("loihi2")
    # Loihi 1 per-op energies come from Davies 2018 Table 2 through a transcription: secondary
    for key in ("synop_pj", "neuron_update_pj", "spike_routed_pj"):
        assert loihi1.source(f"energy.{key}").evidence == "secondary"
        assert "Davies 2018" in loihi1.source(f"energy.{key}").source
    assert loihi1.energy.synop_pj == 23.6 and loihi1.energy.neuron_update_pj == 81.0
    # Loihi 2 has no public per-op energy and a secondary-only memory size: estimates
    for key in ("synop_pj", "neuron_update_pj", "spike_routed_pj", "core_step_pj"):
        assert loihi2.is_estimate(f"energy.{key}")
    assert loihi2.is_estimate("cores.synapse_memory_bits")
    assert loihi2.source("cores.neurons_per_core").evidence == "secondary"


def test_loihi_numbers_match_nengo_loihi_and_lava():
    """The constants ecosystem.md 3.1 quotes from nengo-loihi block.py and the lava LIF model."""
    t = load_target("loihi1")
    assert t.cores.neurons_per_core == 1024  # MAX_COMPARTMENTS
    assert t.cores.synapse_memory_bits == 16384 * 64  # MAX_SYNAPSE_BITS
    assert t.cores.max_in_axons == t.cores.max_out_axons == 4096
    assert t.cores.cores == 128
    assert t.max_fan_in is None  # limited per core, not per neuron
    assert "per core" in t.source("limits.max_fan_in").source
    # netx weights are even integers in [-256, 254]: an 8-bit mantissa times 2**(1 + weight_exp)
    assert (t.weights.bits, t.weights.signed, t.weights.grid) == (8, True, "int_exp")
    assert t.neurons.threshold_range == (0, 2**17 - 1) and t.neurons.threshold_bits == 17
    assert t.neurons.bias_bits == 13 + 7  # 13-bit signed mantissa << up to 7
    assert load_target("xylo").neurons.threshold_bits == 16  # int16
    assert load_target("generic").neurons.threshold_bits is None
    assert (t.neurons.decay_bits, t.neurons.state_bits) == (12, 24)
    assert t.limits.max_delay == 62
    assert t.memory_budget_bits == 128 * 16384 * 64
    assert load_target("loihi2").cores.neurons_per_core == 2**20 // 128


def test_kind_lists_use_ir_kind_names():
    node_kinds = {t.kind for t in NODE_TYPES}
    neuron_kinds = {t.kind for t in NEURON_TYPES}
    generic = load_target("generic")
    assert set(generic.node_kinds) == node_kinds
    assert set(generic.neuron_kinds) == neuron_kinds
    for target in list_targets():
        assert set(target.node_kinds) <= node_kinds
        assert set(target.neuron_kinds) <= set(target.node_kinds)


def test_netx_targets_export_netx_and_others_do_not():
    for target in list_targets():
        assert ("netx" in target.export_formats) == target.name.startswith("loihi")
        assert "nir" in target.export_formats


def test_format_targets_lists_every_target():
    text = format_targets(list_targets())
    for name in SHIPPED:
        assert re.search(rf"^{name}\s", text, re.MULTILINE)
    assert "1024" in text and "8192" in text


# --------------------------------------------------------------------------- lookup


def test_load_by_path_equals_load_by_name(tmp_path, monkeypatch):
    copy = tmp_path / "mychip.toml"
    shutil.copy(TARGET_DIR / "loihi2.toml", copy)
    monkeypatch.chdir(tmp_path)
    for spec in ("./mychip.toml", "mychip.toml", copy, str(copy)):
        target = load_target(spec)
        assert target.name == "loihi2" and target.path is not None
        assert target.cores == load_target("loihi2").cores
        assert target.energy == load_target("loihi2").energy


def test_unknown_name_lists_known_targets_and_suggests():
    with pytest.raises(TargetError) as err:
        load_target("loihi")
    text = str(err.value)
    assert "unknown target 'loihi'" in text
    for name in SHIPPED:
        assert name in text
    assert "did you mean 'loihi1' or 'loihi2'?" in text


def test_missing_file_is_a_target_error(tmp_path):
    with pytest.raises(TargetError, match="does not exist"):
        load_target(tmp_path / "nope.toml")


def test_bundled_lookup_includes_the_source_tree():
    assert TARGET_DIR.resolve() in target_dirs() or any(
        (d / "loihi1.toml").is_file() for d in target_dirs())


def test_wheel_ships_the_targets_and_they_load(tmp_path):
    """Build the wheel and load every target from its sbc_deploy/_targets copy."""
    pytest.importorskip("hatchling")
    command = [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d",
               str(tmp_path / "dist")]
    build = subprocess.run(command, check=False, cwd=ROOT, capture_output=True, text=True,
                           timeout=120)
    assert build.returncode == 0, build.stderr
    wheel, = (tmp_path / "dist").glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.startswith("sbc_deploy/_targets/")]
        archive.extractall(tmp_path / "unpacked", members=names)
    shipped = sorted(Path(n).stem for n in names if n.endswith(".toml"))
    assert shipped == sorted(SHIPPED)
    for stem in shipped:
        packaged = read_target_file(tmp_path / "unpacked" / "sbc_deploy" / "_targets"
                                    / f"{stem}.toml")
        assert packaged.cores == load_target(stem).cores


# --------------------------------------------------------------------------- strict schema


def test_misspelt_key_fails_with_a_suggestion(tmp_path):
    path = _write_variant(tmp_path, "loihi2",
                          lambda t: t.replace("[limits.max_fan_in]", "[limits.max_fanin]"))
    with pytest.raises(TargetError) as err:
        load_target(path)
    assert (f"unknown key 'max_fanin' in [limits] of {path.name}; did you mean 'max_fan_in'?"
            in str(err.value))


def test_misspelt_section_and_entry_keys_fail_with_suggestions(tmp_path):
    path = _write_variant(tmp_path, "loihi1", lambda t: t.replace("[energy.synop_pj]",
                                                                  "[enregy.synop_pj]", 1))
    with pytest.raises(TargetError, match="unknown key 'enregy' in the top level.*did you mean "
                                          "'energy'"):
        load_target(path)
    path = _write_variant(tmp_path, "loihi1", lambda t: t.replace(
        'value = 23.6\nevidence', 'value = 23.6\nevidance', 1))
    with pytest.raises(TargetError, match="did you mean 'evidence'"):
        load_target(path)


def test_number_without_source_fails(tmp_path):
    def bare(text: str) -> str:
        block = re.search(r"\[limits\.max_delay\]\nvalue = 62\n.*?\n.*?\n", text).group(0)
        return text.replace(block, "")
    data = tomllib.loads(bare((TARGET_DIR / "loihi1.toml").read_text()))
    data["limits"]["max_delay"] = 62  # the bare number, no provenance table
    from sbc_deploy.targets import parse_target
    with pytest.raises(TargetError, match="every value carries its source"):
        parse_target(data, "loihi1.toml")
    path = _write_variant(tmp_path, "loihi1", lambda t: re.sub(
        r'(\[limits\.max_delay\]\nvalue = 62\nevidence = "verified"\n)source = ".*?"\n', r"\1",
        t))
    with pytest.raises(TargetError, match="has no 'source'"):
        load_target(path)


def test_missing_key_wrong_type_and_unknown_kinds_fail(tmp_path):
    path = _write_variant(tmp_path, "xylo", lambda t: t.replace("value = 496", 'value = "496"'))
    with pytest.raises(TargetError, match="neurons_per_core: must be an integer"):
        load_target(path)
    path = _write_variant(tmp_path, "xylo", lambda t: t.replace('"CubaLIF"]', '"CubaLif"]', 1))
    with pytest.raises(TargetError, match="did you mean 'CubaLIF'"):
        load_target(path)
    path = _write_variant(tmp_path, "xylo", lambda t: t.replace('"io_channels"', '"io_channel"'))
    with pytest.raises(TargetError, match="did you mean 'io_channels'"):
        load_target(path)
    path = _write_variant(tmp_path, "xylo", lambda t: t.replace('value = "bitshift"',
                                                                'value = "bitshfit"'))
    with pytest.raises(TargetError, match="did you mean 'bitshift'"):
        load_target(path)
    raw = _raw("speck")
    del raw["cores"]["index_bits"]
    from sbc_deploy.targets import parse_target
    with pytest.raises(TargetError, match=r"\[cores\] lacks 'index_bits'"):
        parse_target(raw, "speck.toml")


def test_inconsistent_values_fail(tmp_path):
    path = _write_variant(tmp_path, "loihi1", lambda t: t.replace("value = [-6, 8]",
                                                                  'value = "none"'))
    with pytest.raises(TargetError, match="exp_range is required with grid 'int_exp'"):
        load_target(path)
    path = _write_variant(tmp_path, "speck", lambda t: t.replace(
        "value = [65536, 65536, 65536, 32768, 32768, 16384, 16384, 16384, 16384]",
        "value = [65536, 65536]"))
    with pytest.raises(TargetError, match="lists 2 values for 9 cores"):
        load_target(path)


def test_target_values_are_frozen():
    target = load_target("generic")
    with pytest.raises(dataclasses.FrozenInstanceError):
        target.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        target.provenance["energy.synop_pj"] = None  # type: ignore[index]
