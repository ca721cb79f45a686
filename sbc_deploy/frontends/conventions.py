r"""How each framework maps NIR's continuous parameters to its own discrete step, as data.

NIR stores continuous-time neurons (``tau v' = (v_leak - v) + r I``) and no time step, reset
mode or spike rule. Every framework that writes or reads NIR fills that gap its own way. A
:class:`Convention` records one framework's way, once, so that the importer (``--from NAME``)
and the NIR exporter (``--nir-for NAME``) share one description instead of scattered special
cases. The discrete model each framework runs, written in the IR's terms (``v[t] = beta v[t-1]
+ (1 - beta) v_leak + gain x[t]``, ``i[t] = alpha i[t-1] + gain_syn x[t]``), follows from
four facts per direction:

- ``dt``: where the step comes from -- hard-coded (snntorch: 1e-4 s), an importer argument with
  a default (norse 1e-3 s, spyx 1), counted in steps (sinabs, lava-dl: ``tau`` is a number of
  steps), or recovered from ``r`` (rockpool writes ``r = tau exp(-dt/tau) / dt``).
- ``tau``: seconds (the NIR spec), steps, or, for norse 1.1.0's exporter, seconds times dt
  (it writes ``tau = dt / tau_mem_inv``).
- ``decay``: ``euler`` (``beta = 1 - dt/tau``) or ``exact`` (``beta = exp(-dt/tau)``).
- ``gain``: what multiplies the input per step: ``spec`` (NIR's ``r``: Euler ``dt r / tau``,
  exact ``r (1 - beta)``, IF ``dt r``), ``one`` (the input is added as it is; ``r`` is ignored
  or only a label), or ``one_minus_decay`` (``dt / tau``: norse's box cells, ``r`` ignored).

Each fact below cites the file it was read from (repository @ commit : path). Facts a
framework's run must still confirm are listed in :data:`UNCONFIRMED`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Mapping

from sbc_deploy.errors import ConfigError

DtRule = Literal["metadata", "fixed", "argument", "steps", "from_r"]
TauUnit = Literal["seconds", "steps", "seconds_times_dt"]
Decay = Literal["euler", "exact"]
Gain = Literal["spec", "one", "one_minus_decay"]
FlattenDims = Literal["per_sample", "with_batch", "negative"]


@dataclass(frozen=True)
class Side:
    """One direction (a framework writing NIR, or reading it) of a convention.

    Attributes:
        dt_rule: where the step comes from (see the module docstring).
        dt: the step in seconds for ``fixed``/``argument`` (the argument's default), else None;
            for ``steps`` the step is one unit of the user's clock (``--dt`` labels it).
        tau_unit: how ``tau`` is counted.
        decay: Euler or exact decay per step.
        gain: what multiplies the input of a leaky neuron per step.
        syn_gain: the same for the synaptic current of CubaLIF (``spec``: ``w_in (1 - alpha)``;
            ``one``; ``decay``: rockpool adds the input before decaying, ``alpha``).
        if_gain: IF/I: ``spec`` (``dt r``) or ``one`` (the input is added, ``r`` ignored).
        reset: the reset it writes or assumes (None: it takes ``v_reset`` from the file).
        reset_after_decay: the spike of step t resets the membrane at step t+1 after the
            decay, subtracting the undecayed threshold (spyx, snntorch with reset_delay=True);
            the IR resets in the same step.
        multi_spike: ``floor(v / threshold)`` spikes per step (sinabs, rockpool) instead of one.
        fires_at_equal: spikes when ``v >= threshold`` (the IR and NIR: ``v > threshold``).
        reads_v_reset: the importer honours ``v_reset`` (norse's box cells and snntorch don't).
        flatten_dims: how Flatten's dims are counted: per sample (NIR), with a batch axis in
            front (torch ``nn.Flatten`` built from the stored dims), or either if negative.
        flatten_order: ``chw`` (NIR, torch) or ``hwc`` (spyx runs channels-last).
        batch_axis_in_ports: Input/Output types carry a leading batch axis of size 1.
        knows_linear: the importer maps ``nir.Linear`` (sinabs has only Affine).
        knows: NIR node types the importer maps (None: all NIR types).
        nir_layout: the nir release whose file layout it reads (sinabs pins nir <= 1.0.4,
            whose reader rejects ``v_reset`` datasets).
        recurrent: how a recurrent layer is written (a nested NIRGraph's edges).
        v_leak_is_bias: ``v_leak`` is a constant added per step (rockpool maps it to its
            ``bias``), not the NIR leak voltage.
        spike_delay: steps between a threshold crossing and the spike it sends on (spyx: the
            spike of step t is the crossing of step t-1; 1).
    """

    dt_rule: DtRule
    dt: float | None = None
    tau_unit: TauUnit = "seconds"
    decay: Decay = "euler"
    gain: Gain = "spec"
    syn_gain: Literal["spec", "one", "decay"] = "spec"
    if_gain: Literal["spec", "one"] = "spec"
    reset: Literal["zero", "subtract"] | None = None
    reset_after_decay: bool = False
    multi_spike: bool = False
    fires_at_equal: bool = False
    reads_v_reset: bool = True
    flatten_dims: FlattenDims = "per_sample"
    flatten_order: Literal["chw", "hwc"] = "chw"
    batch_axis_in_ports: bool = False
    knows_linear: bool = True
    knows: tuple[str, ...] | None = None
    nir_layout: str = "1.0.8"
    recurrent: str = "cycle (any layout)"
    v_leak_is_bias: bool = False
    spike_delay: int = 0


@dataclass(frozen=True)
class Convention:
    """A framework's NIR convention: how it writes (``producer``) and reads (``consumer``).

    ``sources`` maps each fact to the file it was read from; ``release`` names the release the
    facts describe.
    """

    name: str
    release: str
    producer: Side | None
    consumer: Side | None
    sources: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


_SNN = "jeshraghian/snntorch@634fc223"
_NORSE = "norse/norse@v1.1.0"
_SINABS = "synsense/sinabs@904eb893 (v3.1.3)"
_ROCK = "synsense/rockpool@42cee1c9"
_SPYX = "kmheckel/spyx@v1.0.0"
_NIR = "neuromorphs/NIR@7232ada6"

NIR = Convention(
    name="nir", release="nir 1.0.8 (spec)",
    producer=Side(dt_rule="metadata"), consumer=Side(dt_rule="metadata"),
    sources={"equations": f"{_NIR}:nir/ir/neuron.py (LIF, CubaLIF, IF docstrings)",
             "no dt/reset stored": f"{_NIR}:nir/ir/graph.py"},
    notes=("dt, reset and discretization come from the graph metadata (sbc-deploy writes "
           "them) or from --dt/--reset/--discretization",))

SNNTORCH = Convention(
    name="snntorch", release="snntorch 1.0.0",
    producer=Side(dt_rule="fixed", dt=1e-4, decay="euler", gain="spec", syn_gain="spec",
                  reset="zero", flatten_dims="per_sample",
                  recurrent="nested NIRGraph {input, lif|CubaLIF, w_rec, output}: "
                            "input->lif, lif->w_rec, w_rec->lif, lif->output"),
    consumer=Side(dt_rule="fixed", dt=1e-4, decay="euler", gain="spec", syn_gain="spec",
                  if_gain="one", reset="zero", reads_v_reset=False, flatten_dims="with_batch",
                  knows=("Input", "Output", "Affine", "Linear", "Conv2d", "Flatten",
                         "AvgPool2d", "IF", "LIF", "CubaLIF", "NIRGraph"),
                  recurrent="the same 4-node nested NIRGraph (RLeaky/RSynaptic); it asserts "
                            "r = tau/dt there"),
    sources={
        "dt = 1e-4 hard-coded, tau = dt/(1-beta), r = tau/dt, v_reset = 0":
            f"{_SNN}:snntorch/export_nir.py (_extract_snntorch_module, Leaky/Synaptic)",
        "recurrent nested graph": f"{_SNN}:snntorch/export_nir.py (RLeaky/RSynaptic)",
        "Flatten dims minus one on export": f"{_SNN}:snntorch/export_nir.py (nn.Flatten)",
        "import: dt = 1e-4, beta = 1 - dt/tau, threshold / (r dt/tau), reset zero, "
        "reset_delay=False, v_leak must be 0": f"{_SNN}:snntorch/import_nir.py",
        "import: torch.nn.Flatten(start_dim, end_dim) as stored":
            f"{_SNN}:snntorch/import_nir.py (_nir_to_snntorch_module)",
        "import: IF -> Leaky(beta=0.9), asserts r == 1": f"{_SNN}:snntorch/import_nir.py",
        "Leaky default reset subtract with reset_delay=True":
            f"{_SNN}:snntorch/_neurons/leaky.py (_base_sub, reset_delay)",
        "Synaptic/RLeaky zero reset: mem -= reset * (whole update)":
            f"{_SNN}:snntorch/_neurons/synaptic.py, rleaky.py (_base_zero)",
    },
    notes=("snntorch's own default reset (subtract, applied one step later after the decay) "
           "is not written to NIR: the file says v_reset = 0 and snntorch's importer builds a "
           "zero reset, which is what --from snntorch assumes",
           "with reset_delay=True (snntorch's default) a zero reset of Synaptic, RLeaky and "
           "RSynaptic zeroes the whole update of the step after a spike (its input is lost); "
           "Leaky's does not. The IR's zero reset is snntorch's with reset_delay=False (what its "
           "importer builds)",
           "snntorch 1.0.0 imports IF as Leaky(beta=0.9): --nir-for snntorch writes an IF as a "
           "LIF whose beta = 1 - dt/tau rounds to 1.0",
           "snntorch 1.0.0's import_from_nir with nirtorch 2.6 failed on recurrent subgraphs "
           "when tried ('GraphModule' object has no attribute 'items')"))

NORSE = Convention(
    name="norse", release="norse 1.1.0",
    producer=Side(dt_rule="argument", dt=1e-3, tau_unit="seconds_times_dt", decay="euler",
                  gain="one_minus_decay", syn_gain="one", if_gain="one", reset="zero",
                  batch_axis_in_ports=True),
    consumer=Side(dt_rule="argument", dt=1e-3, decay="euler", gain="one_minus_decay",
                  syn_gain="spec", if_gain="one", reset="zero", reads_v_reset=False,
                  flatten_dims="with_batch", knows_linear=True,
                  knows=("Input", "Output", "Affine", "Linear", "Conv2d", "Flatten",
                         "SumPool2d", "IF", "LIF", "CubaLIF")),
    sources={
        "export tau = dt / tau_mem_inv (dt = 0.001), r = 1":
            f"{_NORSE}:norse/torch/utils/export_nir.py (_extract_norse_module)",
        "import: tau_mem_inv = 1/tau, dt = 0.001 argument, reset_method=reset_value, "
        "v_reset not passed, r only warned about":
            f"{_NORSE}:norse/torch/utils/import_nir.py",
        "box LIF: dv = dt tau_mem_inv (x + v_leak - v), z = v > v_th, v <- v_reset":
            f"{_NORSE}:norse/torch/functional/lif_box.py, threshold.py, heaviside.py",
        "IAF feed-forward: v = v + x (dt unused)": f"{_NORSE}:norse/torch/functional/iaf.py",
        "LIFCell (exported as CubaLIF): i += x; v += dt tau_mem_inv (v_leak - v + i); "
        "i -= dt tau_syn_inv i": f"{_NORSE}:norse/torch/functional/lif.py "
                                 "(lif_feed_forward_step)",
        "export through nirtorch.extract_nir_graph(sample_data) without ignore_dims: a batch "
        "axis in the port types": f"{_NORSE}:norse/torch/utils/export_nir.py (to_nir)",
        "import: CubaLIF -> w_in x, LIBox synapse (tau_syn, v_leak), r i, LIFBox with "
        "reset_method; LIF and IF without reset_method; SumPool2d -> LPPool2d(1) without "
        "padding; no LI, no AvgPool2d": f"{_NORSE}:norse/torch/utils/import_nir.py",
        "import: torch.nn.Flatten(start_dim, end_dim) as stored":
            f"{_NORSE}:norse/torch/utils/import_nir.py",
        "recurrent import commented out": f"{_NORSE}:norse/torch/utils/import_nir.py",
    },
    notes=("norse 1.1.0 writes tau = dt / tau_mem_inv, so the written tau is the true time "
           "constant times dt (norse issue #411); --from norse divides it back out",
           "norse's importer has no recurrent support"))

SINABS = Convention(
    name="sinabs", release="sinabs 3.1.3",
    producer=Side(dt_rule="steps", tau_unit="steps", decay="exact", gain="one",
                  if_gain="one", reset="subtract", multi_spike=True, fires_at_equal=True,
                  flatten_dims="per_sample", knows_linear=False, nir_layout="1.0.4"),
    consumer=Side(dt_rule="steps", tau_unit="steps", decay="exact", gain="one",
                  if_gain="one", reset="subtract", multi_spike=True, fires_at_equal=True,
                  reads_v_reset=False, flatten_dims="per_sample", knows_linear=False,
                  knows=("Input", "Output", "Affine", "Conv1d", "Conv2d", "SumPool2d",
                         "Flatten", "IF", "LI", "LIF"),
                  nir_layout="1.0.4"),
    sources={
        "export IF r = 1, LIF tau = tau_mem (steps), r = 1, Linear -> Affine(zero bias)":
            f"{_SINABS}:sinabs/nir.py (_extract_sinabs_module)",
        "import LIF -> LIFSqueeze(tau_mem=tau, norm_input=False), IF -> IAFSqueeze("
        "min_v_mem=-v_threshold), Flatten dims + 1, no Linear": f"{_SINABS}:sinabs/nir.py",
        "alpha = exp(-1/tau_mem), v = alpha v + x (norm_input=False)":
            f"{_SINABS}:sinabs/layers/lif.py, sinabs/layers/functional/lif.py",
        "MultiSpike: (v > 0) * trunc(v / threshold); MembraneSubtract by default":
            f"{_SINABS}:sinabs/activation/spike_generation.py, reset_mechanism.py",
        "nir <= 1.0.4": f"{_SINABS}:requirements.txt",
        "nir 1.0.4 reader passes every stored field to the node class":
            f"{_NIR}@v1.0.4:nir/ir/__init__.py (dict2NIRNode), nir/ir/node.py (from_dict)",
    },
    notes=("sinabs counts time in steps: IF r = 1 means one unit of input per step, whatever "
           "--dt labels the step",
           "sinabs fires floor(v / threshold) spikes per step (v >= threshold); the IR fires "
           "one (v > threshold): equal while v stays below twice the threshold and never "
           "equals it",
           "sinabs' IF importer clamps v at -v_threshold (min_v_mem)",
           "sinabs 3.1.3's importer tests any(node.v_leak) != 0, which fails on LIF parameters "
           "of two or more axes (a LIF after a convolution)"))

ROCKPOOL = Convention(
    name="rockpool", release="rockpool 3.1.0 (source read at git 42cee1c9)",
    producer=Side(dt_rule="from_r", decay="exact", gain="one", syn_gain="decay",
                  reset="subtract", multi_spike=True, fires_at_equal=True,
                  batch_axis_in_ports=True, v_leak_is_bias=True,
                  recurrent="nested NIRGraph of 4 nodes {Input, CubaLIF, Affine|Linear, "
                            "Output}"),
    consumer=Side(dt_rule="from_r", decay="exact", gain="one", syn_gain="decay",
                  reset="subtract", multi_spike=True, fires_at_equal=True, reads_v_reset=False,
                  v_leak_is_bias=True,
                  knows=("Input", "Output", "Affine", "Linear", "CubaLIF", "NIRGraph"),
                  recurrent="nested NIRGraph of 4 nodes with a CubaLIF"),
    sources={
        "export r = tau exp(-dt/tau) / dt, v_leak = 0 (bias dropped)":
            f"{_ROCK}:rockpool/nn/modules/torch/nir.py (_extract_rockpool_module)",
        "import dt = min(tau_mem / (1 + r)); LIF branch reads node.tau_mem (absent on "
        "nir.LIF); no Flatten, Conv or pooling": f"{_ROCK}:rockpool/nn/modules/torch/nir.py",
        "LIFTorch: isyn = (isyn + x) exp(-dt/tau_syn); v = v exp(-dt/tau_mem) + isyn + bias; "
        "floor(v/threshold) spikes for v >= threshold; v -= spikes * threshold":
            f"{_ROCK}:rockpool/nn/modules/torch/lif_torch.py (LIFTorch.forward, StepPWL)",
        "sample data (1, size_in): batch axis in port types":
            f"{_ROCK}:rockpool/nn/modules/torch/nir.py (to_nir)",
    },
    notes=("rockpool's importer cannot read nir.LIF (it reads node.tau_mem) and has no "
           "Flatten/Conv/pooling; it casts an LI's tau to int: only CubaLIF and dense layers "
           "reach it",
           "rockpool's importer reads v_leak as its per-step bias and dt = min(tau / (1 + r))"))

SPYX = Convention(
    name="spyx", release="spyx 1.0.0",
    producer=Side(dt_rule="argument", dt=1.0, tau_unit="seconds", decay="euler", gain="one",
                  syn_gain="one", if_gain="one", reset="subtract", reset_after_decay=True,
                  flatten_order="hwc", spike_delay=1,
                  recurrent="nested NIRGraph: input->w_rec, w_rec->lif, lif->w_rec, "
                            "lif->output (the input is drawn through w_rec but spyx adds it "
                            "to the neuron directly)"),
    consumer=Side(dt_rule="argument", dt=1.0, decay="euler", gain="one", syn_gain="one",
                  if_gain="one", reset="subtract", reset_after_decay=True, reads_v_reset=False,
                  flatten_order="hwc", spike_delay=1,
                  knows=("Input", "Output", "Affine", "Linear", "Conv2d", "SumPool2d",
                         "Flatten", "IF", "LIF", "CubaLIF", "NIRGraph"),
                  recurrent="the same nested layout (RIF/RLIF/RCuBaLIF)"),
    sources={
        "export LIF tau = dt/(1-beta), r = beta, dt argument default 1":
            f"{_SPYX}:src/spyx/nir.py (to_nir)",
        "import beta = 1 - dt/tau, r ignored, threshold only": f"{_SPYX}:src/spyx/nir.py "
                                                                "(_build_model)",
        "LIF: s = H(V[t-1] - thr); V = beta V + x - s thr (reset after the decay); IF the "
        "same with beta = 1; CuBaLIF: s = H(V[t-1] - thr); V -= s thr; I = alpha I + x; "
        "V = beta V + I; RIF/RLIF add s @ W_rec of the spike they emit":
            f"{_SPYX}:src/spyx/nn.py (LIF, IF, CuBaLIF, RIF, RLIF)",
        "heaviside: x > 0": f"{_SPYX}:src/spyx/axn.py (heaviside)",
        "Flatten collapses channels-last (H, W, C) tensors; weights copied untransposed":
            f"{_SPYX}:src/spyx/nir.py (Flatten, Affine)",
        "recurrent subgraph edges": f"{_SPYX}:src/spyx/nir.py (_spyx_recurrent_to_nirgraph)",
        "import walks edges from the node named 'input' to the node named 'output'; a padded "
        "SumPool2d becomes SAME pooling": f"{_SPYX}:src/spyx/nir.py (_build_model)",
    },
    notes=("spyx sends at step t the spike of the membrane of step t-1: read as the IR's "
           "neuron followed by a one-step Delay (exact for IF and CuBaLIF); its LIF subtracts "
           "the undecayed threshold after the next decay, which the IR cannot express",))

LAVA_DL = Convention(
    name="lava-dl", release="lava-dl 0.6.0 (netx)",
    producer=Side(dt_rule="steps", tau_unit="steps", decay="exact", gain="one",
                  reset="zero"),
    consumer=None,
    sources={"netx is discrete: decays in 1/4096 per step, no time step stored":
             "lava-nc/lava-dl@d825ac50:src/lava/lib/dl/netx/hdf5.py"},
    notes=("netx files are read by from_netx; a conv-first file without an input layer needs "
           "--input-shape C,H,W (or calibration/evaluation data to take it from)",))

_SJ = "fangwei123456/spikingjelly@2.0.0 (PyPI wheel)"

SPIKINGJELLY = Convention(
    name="spikingjelly", release="spikingjelly 2.0.0",
    producer=Side(dt_rule="argument", dt=1e-4, tau_unit="seconds", decay="euler", gain="spec",
                  if_gain="spec", reset="zero", fires_at_equal=True),
    consumer=None,
    sources={
        "export_to_nir(dt=1e-4): LIF tau = tau_steps * dt, r = 1 (decay_input) else tau, "
        "v_leak = v_reset; IF r = 1 / dt; soft reset (v_reset=None) refused":
            f"{_SJ}:spikingjelly/activation_based/nir_exchange/to_nir.py (_ModuleMapper)",
        "LIF: H = V + (X - (V - V_reset)) / tau (decay_input), H = V - (V - V_reset) / tau + X "
        "(not); IF: H = V + X": f"{_SJ}:spikingjelly/activation_based/_ops/lif/reference.py, "
                                "neuron/integrate_and_fire.py",
        "spike = heaviside(H - V_threshold), heaviside(x) = x >= 0":
            f"{_SJ}:spikingjelly/activation_based/surrogate.py (heaviside)",
        "hard reset V = V_reset where spiking; v_reset=None: V = H - V_threshold * S":
            f"{_SJ}:spikingjelly/activation_based/neuron/base_node.py, _ops/reset.py",
    },
    notes=("spikingjelly fires at v >= threshold; the NIR import reads the threshold as the IR's "
           "v > threshold (from_torch stores the largest float32 below it instead, exact in "
           "float32)",
           "spikingjelly's exporter traces with torch.fx and stops at BatchNorm's x.dim() check, "
           "MaxPool and torch.flatten in forward: import the module itself (FILE.py:FACTORY; "
           "sbc_deploy/frontends/from_torch/neurons.py maps its neurons with the same facts)"))

CONVENTIONS: dict[str, Convention] = {c.name: c for c in
                                      (NIR, SNNTORCH, NORSE, SINABS, ROCKPOOL, SPYX, LAVA_DL,
                                       SPIKINGJELLY)}
SOURCES: tuple[str, ...] = tuple(CONVENTIONS)
CONSUMERS: tuple[str, ...] = tuple(n for n, c in CONVENTIONS.items() if c.consumer is not None)

# Run against the frameworks themselves (snntorch 1.0.0, norse 1.1.0, sinabs 3.1.3 with nir
# 1.0.4, rockpool 3.1.0, spyx 1.0.0, in their own environments; tests/test_framework_interop.py
# drives them), spike for spike: snntorch and norse run our MLP, CNN, IF and CubaLIF exports;
# sinabs runs our MLP and CNN (subtract reset, SingleSpike); rockpool our recurrent CubaLIF
# (max_spikes_per_dt=1); imported as their exporters write them: snntorch LIF (dense, conv),
# norse LIF, CubaLIF, IF, conv, sinabs IF, LIF, conv IF, spyx IF (dense, conv), rockpool CubaLIF.
# Facts read from source only, which no run has confirmed yet:
UNCONFIRMED: tuple[str, ...] = (
    "norse 1.1.0: nirtorch's extract_nir_graph keeps the sample data's batch axis in the ports",
    "rockpool 3.1.0 LIFNeuronTorch exported as nir.LIF: the importer side (it reads "
    "node.tau_mem, absent on nir.LIF)",
    "sinabs 3.1.3: how its importer (nirtorch.load) runs a recurrent cycle",
    "snntorch 1.0.0: import of RLeaky/RSynaptic subgraphs with a nirtorch other than 2.6",
    "spyx 1.0.0 as a consumer: only its timing difference (late spikes) was seen, not a fix",
)


def time_step_advice() -> str:
    """How each framework's NIR files mean time, in one phrase (from this table), for every
    message that asks for ``--dt`` or ``--from``: the missing-dt error and the silent-network
    guard say the same thing."""
    fixed, steps = [], []
    for name, convention in CONVENTIONS.items():
        side = convention.producer
        if side is None:
            continue
        if side.dt_rule == "steps" or side.tau_unit == "steps":
            steps.append(name)
        elif side.dt_rule == "fixed" and side.dt:
            fixed.append(f"{name} LIF time constants assume dt = {side.dt:g} s")
        elif side.dt_rule == "argument" and side.dt:
            fixed.append(f"{name} {side.dt:g} s by default")
    # snntorch writes IF neurons with r = 1: one input per step, whatever its dt for LIF (the
    # fixture scnn_mnist_snntorch.nir fires with --dt 1 and is silent at 1e-4 s)
    fixed.append("snntorch IF neurons with r = 1 add their input once per step (--dt 1)")
    return "; ".join(fixed + ([f"{', '.join(steps)} count steps"] if steps else []))


def get_convention(name: str, *, role: str = "source") -> Convention:
    """The convention called ``name``; :class:`ConfigError` listing the known ones otherwise."""
    table = CONVENTIONS if role == "source" else {n: CONVENTIONS[n] for n in CONSUMERS}
    if name not in table:
        flag = "--from" if role == "source" else "--nir-for"
        raise ConfigError(f"unknown framework {name!r}; known: {', '.join(table)}", where=flag)
    return table[name]


__all__ = ["CONSUMERS", "CONVENTIONS", "Convention", "SOURCES", "Side", "UNCONFIRMED",
           "get_convention", "time_step_advice"]
