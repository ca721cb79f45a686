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

How each framework fires and resets is data too, in the IR's spike-variant fields
(:mod:`sbc_deploy.ir.nodes`, "Spike variants"): ``max_spikes`` (sinabs ``MultiSpike``, rockpool
``max_spikes_per_dt``), ``fires_at_equal``, ``reset_timing`` (snntorch ``reset_delay``, spyx)
and ``v_min`` (sinabs ``min_v_mem``); :func:`spike_fields` gives a neuron's fields from a side.
What a NIR file cannot say (sinabs' ``spike_fn`` and ``norm_input``, rockpool's
``max_spikes_per_dt``, snntorch's ``reset_delay``) is an :class:`Option` of the producer side
with the framework's default: ``--from sinabs`` reads a file as sinabs' defaults run it,
``--from sinabs:spike_fn=single,norm_input=false`` as a network built with those settings
(:func:`get_convention` parses the ``NAME:OPTION=VALUE,...`` form).

Each fact below cites the file and function it was read from (repository @ commit : path);
the frameworks themselves, run by tests/test_framework_interop.py, confirm them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Literal, Mapping

import numpy as np

from sbc_deploy.errors import ConfigError

DtRule = Literal["metadata", "fixed", "argument", "steps", "from_r"]
TauUnit = Literal["seconds", "steps", "seconds_times_dt"]
Decay = Literal["euler", "exact"]
Gain = Literal["spec", "one", "one_minus_decay", "norm_input"]
ResetTiming = Literal["same_step", "next_step", "same_step_raised"]
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
        fires_at_equal: spikes when ``v >= threshold`` (the IR's field; NIR: ``v > threshold``).
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
        max_spikes: the most spikes a neuron sends per step (the IR field; None: no cap).
        reset_timing: when a subtractive reset acts (the IR field ``reset_timing``), for the
            kinds in ``timing_kinds`` (the others reset in the step of the spike).
        refractory_zero: the neurons whose zero reset zeroes the whole next step
            (``reset_timing="next_step"``), by role: ``"CubaLIF"``, ``"recurrent"`` (a neuron on
            a cycle), ``"LIF"``, ``"IF"``; the others reset to zero in the step of the spike.
        v_min: a lower membrane bound: a number, ``"-threshold"`` (each neuron's own
            ``-v_threshold``), or None; on the kinds in ``v_min_kinds``.
        r_is_tau_over_dt: the writer's ``r`` is ``tau / dt`` (snntorch), so an infinite ``tau``
            (``beta = 1``) is an IF with gain 1, not a NaN.
        if_beta: the membrane decay an IF node is read with: 1 (an integrate-and-fire neuron,
            what the node says) or another factor (snntorch's importer builds every IF as a
            ``Leaky(beta=0.9)``; ``--from snntorch:if_beta=0.9`` reads it so).
    """

    dt_rule: DtRule
    dt: float | None = None
    tau_unit: TauUnit = "seconds"
    decay: Decay = "euler"
    gain: Gain = "spec"
    syn_gain: Literal["spec", "one", "decay"] = "spec"
    if_gain: Literal["spec", "one"] = "spec"
    reset: Literal["zero", "subtract"] | None = None
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
    max_spikes: int | None = 1
    reset_timing: ResetTiming = "same_step"
    timing_kinds: tuple[str, ...] = ("IF", "LIF", "CubaLIF")
    refractory_zero: tuple[str, ...] = ()
    v_min: float | Literal["-threshold"] | None = None
    v_min_kinds: tuple[str, ...] = ("IF", "LIF", "CubaLIF")
    r_is_tau_over_dt: bool = False
    if_beta: float = 1.0


@dataclass(frozen=True)
class Option:
    """A setting of the framework's neurons that its NIR file does not carry.

    ``default`` is the framework's own default (what ``--from NAME`` assumes); ``values`` lists
    the accepted values (empty: a number); ``apply`` turns a value into the producer side;
    ``source`` is where the default was read; ``concerns`` names the NIR node types whose
    reading the option changes (empty: every spiking node), so that an import says it assumed
    the option only for a file that holds such a node.
    """

    name: str
    default: str
    values: tuple[str, ...]
    meaning: str
    source: str
    apply: Callable[["Side", str], "Side"] = field(compare=False, repr=False)
    concerns: tuple[str, ...] = ()


def spike_fields(side: Side, kind: str, reset: str, recurrent: bool,
                 v_threshold: np.ndarray) -> dict[str, Any]:
    """The IR spike-variant fields of a ``kind`` neuron (``"LIF"``, ``"CubaLIF"``, ``"IF"``)
    that runs under ``side`` with ``reset`` (``recurrent``: on a cycle)."""
    fields: dict[str, Any] = {"fires_at_equal": side.fires_at_equal,
                              "max_spikes": side.max_spikes}
    roles = {kind} | ({"recurrent"} if recurrent else set())
    if reset == "subtract":
        timing = side.reset_timing if kind in side.timing_kinds else "same_step"
        if timing == "same_step_raised" and side.max_spikes != 1:
            timing = "same_step"
    else:
        timing = "next_step" if roles & set(side.refractory_zero) else "same_step"
    fields["reset_timing"] = timing
    if side.v_min is not None and kind in side.v_min_kinds:
        threshold = np.asarray(v_threshold, dtype=np.float64)
        fields["v_min"] = (-threshold if side.v_min == "-threshold"
                           else np.full(threshold.shape, float(side.v_min)))
    return fields


@dataclass(frozen=True)
class Convention:
    """A framework's NIR convention: how it writes (``producer``) and reads (``consumer``).

    ``sources`` maps each fact to the file it was read from; ``release`` names the release the
    facts describe; ``options`` are the settings its files cannot carry (``settings``: the
    values in effect); ``resets`` the reset mechanisms its neurons offer when its files do not
    say which one ran (the producer's ``reset`` is then its default, and ``--reset`` the way to
    name the other).
    """

    name: str
    release: str
    producer: Side | None
    consumer: Side | None
    sources: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    options: tuple[Option, ...] = ()
    settings: Mapping[str, str] = field(default_factory=dict)
    resets: tuple[str, ...] = ()  # the resets its neurons offer, when more than the file says

    @property
    def spec(self) -> str:
        """``NAME`` or ``NAME:OPTION=VALUE,...`` for the options that differ from the
        framework's defaults (what ``--from`` takes)."""
        changed = [f"{o.name}={self.settings[o.name]}" for o in self.options
                   if self.settings.get(o.name, o.default) != o.default]
        return f"{self.name}:{','.join(changed)}" if changed else self.name

    def with_options(self, values: Mapping[str, str], where: str = "--from") -> "Convention":
        """This convention with ``values`` for its options (the others at their defaults)."""
        known = {o.name: o for o in self.options}
        unknown = sorted(set(values) - set(known))
        if unknown:
            listing = ", ".join(f"{o.name} ({'|'.join(o.values) or 'a number'}, default "
                                f"{o.default})" for o in self.options) or "none"
            raise ConfigError(f"{self.name} has no option {', '.join(map(repr, unknown))}; its "
                              f"options: {listing}", where=where)
        side = self.producer
        settings = {}
        for option in self.options:
            value = str(values.get(option.name, option.default)).strip().lower()
            _check_value(option, value, self.name, where)
            settings[option.name] = value
            if side is not None:
                side = option.apply(side, value)
        return replace(self, producer=side, settings=settings)


_SNN = "jeshraghian/snntorch@634fc223"
_NORSE = "norse/norse@v1.1.0"
_SINABS = "synsense/sinabs@904eb893 (v3.1.3)"
_ROCK = "synsense/rockpool@42cee1c9"
_SPYX = "kmheckel/spyx@v1.0.0"
_NIR = "neuromorphs/NIR@7232ada6"


def _check_value(option: Option, value: str, framework: str, where: str) -> None:
    if option.values:
        if value not in option.values:
            raise ConfigError(f"{framework} option {option.name} must be one of "
                              f"{', '.join(option.values)}, got {value!r}", where=where)
        return
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if value != "none" and not math.isfinite(number):
        raise ConfigError(f"{framework} option {option.name} must be a number (or none), got "
                          f"{value!r}", where=where)


def _flag(value: str) -> bool:
    return value in ("true", "1", "yes")


def _reset_delay(side: Side, value: str) -> Side:
    if _flag(value):  # the threshold leaves at step t+1; zero resets zero the next step
        return replace(side, reset_timing="next_step", refractory_zero=("CubaLIF", "recurrent"))
    return replace(side, reset_timing="same_step_raised", refractory_zero=())


def _spike_fn(side: Side, value: str) -> Side:
    return replace(side, max_spikes=None if value == "multi" else 1)


def _norm_input(side: Side, value: str) -> Side:
    return replace(side, gain="norm_input" if _flag(value) else "one")


def _min_v_mem(side: Side, value: str) -> Side:
    return replace(side, v_min=None if value == "none" else float(value))


def _max_spikes_per_dt(side: Side, value: str) -> Side:
    return replace(side, max_spikes=int(float(value)))


def _if_beta(side: Side, value: str) -> Side:
    beta = float(value) if value != "none" else math.nan
    if not 0.0 < beta <= 1.0:
        raise ConfigError(f"snntorch option if_beta must be a decay in (0, 1], got {value!r}",
                          where="--from")
    return replace(side, if_beta=beta)


_BOOL = ("true", "false")

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
                  if_gain="one", reset="subtract", reset_timing="next_step",
                  refractory_zero=("CubaLIF", "recurrent"), r_is_tau_over_dt=True,
                  flatten_dims="per_sample",
                  recurrent="nested NIRGraph {input, lif|CubaLIF, w_rec, output}: "
                            "input->lif, lif->w_rec, w_rec->lif, lif->output"),
    consumer=Side(dt_rule="fixed", dt=1e-4, decay="euler", gain="spec", syn_gain="spec",
                  if_gain="one", reset="zero", reads_v_reset=False, flatten_dims="with_batch",
                  knows=("Input", "Output", "Affine", "Linear", "Conv2d", "Flatten",
                         "AvgPool2d", "IF", "LIF", "CubaLIF", "NIRGraph"),
                  recurrent="the same 4-node nested NIRGraph (RLeaky/RSynaptic); it asserts "
                            "r = tau/dt there"),
    options=(Option("reset_delay", "true", _BOOL,
                    "true: a subtractive reset removes the threshold at the step after the spike, "
                    "after the decay (reset_timing next_step), and a zero reset of Synaptic / "
                    "RLeaky zeroes that whole step (one refractory step); false: the reset acts "
                    "in the step of the spike, and snntorch's 'avoid double reset' raises the "
                    "next step's threshold when the reset membrane stays above it "
                    "(same_step_raised)",
                    f"{_SNN}:snntorch/_neurons/leaky.py (Leaky.__init__, reset_delay=True; "
                    "forward, do_reset = spk - reset)", _reset_delay),
             Option("if_beta", "1", (),
                    "the decay of a Leaky that runs an IF node. 1: integrate-and-fire, the "
                    "neuron the node names (snntorch's Leaky with beta = 1); 0.9: what "
                    "snntorch's import_from_nir builds for every IF (with reset_delay=False: "
                    "--from snntorch:if_beta=0.9,reset_delay=false)",
                    f"{_SNN}:snntorch/import_nir.py (_nir_to_snntorch_module, nir.IF: "
                    "snn.Leaky(beta=0.9, threshold=vthr * r, reset_delay=False))", _if_beta,
                    concerns=("IF",))),
    resets=("subtract", "zero"),
    sources={
        "dt = 1e-4 hard-coded, tau = dt/(1-beta), r = tau/dt, v_reset = 0":
            f"{_SNN}:snntorch/export_nir.py (_extract_snntorch_module, Leaky/Synaptic)",
        "beta = 1 is written as tau = r = inf (read as IF with gain 1)":
            f"{_SNN}:snntorch/export_nir.py (_extract_snntorch_module: tau_mem = dt/(1-beta))",
        "recurrent nested graph": f"{_SNN}:snntorch/export_nir.py (RLeaky/RSynaptic)",
        "Flatten dims minus one on export": f"{_SNN}:snntorch/export_nir.py (nn.Flatten)",
        "import: dt = 1e-4, beta = 1 - dt/tau, threshold / (r dt/tau), reset zero, "
        "reset_delay=False, v_leak must be 0": f"{_SNN}:snntorch/import_nir.py "
                                               "(_nir_to_snntorch_module)",
        "import: torch.nn.Flatten(start_dim, end_dim) as stored":
            f"{_SNN}:snntorch/import_nir.py (_nir_to_snntorch_module)",
        "import: IF -> Leaky(beta=0.9, threshold=v_threshold * r, reset_delay=False, "
        "init_hidden=False), asserts r == 1; the Leaky's (spk, mem) tuple then reaches the "
        "next layer of the module import_from_nir returns (TypeError in a Conv2d after an IF)":
            f"{_SNN}:snntorch/import_nir.py (_nir_to_snntorch_module, nir.IF)",
        "export: no IF node; every Leaky is written as nir.LIF (beta = 1 as tau = r = inf), as "
        "it was at 89a7f3c, the commit that added examples/scnn_mnist.nir":
            f"{_SNN}:snntorch/export_nir.py (_extract_snntorch_module, snn.Leaky)",
        "import: a recurrent cycle is nested by _replace_rnn_subgraph_with_nirgraph, whose "
        "subgraph node names keep their dots (nirtorch then fails on them)":
            f"{_SNN}:snntorch/import_nir.py (_create_rnn_subgraph)",
        "Leaky, Synaptic, RLeaky default reset_mechanism='subtract', reset_delay=True":
            f"{_SNN}:snntorch/_neurons/leaky.py, synaptic.py, rleaky.py (__init__)",
        "delayed subtract: mem = beta mem + x - reset * threshold, reset = H(mem[t-1] - thr)":
            f"{_SNN}:snntorch/_neurons/leaky.py (_base_sub)",
        "Synaptic/RLeaky delayed zero reset: mem -= reset * (whole update)":
            f"{_SNN}:snntorch/_neurons/synaptic.py (_base_zero), rleaky.py (_base_zero)",
        "Leaky delayed zero reset: mem = (1 - reset) mem, then beta mem + x (same step)":
            f"{_SNN}:snntorch/_neurons/leaky.py (_base_zero)",
        "fires at mem > threshold": f"{_SNN}:snntorch/surrogate.py (heaviside: x > 0)",
    },
    notes=("snntorch's file says v_reset = 0 whatever the network ran; --from snntorch assumes "
           "snntorch's default (reset_mechanism='subtract', reset_delay=True); pass --reset "
           "zero for reset_mechanism='zero' and --from snntorch:reset_delay=false for "
           "reset_delay=False",
           "snntorch's own importer builds reset_mechanism='zero', reset_delay=False whatever "
           "the file held: --nir-for snntorch writes zero-reset networks only",
           "snntorch 1.0.0 imports IF as Leaky(beta=0.9): --nir-for snntorch writes an IF as a "
           "LIF whose beta = 1 - dt/tau rounds to 1.0",
           "--from snntorch reads an IF node as the integrate-and-fire neuron it names, in "
           "snntorch's terms a Leaky with beta = 1 (r times the input once per step, whatever "
           "dt; snntorch's default reset): snntorch's exporter writes no IF, so an IF in a file "
           "is the neuron of whichever network wrote it. snntorch's own importer leaks it "
           "instead (Leaky(beta=0.9, reset_delay=False)): --from "
           "snntorch:if_beta=0.9,reset_delay=false reads a file as that network"))

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
        "export through nirtorch.extract_nir_graph(sample_data) without ignore_dims: a batched "
        "sample puts a batch axis in the port types": f"{_NORSE}:norse/torch/utils/"
                                                      "export_nir.py (to_nir)",
        "import: CubaLIF -> w_in x, LIBox synapse (tau_syn, v_leak), r i, LIFBox with "
        "reset_method; LIF and IF without reset_method; SumPool2d -> LPPool2d(1) without "
        "padding; no LI, no AvgPool2d": f"{_NORSE}:norse/torch/utils/import_nir.py",
        "import: torch.nn.Flatten(start_dim, end_dim) as stored":
            f"{_NORSE}:norse/torch/utils/import_nir.py",
        "recurrent import commented out": f"{_NORSE}:norse/torch/utils/import_nir.py",
    },
    notes=("norse 1.1.0 writes tau = dt / tau_mem_inv, so the written tau is the true time "
           "constant times dt (norse issue #411); --from norse divides it back out",
           "norse's importer has no recurrent support and builds reset-to-value neurons: "
           "--nir-for norse writes zero-reset networks only"))

SINABS = Convention(
    name="sinabs", release="sinabs 3.1.3",
    producer=Side(dt_rule="steps", tau_unit="steps", decay="exact", gain="norm_input",
                  if_gain="one", reset="subtract", max_spikes=None, fires_at_equal=True,
                  flatten_dims="per_sample", knows_linear=False, nir_layout="1.0.4"),
    consumer=Side(dt_rule="steps", tau_unit="steps", decay="exact", gain="one",
                  if_gain="one", reset="subtract", max_spikes=None, fires_at_equal=True,
                  v_min="-threshold", v_min_kinds=("IF",),
                  reads_v_reset=False, flatten_dims="per_sample", knows_linear=False,
                  knows=("Input", "Output", "Affine", "Conv1d", "Conv2d", "SumPool2d",
                         "Flatten", "IF", "LI", "LIF"),
                  nir_layout="1.0.4"),
    options=(
        Option("spike_fn", "multi", ("multi", "single"),
               "multi: MultiSpike, floor(v / threshold) spikes per step (max_spikes None); "
               "single: SingleSpike, at most one",
               f"{_SINABS}:sinabs/layers/iaf.py, lif.py (__init__, spike_fn=MultiSpike); "
               "sinabs/activation/spike_generation.py (MultiSpike.forward)", _spike_fn),
        Option("norm_input", "true", _BOOL,
               "LIF only. true: the input is scaled by 1 - exp(-1/tau) (gain = 1 - beta); "
               "false: added as it is. The exporter writes r = 1 either way",
               f"{_SINABS}:sinabs/layers/lif.py (LIF.__init__, norm_input=True); "
               "sinabs/layers/functional/lif.py (lif_forward_single)", _norm_input),
        Option("min_v_mem", "none", (),
               "a lower membrane bound applied after the reset (v_min); none: no bound",
               f"{_SINABS}:sinabs/layers/iaf.py, lif.py (__init__, min_v_mem=None); "
               "sinabs/layers/functional/lif.py (lif_forward_single)", _min_v_mem),
    ),
    resets=("subtract", "zero"),
    sources={
        "export IF r = 1, LIF tau = tau_mem (steps), r = 1 whatever norm_input, Linear -> "
        "Affine(zero bias)": f"{_SINABS}:sinabs/nir.py (_extract_sinabs_module)",
        "import LIF -> LIFSqueeze(tau_mem=tau, norm_input=False), IF -> IAFSqueeze("
        "min_v_mem=-v_threshold), r ignored, Flatten dims + 1, no Linear":
            f"{_SINABS}:sinabs/nir.py (_import_sinabs_module)",
        "import: default spike_fn=MultiSpike and reset_fn=MembraneSubtract on every layer":
            f"{_SINABS}:sinabs/nir.py (_import_sinabs_module), sinabs/layers/iaf.py, lif.py",
        "alpha = exp(-1/tau_mem), v = alpha v + (1 - alpha if norm_input else 1) x":
            f"{_SINABS}:sinabs/layers/lif.py, sinabs/layers/functional/lif.py "
            "(lif_forward_single)",
        "MultiSpike: (v > 0) * trunc(v / threshold); SingleSpike: v - threshold >= 0":
            f"{_SINABS}:sinabs/activation/spike_generation.py",
        "order in a step: decay + input, spikes, reset, then the min_v_mem clamp":
            f"{_SINABS}:sinabs/layers/functional/lif.py (lif_forward_single)",
        "nir <= 1.0.4": f"{_SINABS}:requirements.txt",
        "nir 1.0.4 reader passes every stored field to the node class":
            f"{_NIR}@v1.0.4:nir/ir/__init__.py (dict2NIRNode), nir/ir/node.py (from_dict)",
    },
    notes=("sinabs counts time in steps: IF r = 1 means one unit of input per step, whatever "
           "--dt labels the step",
           "--from sinabs assumes sinabs' defaults (MultiSpike, LIF norm_input=True, no "
           "min_v_mem), which the file does not record; --from sinabs:spike_fn=single,"
           "norm_input=false,min_v_mem=-1 for other settings",
           "sinabs' importer builds MultiSpike, subtract-reset layers and clamps IF membranes "
           "at -v_threshold: --nir-for sinabs converts the network to that model before "
           "calibration and refuses zero-reset networks",
           "sinabs 3.1.3's importer tests any(node.v_leak) != 0, which fails on LIF parameters "
           "of two or more axes (a LIF after a convolution)"))

ROCKPOOL = Convention(
    name="rockpool", release="rockpool 3.1.0 (source read at git 42cee1c9)",
    producer=Side(dt_rule="from_r", decay="exact", gain="one", syn_gain="decay",
                  reset="subtract", max_spikes=2 ** 16, fires_at_equal=True,
                  batch_axis_in_ports=True, v_leak_is_bias=True,
                  recurrent="nested NIRGraph of 4 nodes {Input, CubaLIF, Affine|Linear, "
                            "Output}"),
    consumer=Side(dt_rule="from_r", decay="exact", gain="one", syn_gain="decay",
                  reset="subtract", max_spikes=2 ** 16, fires_at_equal=True,
                  reads_v_reset=False, v_leak_is_bias=True,
                  knows=("Input", "Output", "Affine", "Linear", "CubaLIF", "NIRGraph"),
                  recurrent="nested NIRGraph of 4 nodes with a CubaLIF"),
    options=(Option("max_spikes_per_dt", str(2 ** 16), (),
                    "the most spikes a neuron sends per step (max_spikes); 1: binary",
                    f"{_ROCK}:rockpool/nn/modules/torch/lif_torch.py (LIFTorch.__init__, "
                    "max_spikes_per_dt=2**16; StepPWL.forward)", _max_spikes_per_dt),),
    sources={
        "export r = tau exp(-dt/tau) / dt, v_leak = 0 (bias dropped)":
            f"{_ROCK}:rockpool/nn/modules/torch/nir.py (_extract_rockpool_module)",
        "export: a recurrent LIFTorch is written without its w_rec":
            f"{_ROCK}:rockpool/nn/modules/torch/nir.py (_extract_rockpool_module)",
        "import dt = min(tau_mem / (1 + r)); LIF branch reads node.tau_mem (absent on "
        "nir.LIF); no Flatten, Conv or pooling": f"{_ROCK}:rockpool/nn/modules/torch/nir.py "
                                                 "(_convert_nir_to_rockpool)",
        "import: LIFTorch with its default max_spikes_per_dt = 2**16":
            f"{_ROCK}:rockpool/nn/modules/torch/nir.py (_convert_nir_to_rockpool)",
        "LIFTorch: isyn = (isyn + x) exp(-dt/tau_syn); v = v exp(-dt/tau_mem) + isyn + bias; "
        "floor(v/threshold) spikes for v >= threshold, at most max_spikes_per_dt; "
        "v -= spikes * threshold":
            f"{_ROCK}:rockpool/nn/modules/torch/lif_torch.py (LIFTorch.forward, StepPWL)",
        "sample data (1, size_in): batch axis in port types":
            f"{_ROCK}:rockpool/nn/modules/torch/nir.py (to_nir)",
    },
    notes=("rockpool's importer cannot read nir.LIF (it reads node.tau_mem) and has no "
           "Flatten/Conv/pooling; it casts an LI's tau to int: only CubaLIF and dense layers "
           "reach it",
           "rockpool's importer reads v_leak as its per-step bias and dt = min(tau / (1 + r))",
           "--from rockpool assumes max_spikes_per_dt = 2**16 (rockpool's default, not in the "
           "file); --nir-for rockpool converts the network to it before calibration"))

SPYX = Convention(
    name="spyx", release="spyx 1.0.0",
    producer=Side(dt_rule="argument", dt=1.0, tau_unit="seconds", decay="euler", gain="one",
                  syn_gain="one", if_gain="one", reset="subtract", reset_timing="next_step",
                  timing_kinds=("IF", "LIF"), flatten_order="hwc", spike_delay=1,
                  recurrent="nested NIRGraph: input->w_rec, w_rec->lif, lif->w_rec, "
                            "lif->output (the input is drawn through w_rec but spyx adds it "
                            "to the neuron directly)"),
    consumer=Side(dt_rule="argument", dt=1.0, decay="euler", gain="one", syn_gain="one",
                  if_gain="one", reset="subtract", reset_timing="next_step",
                  timing_kinds=("IF", "LIF"), reads_v_reset=False, flatten_order="hwc",
                  spike_delay=1,
                  knows=("Input", "Output", "Affine", "Linear", "Conv2d", "SumPool2d",
                         "Flatten", "IF", "LIF", "CubaLIF", "NIRGraph"),
                  recurrent="the same nested layout (RIF/RLIF/RCuBaLIF)"),
    sources={
        "export LIF tau = dt/(1-beta), r = beta, dt argument default 1":
            f"{_SPYX}:src/spyx/nir.py (to_nir)",
        "import beta = 1 - dt/tau, r ignored, threshold only": f"{_SPYX}:src/spyx/nir.py "
                                                                "(_build_model)",
        "LIF/IF/RLIF: s = H(V[t-1] - thr); V = beta V + x - s thr (reset after the decay)":
            f"{_SPYX}:src/spyx/nn.py (LIF.__call__, IF.__call__, RLIF.__call__)",
        "CuBaLIF: s = H(V[t-1] - thr); V -= s thr; I = alpha I + x; V = beta V + I (reset "
        "before the decay)": f"{_SPYX}:src/spyx/nn.py (CuBaLIF.__call__)",
        "heaviside: x > 0": f"{_SPYX}:src/spyx/axn.py (heaviside)",
        "Flatten collapses channels-last (H, W, C) tensors; weights copied untransposed":
            f"{_SPYX}:src/spyx/nir.py (Flatten, Affine)",
        "recurrent subgraph edges": f"{_SPYX}:src/spyx/nir.py (_spyx_recurrent_to_nirgraph)",
        "import walks edges from the node named 'input' to the node named 'output'; a padded "
        "SumPool2d becomes SAME pooling": f"{_SPYX}:src/spyx/nir.py (_build_model)",
        "import maps no Delay node": f"{_SPYX}:src/spyx/nir.py (_nir_node_to_spyx_module)",
    },
    notes=("spyx sends at step t the spike of the membrane of step t-1: read as the IR's "
           "neuron followed by a one-step Delay; its LIF/IF/RLIF subtract the undecayed "
           "threshold after the next decay (reset_timing next_step), its CuBaLIF before it",
           "--nir-for spyx converts the network to that model (a Delay after every spiking "
           "neuron, spyx's reset timing) before calibration and refuses zero-reset networks"))

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

CONVENTIONS: dict[str, Convention] = {
    c.name: c.with_options({})
    for c in (NIR, SNNTORCH, NORSE, SINABS, ROCKPOOL, SPYX, LAVA_DL, SPIKINGJELLY)}
SOURCES: tuple[str, ...] = tuple(CONVENTIONS)
CONSUMERS: tuple[str, ...] = tuple(n for n, c in CONVENTIONS.items() if c.consumer is not None)

# Confirmed by running the frameworks themselves (tests/test_framework_interop.py): every
# fact above that a producer or consumer case exercises. Facts read from source only:
UNCONFIRMED: tuple[str, ...] = (
    "sinabs 3.1.3: how its importer (nirtorch.load) runs a recurrent cycle (its exporter has "
    "no recurrent layer to test it with)",
    "rockpool 3.1.0 LIF import (it reads node.tau_mem, absent on nir.LIF: refused on export)",
)


def parse_source(spec: str) -> tuple[str, dict[str, str]]:
    """``"NAME"`` or ``"NAME:OPTION=VALUE,..."`` -> ``(name, {option: value})``."""
    name, _, rest = str(spec).partition(":")
    options: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"framework option {item!r} is not OPTION=VALUE", where="--from",
                              hint=f"e.g. --from {name.strip()}:OPTION=VALUE,OPTION=VALUE")
        options[key.strip().lower()] = value.strip()
    return name.strip().lower(), options


def time_step_advice() -> str:
    """How each framework's NIR files mean time, in one phrase (from this table), for every
    message that asks for ``--dt`` or ``--from``: the missing-dt error and the silent-network
    guard say the same thing."""
    fixed, steps, per_step = [], [], []
    for name, convention in CONVENTIONS.items():
        side = convention.producer
        if side is None:
            continue
        if side.if_gain == "one" and side.if_beta == 1.0:
            per_step.append(name)
        if side.dt_rule == "steps" or side.tau_unit == "steps":
            steps.append(name)
        elif side.dt_rule == "fixed" and side.dt:
            fixed.append(f"{name} LIF time constants assume dt = {side.dt:g} s")
        elif side.dt_rule == "argument" and side.dt:
            fixed.append(f"{name} {side.dt:g} s by default")
    # an IF with r = 1 adds its input once per step in these frameworks, whatever dt (spec NIR
    # reads dt r: the scnn_mnist fixture is silent at snntorch's 1e-4 s read as spec NIR, and
    # fires --from snntorch or --from sinabs)
    if per_step:
        fixed.append(f"an IF neuron adds r times its input once per step in "
                     f"{', '.join(per_step)} (--from NAME; spec NIR adds dt r: --dt 1)")
    return "; ".join(fixed + ([f"{', '.join(steps)} count steps"] if steps else []))


def get_convention(name: str, *, role: str = "source") -> Convention:
    """The convention ``name`` (``NAME`` or, for a source, ``NAME:OPTION=VALUE,...``);
    :class:`ConfigError` listing the known ones (or the options) otherwise."""
    framework, options = parse_source(name) if role == "source" else (name, {})
    table = CONVENTIONS if role == "source" else {n: CONVENTIONS[n] for n in CONSUMERS}
    if framework not in table:
        flag = "--from" if role == "source" else "--nir-for"
        raise ConfigError(f"unknown framework {framework!r}; known: {', '.join(table)}",
                          where=flag)
    convention = table[framework]
    return convention.with_options(options) if options else convention


__all__ = ["CONSUMERS", "CONVENTIONS", "Convention", "Option", "SOURCES", "Side",
           "UNCONFIRMED", "get_convention", "parse_source", "spike_fields", "time_step_advice"]
