r"""lava-dl netx HDF5 -> IR.

netx is a discrete-time format: its decays are per step, so ``dt`` changes no result and only
labels time. It comes from ``/simulation/Ts`` when the file has it (SLAYER's sampling time, in
milliseconds by SLAYER's convention; lava-dl's own netx reader ignores it), else from the ``dt``
argument, else 1e-3 s; the argument wins over the file when both are given. ``dt_source`` says
which.

File layout read here (lava-dl ``netx/hdf5.py``): ``/layer/<i>`` for ``i = 0..n-1`` in order, a
strictly sequential chain. Layer types: ``input`` (with or without a ``neuron`` group),
``dense``, ``conv``, ``flatten`` and ``dense_rec`` (``weight`` plus ``weight_rec``). Any other
type (``pool``, ``average``, ``concat``, ``convT``, ``unpool``, ``dense_comp``) raises
:class:`UnsupportedNodeError` naming every such layer. Neuron types ``CUBA`` and ``LOIHI`` are
read (both become Lava's LIF in netx); ``SDNN`` and ``RF*`` are refused.

Integer units and the IR's float values (one float unit = 64 integer weight units)::

    weight (float)      = W / 64                W: the file's integer-valued weight
    neuron bias         = bias / 64             (per output channel, broadcast per neuron)
    v_threshold         = vThMant / 64
    alpha (current)     = 1 - iDecay / 4096
    beta  (voltage)     = 1 - vDecay / 4096
    gain = gain_syn = 1, v_leak = v_reset = 0, reset "zero" (Lava's hard reset)

Each synapse carries an ``int_exp`` :class:`WeightEncoding` that keeps the exact integers:
``mantissa = W >> k`` for the largest ``k`` dividing every ``W``, ``exponent = k``,
``unit = 1/64``, ``bits`` = the smallest signed width holding the mantissas. The file's exact
integers are also kept in node metadata (``metadata["netx"]``) so the netx exporter can write
the file back bit for bit.

Lava's fixed-point semantics that the integer core must reproduce (lava ``proc/lif/models.py``
``AbstractPyLifModelFixed`` and ``proc/dense``; netx builds ``LIF(vth=vThMant, du=iDecay - 1,
dv=vDecay, bias_mant=bias, bias_exp=6)``)::

    a[t]  = sum_j W[i, j] * s_j[t - 1]                 Dense/Conv: one step of synaptic delay
    u[t]  = sign(x) * (|x| >> 12),  x = u[t-1] * (4096 - (du + 1))     (du + 1 = iDecay)
            + (a[t] << 6)                              u wraps to 24-bit two's complement
    v[t]  = sign(y) * (|y| >> 12),  y = v[t-1] * (4096 - dv)           (dv = vDecay)
            + u[t] + (bias << 6)                       v clips to [-(2**23 - 1), 2**23 - 1]
    s[t]  = v[t] > (vThMant << 6);   v[t] = 0 where s[t]   (u is not reset)

So ``u`` and ``v`` hold float values times 4096, and the float IR above is the same model
without rounding: ``i = alpha*i + x``, ``v = beta*v + i + bias``, spike when ``v > v_threshold``.

The ``input`` layer: with a ``neuron`` group netx builds an Input block, a LIF neuron fed
directly on ``a_in`` (no synapse), and records the transform ``weight`` (default 64 = float 1.0)
and ``bias`` (default 0) without applying them; lava-dl's tests apply them to the data
themselves and feed the result through ``bias_mant``. The IR keeps the SLAYER training
semantics: ``Input -> Scale(weight / 64) -> CubaLIF(bias = bias / 64)`` (the Scale is left out
when the weight is 64). In integer units a graded input ``a_in = weight * x`` reproduces
``x * weight / 64`` exactly. SLAYER adds the transform bias to the current, the IR to the
voltage: the two agree when iDecay = 4096 (no current memory), as in every lava-dl file seen.
Without a ``neuron`` group the input layer only gives the shape.

A ``dense`` layer without a ``neuron`` group (written by SLAYER's Affine blocks) gets netx's
default non-leaky integrator ``{iDecay: 0, vDecay: 4096, vThMant: 1 << 17}``: ``u`` accumulates
without decay and ``v = u + bias`` never reaches the threshold, so the layer is a readout. The IR
holds it as a :class:`CubaLI` (``alpha = 1``, ``beta = 0``) whose output is ``v``, with
``metadata["netx"]["neuron_absent"] = True``.

``flatten``: netx flattens the previous layer's (C, H, W) output in C order before the next
dense layer (the PyTorch order), which is the IR's Flatten over (C, H, W). Conv weights are
stored as PyTorch correlation kernels (out, in, kH, kW[, 1]) and are kept as stored; stride,
padding and dilation are (H, W) pairs (or scalars).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from sbc_deploy.errors import (
    ConfigError,
    FormatError,
    SbcDeployError,
    ShapeError,
    UnsupportedNodeError,
)
from sbc_deploy.ir import (
    Affine,
    Conv2d,
    CubaLI,
    CubaLIF,
    Flatten,
    Graph,
    Input,
    Node,
    Output,
    Scale,
    WeightEncoding,
)

log = logging.getLogger(__name__)

WEIGHT_UNIT = 64  # integer weight units per float unit (lava-dl: 1 << 6)
DECAY_UNIT = 4096  # 12-bit decays
DEFAULT_DT = 1e-3
SUPPORTED_LAYERS: tuple[str, ...] = ("input", "dense", "conv", "flatten", "dense_rec")
SUPPORTED_NEURONS: tuple[str, ...] = ("CUBA", "LOIHI")
# netx's neuron for a dense layer without a neuron group (netx/hdf5.py create_dense)
DEFAULT_NEURON: dict[str, Any] = {"type": "CUBA", "iDecay": 0, "vDecay": 4096,
                                  "vThMant": 1 << 17, "refDelay": 1, "gradedSpike": False}


# --------------------------------------------------------------------------- reading helpers


def _decode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO" and value.size >= 1:
            return _decode(value.reshape(-1)[0])
        if value.ndim == 0:
            return value.item()
        return value
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _layer_type(layer: h5py.Group) -> str:
    if "type" not in layer:
        return "<no type>"
    return str(_decode(layer["type"][()]))


def _plain(value: Any) -> Any:
    """A JSON-friendly copy of an HDF5 value (for metadata)."""
    value = _decode(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _integers(values: np.ndarray, what: str, where: str) -> np.ndarray:
    """netx reads weights/biases with ``.astype(int)``: fractions are truncated toward zero."""
    array = np.asarray(values)
    if not np.all(np.isfinite(array)):
        raise FormatError(f"{what} holds NaN or infinite values", where=where)
    integers = array.astype(np.int64)
    if not np.array_equal(integers, array):
        log.warning("%s: %s holds non-integer values; truncated toward zero as netx does",
                    where, what)
    return integers


def int_exp_encoding(weight_int: np.ndarray) -> WeightEncoding:
    """The exact ``int_exp`` encoding of integer netx weights (unit 1/64).

    ``mantissa = W >> k`` for the largest ``k`` (<= 30) that divides every ``W`` (``k = 0`` when
    all are zero), ``exponent = k``, ``bits`` the smallest signed width holding the mantissas.
    """
    weight_int = np.asarray(weight_int, dtype=np.int64)
    nonzero = weight_int[weight_int != 0]
    k = 0
    if nonzero.size:
        while k < 30 and np.all(nonzero % (1 << (k + 1)) == 0):
            k += 1
    mantissa = weight_int >> k
    low, high = (int(mantissa.min()), int(mantissa.max())) if mantissa.size else (0, 0)
    bits = 1
    while low < -(1 << (bits - 1)) or high > (1 << (bits - 1)) - 1:
        bits += 1
    unit = 1.0 / WEIGHT_UNIT
    return WeightEncoding(mantissa=mantissa, scale=unit * 2.0**k, bits=bits, grid="int_exp",
                          signed=True, exponent=k, unit=unit)


def _neuron_config(layer: h5py.Group, where: str) -> tuple[dict[str, Any], bool]:
    """The layer's neuron dict (scalars as Python values) and whether it was absent."""
    if "neuron" not in layer:
        return dict(DEFAULT_NEURON), True
    config = {key: _plain(item[()]) for key, item in layer["neuron"].items()
              if isinstance(item, h5py.Dataset)}
    kind = config.get("type")
    if kind not in SUPPORTED_NEURONS:
        raise UnsupportedNodeError(
            f"neuron type {kind!r} is not supported; supported: {', '.join(SUPPORTED_NEURONS)}",
            where=where)
    missing = [k for k in ("iDecay", "vDecay", "vThMant") if k not in config]
    if missing:
        raise FormatError(f"neuron group lacks {', '.join(missing)}", where=where)
    return config, False


def _neuron(config: dict[str, Any], absent: bool, shape: tuple[int, ...],
            bias_int: np.ndarray | None, layer_index: int, where: str, **extra: Any) -> Node:
    i_decay, v_decay, v_th = (int(config["iDecay"]), int(config["vDecay"]),
                              int(config["vThMant"]))
    for name, value in (("iDecay", i_decay), ("vDecay", v_decay)):
        if not 0 <= value <= DECAY_UNIT:
            raise FormatError(f"{name}={value} lies outside 0..{DECAY_UNIT}", where=where)
    alpha = np.full(shape, 1.0 - i_decay / DECAY_UNIT)
    beta = np.full(shape, 1.0 - v_decay / DECAY_UNIT)
    bias = np.zeros(shape)
    if bias_int is not None:
        bias = _broadcast_bias(bias_int, shape, where) / WEIGHT_UNIT
    netx = {
        "layer": layer_index,
        "neuron_type": config.get("type"),
        "iDecay": i_decay,
        "vDecay": v_decay,
        "vThMant": v_th,
        "bias": None if bias_int is None else np.asarray(bias_int).tolist(),
        "neuron": config,
        "neuron_absent": absent,
        **extra,
    }
    if absent:
        return CubaLI(alpha=alpha, beta=beta, metadata={"netx": netx}, bias=bias)
    return CubaLIF(alpha=alpha, beta=beta, v_threshold=np.full(shape, v_th / WEIGHT_UNIT),
                   bias=bias, reset="zero", metadata={"netx": netx})


def _broadcast_bias(bias_int: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
    """Per-channel (C,) or per-neuron or scalar bias -> the neuron shape (C, ...)."""
    bias = np.asarray(bias_int, dtype=np.float64).reshape(-1)
    if bias.size == 1:
        return np.full(shape, bias[0])
    if bias.size == int(np.prod(shape)):
        return bias.reshape(shape)
    if bias.size == shape[0]:
        return np.broadcast_to(bias.reshape((-1,) + (1,) * (len(shape) - 1)), shape).copy()
    raise ShapeError(f"bias of {bias.size} values does not fit neurons of shape {shape}",
                     where=where)


def _pair(layer: h5py.Group, key: str, where: str) -> tuple[int, int]:
    if key not in layer:
        raise FormatError(f"conv layer lacks '{key}' (netx requires it)", where=where)
    values = np.asarray(layer[key][()]).reshape(-1)
    if values.size == 1:
        values = np.repeat(values, 2)
    if values.size != 2:
        raise FormatError(f"'{key}' must hold one or two integers, got {values.tolist()}",
                          where=where)
    return int(values[0]), int(values[1])


def _shape(layer: h5py.Group) -> tuple[int, ...] | None:
    if "shape" not in layer:
        return None
    return tuple(int(v) for v in np.asarray(layer["shape"][()]).reshape(-1))


# --------------------------------------------------------------------------- dt


def _resolve_dt(f: h5py.File, dt: float | None, where: str) -> tuple[float, str, dict[str, Any]]:
    simulation = {}
    if "simulation" in f and isinstance(f["simulation"], h5py.Group):
        simulation = {k: _plain(v[()]) for k, v in f["simulation"].items()
                      if isinstance(v, h5py.Dataset)}
    file_dt = None
    if "Ts" in simulation:
        try:
            file_dt = float(simulation["Ts"]) * 1e-3
        except (TypeError, ValueError) as err:
            raise FormatError(f"/simulation/Ts is not a number: {simulation['Ts']!r}",
                              where=where) from err
        if not math.isfinite(file_dt) or file_dt <= 0:
            file_dt = None
    if dt is not None:
        if not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
            raise ConfigError(f"dt must be a positive number of seconds, got {dt!r}",
                              where="argument dt")
        if file_dt is None:
            return float(dt), "argument", simulation
        if math.isclose(dt, file_dt, rel_tol=1e-12):
            return float(dt), "file /simulation/Ts (ms, SLAYER convention; argument agrees)", \
                simulation
        return float(dt), (f"argument (overrides file /simulation/Ts = {simulation['Ts']} ms; "
                           "netx is discrete-time, dt only labels time)"), simulation
    if file_dt is not None:
        return file_dt, (f"file /simulation/Ts = {simulation['Ts']} (ms, SLAYER convention; "
                         "netx is discrete-time, dt only labels time)"), simulation
    return DEFAULT_DT, "default: netx is discrete-time, dt only labels time", simulation


# --------------------------------------------------------------------------- the importer


def _check_layer_types(layers: list[tuple[int, h5py.Group]], where: str) -> None:
    unsupported = [(i, _layer_type(g)) for i, g in layers if _layer_type(g) not in SUPPORTED_LAYERS]
    if unsupported:
        listing = ", ".join(f"layer {i} ({kind!r})" for i, kind in unsupported)
        raise UnsupportedNodeError(f"unsupported netx layer types: {listing}; supported: "
                                   f"{', '.join(SUPPORTED_LAYERS)}", where=where)


def _sorted_layers(f: h5py.File, where: str) -> list[tuple[int, h5py.Group]]:
    group = f["layer"]
    try:
        indices = sorted(int(key) for key in group.keys())
    except ValueError as err:
        raise FormatError(f"/layer children must be named 0..n-1, got {list(group.keys())}",
                          where=where) from err
    if indices != list(range(len(indices))) or not indices:
        raise FormatError(f"/layer children must be named 0..n-1, got {indices}", where=where)
    return [(i, group[str(i)]) for i in indices]


class _Builder:
    """Accumulates the chain of IR nodes; ``last`` is the name of the node that feeds the next."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.edges: list[tuple[str, str]] = []
        self.last: str | None = None

    def add(self, name: str, node: Node, connect: bool = True) -> None:
        self.nodes[name] = node
        if connect and self.last is not None:
            self.edges.append((self.last, name))
        self.last = name

    @property
    def shape(self) -> tuple[int, ...]:
        assert self.last is not None
        return tuple(self.nodes[self.last].output_shape)


def _input_layer(b: _Builder, i: int, layer: h5py.Group, where: str) -> None:
    shape = _shape(layer)
    if shape is None:
        raise FormatError("input layer lacks 'shape'", where=where)
    b.add("input", Input(shape, metadata={"netx": {"layer": i, "type": "input"}}))
    if "neuron" not in layer:
        return
    config, _ = _neuron_config(layer, where)
    weight = int(_integers(np.asarray(layer["weight"][()]), "weight", where).reshape(-1)[0]) \
        if "weight" in layer else WEIGHT_UNIT
    bias = _integers(np.asarray(layer["bias"][()]), "bias", where) if "bias" in layer else None
    if weight != WEIGHT_UNIT:
        b.add(f"layer{i}.scale", Scale(np.full(shape, weight / WEIGHT_UNIT),
                                       metadata={"netx": {"layer": i, "weight": weight}}))
    neuron = _neuron(config, False, shape, bias, i, where,
                     input_weight=weight if "weight" in layer else None,
                     input_bias=None if bias is None else bias.tolist())
    if int(config["iDecay"]) != DECAY_UNIT and bias is not None and np.any(bias != 0):
        log.warning("%s: input transform bias with iDecay=%s: SLAYER adds it to the current, the "
                    "IR to the voltage", where, config["iDecay"])
    b.add(f"layer{i}.neuron", neuron)


def _dense_layer(b: _Builder, i: int, layer: h5py.Group, kind: str, flatten_layer: int | None,
                 where: str) -> None:
    if "weight" not in layer:
        raise FormatError(f"{kind} layer lacks 'weight'", where=where)
    shape = _shape(layer)
    w_int = _integers(np.asarray(layer["weight"][()]), "weight", where)
    n_out = int(np.prod(shape)) if shape else int(w_int.shape[0])
    if w_int.ndim == 1:
        w_int = w_int.reshape(n_out, -1)
    if w_int.ndim != 2:
        raise FormatError(f"dense weight must be 2-D (out, in), got shape {w_int.shape}",
                          where=where)
    if w_int.shape[0] != n_out:
        raise ShapeError(f"weight has {w_int.shape[0]} rows but the layer's shape {shape} holds "
                         f"{n_out} neurons", where=where)
    if b.last is None:
        b.add("input", Input((int(w_int.shape[1]),),
                             metadata={"netx": {"layer": None, "type": "implicit input"}}))
    if len(b.shape) > 1:
        flat = Flatten(b.shape, start_dim=0, end_dim=-1,
                       metadata={"netx": {"layer": flatten_layer, "type": "flatten",
                                          "implicit": flatten_layer is None}})
        b.add(f"layer{i if flatten_layer is None else flatten_layer}.flatten", flat)
    meta = {"netx": {"layer": i, "type": kind, "weight_dtype": str(layer["weight"].dtype),
                     "weight_ndim": int(layer["weight"].ndim),
                     "delay": _plain(layer["delay"][()]) if "delay" in layer else None}}
    if "delay" in layer:
        log.warning("%s: axonal delays are ignored, as netx ignores them", where)
    synapse = Affine(w_int / WEIGHT_UNIT, bias=None, encoding=int_exp_encoding(w_int),
                     metadata=meta)
    b.add(f"layer{i}.{kind}", synapse)
    config, absent = _neuron_config(layer, where)
    bias = _integers(np.asarray(layer["bias"][()]), "bias", where) if "bias" in layer else None
    neuron_name = f"layer{i}.neuron"
    b.add(neuron_name, _neuron(config, absent, (w_int.shape[0],), bias, i, where))
    if kind == "dense_rec":
        if "weight_rec" not in layer:
            raise FormatError("dense_rec layer lacks 'weight_rec'", where=where)
        r_int = _integers(np.asarray(layer["weight_rec"][()]), "weight_rec", where)
        if r_int.ndim == 1:
            r_int = r_int.reshape(n_out, -1)
        if r_int.shape != (n_out, n_out):
            raise ShapeError(f"weight_rec must be ({n_out}, {n_out}), got {r_int.shape}",
                             where=where)
        rec = Affine(r_int / WEIGHT_UNIT, bias=None, encoding=int_exp_encoding(r_int),
                     metadata={"netx": {"layer": i, "type": "weight_rec"}})
        b.add(f"layer{i}.rec", rec)
        b.edges.append((f"layer{i}.rec", neuron_name))
        b.last = neuron_name


def _conv_layer(b: _Builder, i: int, layer: h5py.Group, where: str,
                input_shape: tuple[int, ...] | None = None) -> None:
    if b.last is None:
        if input_shape is None:
            raise FormatError("the first layer is a conv layer but the file has no input layer, "
                              "so its input shape is unknown", where=where,
                              hint="pass --input-shape C,H,W (or give --calib/--eval data, "
                                   "whose samples carry it)")
        if len(input_shape) != 3:
            raise ShapeError(f"--input-shape for a conv-first network must be C,H,W, got "
                             f"{tuple(input_shape)}", where=where)
        b.add("input", Input(tuple(int(v) for v in input_shape),
                             metadata={"netx": {"layer": None, "type": "implicit input",
                                                "shape_source": "argument input_shape"}}))
    if "weight" not in layer:
        raise FormatError("conv layer lacks 'weight'", where=where)
    w_int = _integers(np.asarray(layer["weight"][()]), "weight", where)
    if w_int.ndim == 5 and w_int.shape[4] == 1:
        w_int = w_int.reshape(w_int.shape[:4])
    if w_int.ndim != 4:
        raise FormatError(f"conv weight must be (out, in, kH, kW[, 1]), got {w_int.shape}",
                          where=where)
    in_shape = b.shape
    if len(in_shape) != 3:
        raise ShapeError(f"conv input must be (C, H, W), the previous layer gives {in_shape}",
                         where=where)
    groups = int(np.asarray(layer["groups"][()]).reshape(-1)[0]) if "groups" in layer else None
    if groups is None:
        raise FormatError("conv layer lacks 'groups' (netx requires it)", where=where)
    conv = Conv2d(w_int / WEIGHT_UNIT, input_shape=in_shape,
                  stride=_pair(layer, "stride", where),
                  padding=_pair(layer, "padding", where),
                  dilation=_pair(layer, "dilation", where), groups=groups,
                  encoding=int_exp_encoding(w_int),
                  metadata={"netx": {"layer": i, "type": "conv",
                                     "weight_ndim": int(layer["weight"].ndim),
                                     "weight_dtype": str(layer["weight"].dtype)}})
    declared = _shape(layer)
    if declared is not None and tuple(declared) != tuple(conv.output_shape):
        raise ShapeError(f"conv output shape {conv.output_shape} differs from the layer's "
                         f"declared shape {tuple(declared)}", where=where)
    b.add(f"layer{i}.conv", conv)
    config, absent = _neuron_config(layer, where)
    bias = _integers(np.asarray(layer["bias"][()]), "bias", where) if "bias" in layer else None
    b.add(f"layer{i}.neuron", _neuron(config, absent, conv.output_shape, bias, i, where))


def from_netx(path: str | Path, *, dt: float | None = None,
              input_shape: tuple[int, ...] | None = None) -> Graph:
    """Import a lava-dl netx HDF5 network (``.net``/``.h5``) into the IR.

    Args:
        path: the netx file.
        dt: seconds per step, used as a label only (see the module docstring).
        input_shape: the per-sample input shape ``(C, H, W)`` when the first layer is a
            convolution and the file has no input layer (it is ignored otherwise: the file's
            input layer or first dense layer decides).

    Returns:
        A validated sequential (or ``dense_rec``-recurrent) :class:`Graph` whose metadata
        records ``source_format="netx"``, ``source_file``, ``dt``, ``dt_source``,
        ``reset="zero"`` and ``reset_source``.

    Raises:
        FormatError: missing, unreadable or non-netx file, or a malformed layer.
        UnsupportedNodeError: layer or neuron types netx/the IR cannot hold (all named).
        ShapeError: a layer's shapes disagree with its neighbour's.
    """
    path = Path(path)
    where = str(path)
    if not path.exists():
        raise FormatError("file does not exist", where=where)
    if path.is_dir():
        raise FormatError("is a directory, expected a netx .net/.h5 file", where=where)
    try:
        with h5py.File(path, "r") as f:
            return _read(f, path, dt, input_shape)
    except SbcDeployError as err:
        if not (err.where or "").startswith(("node", "edge", "graph")):
            raise
        raise type(err)(err.message, where=f"{where}: {err.where}", hint=err.hint) from err
    except (OSError, KeyError, ValueError, TypeError, IndexError) as err:
        raise FormatError(f"cannot be read as a netx HDF5 file (not HDF5, truncated or "
                          f"corrupt): {type(err).__name__}: {err}", where=where) from err


def first_layer_needs_input_shape(path: str | Path) -> bool:
    """True when a netx file's first layer is a convolution and it has no input layer (its
    input shape must then come from the user or the data)."""
    from sbc_deploy.safeio import special_file

    if special_file(path) is not None:  # never opened: the reader refuses it, naming it
        return False
    try:
        with h5py.File(path, "r") as f:
            layers = _sorted_layers(f, str(path))
            return bool(layers) and _layer_type(layers[0][1]) == "conv"
    except (OSError, KeyError, ValueError, TypeError, SbcDeployError):
        return False


def _read(f: h5py.File, path: Path, dt: float | None,
          input_shape: tuple[int, ...] | None = None) -> Graph:
    where = str(path)
    if "layer" not in f or not isinstance(f["layer"], h5py.Group):
        raise FormatError("HDF5 file is not a netx network (no /layer group)", where=where,
                          hint="NIR files have a /node group; load them with from_nir")
    layers = _sorted_layers(f, where)
    _check_layer_types(layers, where)
    step, dt_source, simulation = _resolve_dt(f, dt, where)
    b = _Builder()
    flatten_layer: int | None = None
    for i, layer in layers:
        kind = _layer_type(layer)
        layer_where = f"{where}: layer {i} ({kind})"
        if kind == "input":
            if i != 0:
                raise FormatError("an input layer may only come first", where=layer_where)
            _input_layer(b, i, layer, layer_where)
        elif kind == "flatten":
            flatten_layer = i
        elif kind in ("dense", "dense_rec"):
            _dense_layer(b, i, layer, kind, flatten_layer, layer_where)
            flatten_layer = None
        elif kind == "conv":
            _conv_layer(b, i, layer, layer_where, input_shape)
    if b.last is None:
        raise FormatError("the network has no layer with neurons or weights", where=where)
    b.add("output", Output(b.shape))
    metadata = {
        "source_format": "netx",
        "source_file": str(path),
        "dt": step,
        "dt_source": dt_source,
        "reset": "zero",
        "reset_source": "netx/Lava CUBA hard reset",
        "discretization": "none (netx is discrete-time)",
        "netx_simulation": simulation,
    }
    return Graph(b.nodes, tuple(b.edges), step, metadata)
