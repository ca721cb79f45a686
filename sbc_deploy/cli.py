"""The command line: parse, call the library, print, pick the exit code. Nothing else prints.

    sbc-deploy [MODEL] --target NAME|PATH[,NAME...] [--calib DATA] [--eval DATA]
               [--method sbc|obc|magnitude] [--sparsity F[,F...]] [--bits N[,N...]] [--fan-in K]
               [--nm N:M] [--export netx,nir,onnx] [-o OUTDIR] [--dt SECONDS]
               [--reset zero|subtract] [--quiet]
               [--eval-limit N] [--from FRAMEWORK] [--discretization euler|exact]
               [--input-shape C,H,W] [--nir-for FRAMEWORK] [--calib-per-class K]
    sbc-deploy inspect MODEL [--dt SECONDS] [--reset zero|subtract] [--json] [--from FRAMEWORK] ...
    sbc-deploy check MODEL --target NAME|PATH[,...] [-o OUTDIR] [--report]
    sbc-deploy targets
    sbc-deploy simulate MODEL DATA [--integer] [--layers] [--limit N] -o SPIKES.npz ...
    sbc-deploy --version

Exit codes: 0 success; 1 the result violates the target or a quality guard (accuracy drop,
silent or chance-level network); 2 bad usage or bad input (nothing is written); 3 an internal
error (one line asking for a report; the traceback with --debug); 4 a resource ran out (disk
space, file size limit, disk quota, memory: what, how much, what to do); 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

from sbc_deploy.errors import GuardError, ResourceError, SbcDeployError
from sbc_deploy.resources import resource_error  # here, not in the handler: memory may be gone
from sbc_deploy.untrusted import shown, shown_lines

EXIT_OK, EXIT_VIOLATION, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_RESOURCE = 4  # disk full, file size limit, quota, out of memory (sbc_deploy.resources)
_STAGE: list[str] = []  # the stage the progress callback last announced (named on failures)
COMMANDS = ("inspect", "check", "targets", "simulate")


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` returns the exit code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: {message}", self._suggestion(message))

    def _suggestion(self, message: str) -> list[str]:
        """``--sparsty: did you mean --sparsity?`` for each misspelt flag of an argparse
        message."""
        import difflib

        prefix = "unrecognized arguments: "
        if not message.startswith(prefix):
            return []
        known = [s for action in self._actions for s in action.option_strings
                 if s.startswith("--")]
        hints = []
        for word in message[len(prefix):].split():
            flag = word.split("=", 1)[0]
            if not flag.startswith("--"):
                continue
            close = difflib.get_close_matches(flag, known, n=1, cutoff=0.75)
            if close:
                hints.append(f"{flag}: did you mean {close[0]}?")
        return hints


class _UsageError(Exception):
    """A command line argparse refused: ``head`` and its hints (``items``), one line each."""

    def __init__(self, head: str, items: Sequence[str] = ()):
        self.head, self.items = head, tuple(items)
        super().__init__(head + "".join(f"\n  {item}" for item in self.items))


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _framework(text: str) -> str:
    """``--from NAME[:OPTION=VALUE,...]``: a known framework and options it has."""
    from sbc_deploy.frontends.conventions import get_convention

    try:
        get_convention(text)
    except SbcDeployError as err:
        raise argparse.ArgumentTypeError(err.message) from None
    return text


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1), got {text}")
    return value


def _listed(parse: Any) -> Any:
    """A flag that takes one value or a comma-separated list of them (a sweep)."""
    def values(text: str) -> tuple[Any, ...]:
        parts = [part.strip() for part in text.split(",")]
        if not all(parts):
            raise argparse.ArgumentTypeError(f"expected a value or a comma-separated list, "
                                             f"got {text!r}")
        return tuple(parse(part) for part in parts)

    return values


def _n_m(text: str) -> tuple[int, int]:
    try:
        n, m = (int(v) for v in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N:M such as 2:4, got {text!r}") from None
    if not 0 < n < m:
        raise argparse.ArgumentTypeError(f"N:M needs 0 < N < M, got {text}")
    return n, m


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 2,34,34, got {text!r}") from None
    if not shape or any(v < 1 for v in shape):
        raise argparse.ArgumentTypeError(f"every axis must be at least 1, got {text}")
    return shape


def _max_drop(text: str) -> float | None:
    from sbc_deploy.guards import parse_max_drop

    try:
        return parse_max_drop(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(
            f"expected accuracy points in [0, 100] or 'none', got {text!r} ({err})") from None


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true",
                        help="replace an OUTDIR that holds files sbc-deploy did not write (they "
                             "are deleted); without it such a folder is refused")


def _model_options(parser: argparse.ArgumentParser) -> None:
    from sbc_deploy.frontends.conventions import SOURCES

    parser.add_argument("--dt", type=_positive_float, metavar="SECONDS",
                        help="time step, for NIR files that do not record one")
    parser.add_argument("--reset", choices=("zero", "subtract"),
                        help="reset mode, for NIR files that do not record one")
    parser.add_argument("--from", dest="source", type=_framework,
                        metavar="FRAMEWORK[:OPTION=VALUE,...]",
                        help="the framework that wrote the model, whose convention for dt, r, "
                             "tau, reset and spikes is used (" + "|".join(SOURCES) + "; "
                             "default: detected from the file where it says, else the NIR "
                             "spec); options give the neuron settings a NIR file cannot hold, "
                             "e.g. sinabs:spike_fn=single,norm_input=false (README: NIR "
                             "compatibility)")
    parser.add_argument("--discretization", choices=("euler", "exact"),
                        help="how NIR time constants become per-step decays (default: the "
                             "file's metadata, else the framework's convention)")
    parser.add_argument("--input-shape", type=_shape, metavar="C,H,W",
                        help="input shape of a netx file whose first layer is a convolution "
                             "and that has no input layer (default: from --calib/--eval); "
                             "for inspect and check of FILE.py:FACTORY, the shape of the "
                             "sample run through the module (required there)")


USAGE = """sbc-deploy [MODEL] --target NAME|PATH[,...] [options]     compress, check, export, report
       sbc-deploy inspect MODEL [--dt S] [--reset zero|subtract] [--from FRAMEWORK] [--json]
       sbc-deploy check MODEL --target NAME|PATH[,...] [--report] [-o OUTDIR]
       sbc-deploy targets
       sbc-deploy simulate MODEL DATA [--from FRAMEWORK] [--integer] [--layers] -o SPIKES.npz
       sbc-deploy --version"""

COMMAND_HELP = """commands:
  (none)     compress MODEL for the target(s), check, export, simulate and write the report
  inspect    show the network: layers, shapes, kernels, parameters, synapses, neuron models
  check      judge MODEL as it is against the target(s): one verdict line per target
  targets    list the hardware targets and their main limits
  simulate   run MODEL on DATA and write its spikes (float simulator, --integer core) to .npz"""


def _version() -> str:
    from sbc_deploy.version import __version__

    return f"sbc-deploy {__version__}"


# Long: the deploy command's flags, one add_argument each in the order --help lists them;
# a flat list is the clearest form of a parser, and other sub-parsers are split out already.
def deploy_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sbc-deploy", usage=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compress a trained spiking network in one shot with Spiking Brain "
                    "Compression so that it fits a neuromorphic target, export it, simulate it "
                    "on a bit-accurate core and report what fits.",
        epilog=COMMAND_HELP + "\n\nexit codes: 0 success, 1 the result violates the target or "
                              "a quality guard, 2 bad usage or input, 3 internal error (add "
                              "--debug for the traceback), 4 out of disk space, file size or "
                              "memory, 130 interrupted")
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("model", nargs="?", metavar="MODEL",
                        help=".nir file, lava-dl netx .net/.h5 file, FILE.py:FACTORY (a "
                             "spikingjelly/snntorch/norse torch module that FACTORY() builds; "
                             "see --weights), or the name of a bundled "
                             "network (nmnist_mlp, nmnist_cnn), which comes with its bundled "
                             "calibration and evaluation data (default: nmnist_mlp)")
    parser.add_argument("--target", required=True, metavar="NAME|PATH[,...]",
                        help="hardware target by name (see 'sbc-deploy targets') or a TOML file; "
                             "several, comma-separated, are compared in one report")
    parser.add_argument("--weights", metavar="CKPT",
                        help="with MODEL = FILE.py:FACTORY (a torch module built by your own "
                             "code): a state dict read with torch.load(weights_only=True), "
                             "plain or under 'state_dict'; the compressed weights come back as "
                             "OUTDIR/compressed_state_dict.pt")
    parser.add_argument("--calib", metavar="DATA",
                        help="calibration data: .npz with x [N, T, *input] (and y); an event "
                             "dataset as tonic keeps it, [DATASET:]PATH[,split=...,window=...] "
                             "(nmnist, cifar10dvs, dvsgesture, shd); images:PATH,steps=T")
    parser.add_argument("--eval", metavar="DATA", help="labelled evaluation data (same formats)")
    _calib_subset_options(parser)
    parser.add_argument("--method", choices=("sbc", "obc", "magnitude"), default="sbc",
                        help="sbc: membrane-potential Hessian (default); obc: input-current "
                             "Hessian (OBC/GPTQ/SparseGPT); magnitude: magnitude pruning and "
                             "round-to-nearest")
    parser.add_argument("--sparsity", type=_listed(_fraction), metavar="F[,F...]",
                        help="overall fraction of synapses to remove (default: what the target "
                             "needs, else 0); a list (0.5,0.7,0.9) sweeps: every value with "
                             "every --bits value, from one calibration, in one report")
    parser.add_argument("--bits", type=_listed(_positive_int), metavar="N[,N...]",
                        help="weight bits, sign included (default: the target's); a list "
                             "(8,4) sweeps, as --sparsity does")
    parser.add_argument("--fan-in", type=_positive_int, metavar="K",
                        help="keep at most K inputs per neuron (default: the target's limit)")
    parser.add_argument("--nm", type=_n_m, metavar="N:M", help="N:M structured sparsity")
    parser.add_argument("--allocation", choices=("lamp", "global", "uniform"), default="lamp",
                        help="how the overall sparsity is split across layers: lamp (default, "
                             "as the SBC authors), global (least OBS loss; slower), uniform")
    parser.add_argument("--export", default=None, metavar="FORMATS",
                        help="comma-separated subset of netx,nir,onnx (default: all the target "
                             "supports)")
    parser.add_argument("-o", "--out", default="sbc-out", metavar="OUTDIR",
                        help="output folder (default: ./sbc-out)")
    parser.add_argument("--device", default="cpu", metavar="DEVICE",
                        help="torch device of calibration, compression, the float simulator "
                             "and the integer core: cpu (default), cuda, cuda:N")
    parser.add_argument("--eval-limit", type=_positive_int, metavar="N",
                        help="evaluate on the first N samples only (quick runs)")
    from sbc_deploy.frontends.conventions import CONSUMERS

    parser.add_argument("--nir-for", default=None, choices=CONSUMERS, metavar="FRAMEWORK",
                        help="write model.nir so that this framework's importer runs it as "
                             "the simulator does (" + "|".join(CONSUMERS) + "); the network "
                             "is converted to the neurons that importer builds before "
                             "calibration, so the report's accuracy is the one it will run. "
                             "Default: the --from framework's, else nir (the spec); the "
                             "report's notes say what was adapted")
    parser.add_argument("--max-drop", type=_max_drop, default="5", metavar="PTS",  # guards.py
                        help="accuracy points the compressed network may lose against the dense "
                             "one, on the float simulator and on the integer core (default: 5; "
                             "'none' turns the guard off); more is exit 1")
    from sbc_deploy.report.summary import RANKINGS

    parser.add_argument("--rank-by", choices=tuple(RANKINGS), default="energy",
                        help=("how the report ranks the targets that fit: " + "; ".join(
                            f"{k}: {v}" for k, v in RANKINGS.items())
                              + " (default: energy)").replace("%", "%%"))
    _output_options(parser)
    _model_options(parser)
    parser.add_argument("--memory-budget", type=_memory_size, default=None, metavar="SIZE",
                        help="memory the run may use, e.g. 8GiB (default: half the machine's "
                             "RAM); layers whose Hessian would not fit get a block-diagonal one, "
                             "and a run that cannot fit is refused before it starts")
    parser.add_argument("--hessian-precision", choices=("float32", "float64"), default="float64",
                        help="GEMMs of the Hessian sums (always summed in float64): float64 "
                             "(default; the reference, exact for spikes through IF or readout "
                             "layers) or float32 (faster; sums within ~1e-6 relative, which can "
                             "flip near-tied pruning choices)")
    parser.add_argument("--calib-row-fraction", type=_row_fraction, default=1.0, metavar="F",
                        help="sum a random fraction F in (0, 1] of the calibration rows (an "
                             "unbiased estimate of the Hessian for data far larger than it "
                             "needs; recorded in the report's settings); default 1: every row")
    parser.add_argument("--distributed", action="store_true",
                        help="run as one of the processes started by torchrun (gloo on CPU, "
                             "NCCL on CUDA): calibration data and layer solves are shared out, "
                             "rank 0 writes the outputs; same result as one process")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars, only the summary (bars are drawn only on a "
                             "terminal anyway)")
    parser.add_argument("--verbose", action="store_true", help="log what each stage does")
    return parser


def _row_fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1], got {text}")
    return value


def _memory_size(text: str) -> int:
    from sbc_deploy.memory import parse_size

    try:
        return parse_size(text)
    except SbcDeployError as err:
        raise argparse.ArgumentTypeError(err.message) from None


_DESCRIPTIONS = {
    "inspect": "Show a network: every node with its shapes, kernel/stride/padding/groups, "
               "parameters, synapses and neuron model. A NIR file without a time step or reset "
               "mode is shown in its continuous form (tau, r, ...); with --dt/--reset (or when "
               "the file records them) the discrete form is shown.",
    "check": "Judge a network as it is (no compression) against each target's rules: one "
             "verdict line per target, then the violations.",
    "targets": "List the hardware targets shipped with sbc-deploy.",
    "simulate": "Run MODEL on DATA with the float simulator (and, with --integer, the "
                "bit-accurate integer core) and write the output spikes (every neuron layer's "
                "with --layers) to an .npz, to compare with your framework. Keys: output, "
                "layers, layer_<k>, integer_output, integer_layers, integer_layer_<k>, y, dt "
                "(arrays [N, T, *shape], samples first like DATA's x).",
}


def _sub_parser(command: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=f"sbc-deploy {command}", description=_DESCRIPTIONS[command])
    if command in ("inspect", "check"):
        parser.add_argument("model", metavar="MODEL",
                            help=".nir or netx .net/.h5 file, a bundled network's name "
                                 "(nmnist_mlp, nmnist_cnn), or FILE.py:FACTORY (a torch module "
                                 "FACTORY() builds; with --weights and --input-shape)")
        _model_options(parser)
        parser.add_argument("--weights", metavar="CKPT",
                            help="with MODEL = FILE.py:FACTORY: a state dict read with "
                                 "torch.load(weights_only=True), plain or under 'state_dict'")
        parser.add_argument("--verbose", action="store_true",
                            help="log what the import does (convention, dt, adaptations)")
    if command == "simulate":
        _simulate_options(parser)
    if command == "inspect":
        parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    if command == "check":
        parser.add_argument("--target", required=True, metavar="NAME|PATH[,...]")
        parser.add_argument("-o", "--out", default=None, metavar="OUTDIR",
                            help="also write report.json/.md/.html here")
        parser.add_argument("--report", action="store_true",
                            help="print the full Markdown report instead of the verdicts")
        _output_options(parser)
    return parser


def _simulate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help=".nir or netx .net/.h5 file, or a bundled network's name")
    parser.add_argument("data", metavar="DATA",
                        help=".npz with x [N, T, *input_shape] (and optional y), or N-MNIST")
    _model_options(parser)
    parser.add_argument("-o", "--out", required=True, metavar="SPIKES.npz",
                        help="the .npz to write (replaced atomically)")
    parser.add_argument("--layers", action="store_true",
                        help="also every neuron layer's output (layers, layer_<k>)")
    parser.add_argument("--integer", action="store_true",
                        help="also the bit-accurate integer core's spikes (needs Lava integer "
                             "weights: a netx file or a model compressed for Loihi)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="only the first N samples")
    parser.add_argument("--batch-size", type=int, default=64, metavar="B",
                        help="samples per simulation call (memory)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda, cuda:N)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", action="store_true",
                        help="log what the import does (convention, dt, adaptations)")


def _run_simulate(args: argparse.Namespace) -> int:
    from sbc_deploy.spikes import load_for_simulation, simulate_spikes, write_spikes

    graph, data = load_for_simulation(args.model, args.data, dt=args.dt, reset=args.reset,
                                      source=args.source, discretization=args.discretization,
                                      input_shape=args.input_shape)
    with _Progress(enabled=not args.quiet and sys.stderr.isatty()) as progress:
        record = simulate_spikes(graph, data, layers=args.layers, integer=args.integer,
                                 limit=args.limit, batch_size=args.batch_size,
                                 device=args.device, progress=progress)
    path = write_spikes(record, args.out)
    for line in record.notes:
        print(shown(line))
    for key, value in record.arrays.items():
        if value.ndim >= 2:
            print(f"  {shown(key)}: {list(value.shape)} {value.dtype}, "
                  f"{float(value.sum()):g} in total")
    print(f"wrote {shown(path)}")
    return EXIT_OK


# --------------------------------------------------------------------------- commands


def _run_inspect(args: argparse.Namespace) -> int:
    import json

    from sbc_deploy.describe import describe_model, description_to_dict, format_description

    graph = _factory_graph(args)
    if graph is not None:
        from sbc_deploy.describe import ModelDescription, describe

        description = ModelDescription(args.model, "torch", describe(graph), {}, True, {})
    else:
        description = describe_model(args.model, dt=args.dt, reset=args.reset,
                                     source=args.source, discretization=args.discretization,
                                     input_shape=args.input_shape)
    if args.json:
        print(json.dumps(description_to_dict(description), indent=2, default=str))
    else:
        print(format_description(description))
    return EXIT_OK


def _run_targets(args: argparse.Namespace) -> int:
    from sbc_deploy.targets import format_targets, list_targets

    print(format_targets(list_targets()))
    return EXIT_OK


def _run_check(args: argparse.Namespace) -> int:
    import dataclasses

    from sbc_deploy import bundled
    from sbc_deploy.outputs import MANIFEST, Manifest, prepare, staged_output
    from sbc_deploy.pipeline import check_only
    from sbc_deploy.report.render import to_markdown, write_report
    from sbc_deploy.report.text import check_verdict

    model: Any = args.model
    if model in bundled.MODELS and not Path(model).exists():
        model = str(bundled.bundled_path(f"{model}.nir"))
    if args.out:
        prepare(args.out, force=args.force)  # before any work
    graph = _factory_graph(args)
    inputs = (model,) if graph is None else graph.metadata["input_files"]
    report = check_only(model if graph is None else graph, _split(args.target), dt=args.dt,
                        reset=args.reset, source=args.source,
                        discretization=args.discretization, input_shape=args.input_shape)
    if graph is not None:
        report = dataclasses.replace(report, model=args.model)
    written: dict[str, Any] = {}
    if args.out:
        manifest = Manifest(command=("sbc-deploy", *_ARGV), versions=report.versions,
                            inputs=inputs,
                            settings={"targets": _split(args.target), "dt": args.dt,
                                      "reset": args.reset})
        with staged_output(args.out, manifest, force=args.force) as folder:  # one set
            written = write_report(report, folder)
        written = {k: Path(args.out) / Path(p).name for k, p in written.items()}
        written["manifest"] = Path(args.out) / MANIFEST
    print(to_markdown(report) if args.report else check_verdict(report, written=bool(args.out)))
    for path in written.values():
        print(f"wrote {shown(path)}")
    return EXIT_OK if report.fits else EXIT_VIOLATION


def _per_class(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _calib_subset_options(parser: argparse.ArgumentParser) -> None:
    """--calib-per-class / --calib-seed (sbc_deploy.data.sampling has the definition)."""
    parser.add_argument("--calib-per-class", type=_per_class, default=None, metavar="K",
                        help="calibrate on a class-balanced draw of K samples per class of "
                             "--calib (fractions: 0.1 = one sample of 10 %% of the classes)")
    parser.add_argument("--calib-seed", type=int, default=0, metavar="S",
                        help="seed of the --calib-per-class draw (default 0)")


def _factory_graph(args: argparse.Namespace) -> Any:
    """inspect / check of MODEL = FILE.py:FACTORY (--weights, --input-shape): its graph
    (sbc_deploy.torch_oneshot.factory_graph); None for a file or a bundled name."""
    from sbc_deploy.frontends.from_torch.factory import is_factory_spec

    if not is_factory_spec(args.model):
        if args.weights is not None:
            raise _UsageError("sbc-deploy: --weights goes with MODEL = FILE.py:FACTORY (a torch "
                              "module built by your code)")
        return None
    from sbc_deploy.torch_oneshot import factory_graph

    return factory_graph(args.model, args.weights, input_shape=args.input_shape,
                         source=args.source, dt=args.dt)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _first(values: tuple[Any, ...] | None) -> Any:
    """The one value of a flag, or the first of its sweep (the run's own point)."""
    return values[0] if values else None


def _sweep(values: tuple[Any, ...] | None) -> tuple[Any, ...]:
    """A flag's sweep values (empty when it was given one value or none)."""
    return tuple(values) if values and len(values) > 1 else ()


def _run_deploy(args: argparse.Namespace) -> int:
    from sbc_deploy.pipeline import DeployRequest, deploy

    request = DeployRequest(
        model=args.model, targets=tuple(_split(args.target)), calib=args.calib, eval=args.eval,
        method=args.method, sparsity=_first(args.sparsity), bits=_first(args.bits),
        sweep_sparsity=_sweep(args.sparsity), sweep_bits=_sweep(args.bits), fan_in=args.fan_in,
        n_m=args.nm, allocation=args.allocation,
        export=None if args.export is None else tuple(_split(args.export)),
        out_dir=args.out, dt=args.dt, reset=args.reset, eval_limit=args.eval_limit,
        source=args.source, discretization=args.discretization, input_shape=args.input_shape,
        nir_for=args.nir_for, max_drop=args.max_drop, force=args.force,
        command=("sbc-deploy", *_ARGV), memory_budget=args.memory_budget,
        distributed=args.distributed, hessian_precision=args.hessian_precision,
        calib_row_fraction=args.calib_row_fraction, device=args.device, rank_by=args.rank_by,
        calib_per_class=args.calib_per_class, calib_seed=args.calib_seed)
    request = _module_request(args, request)
    with _Progress(enabled=not args.quiet and sys.stderr.isatty()) as progress:
        result = deploy(request, progress=progress)
    _log_summary()  # repeated warnings, once each, before the summary
    if result.report is None:  # a --distributed process other than rank 0: rank 0 reports
        return EXIT_OK
    _print_summary(result)
    for f in result.report.findings:
        print(f"  [{f.severity}] {f.code} {shown(f.where or '-')}: {shown(f.message)}"
              + (f" (hint: {shown(f.hint)})" if f.hint else ""))
    errors = sum(f.severity == "error" for f in result.report.findings)
    if errors:
        print(f"quality guards: {errors} error(s); the result is not usable as it is (exit 1)")
    _print_written(result)
    return EXIT_OK if result.report.fits and result.report.guards_pass else EXIT_VIOLATION


_ARGV: list[str] = []


def _module_request(args: argparse.Namespace, request: Any) -> Any:
    """MODEL = FILE.py:FACTORY: build the user's module, load --weights, import it; the
    request with its graph and the state-dict write-back (sbc_deploy.torch_oneshot)."""
    import dataclasses

    from sbc_deploy.frontends.from_torch.factory import (
        apply_weights,
        is_factory_spec,
        load_factory,
        load_weights,
    )

    if not is_factory_spec(args.model):
        if args.weights is not None:
            raise _UsageError("sbc-deploy: --weights goes with MODEL = FILE.py:FACTORY (a torch "
                              "module built by your code)")
        return request
    from sbc_deploy.torch_oneshot import module_request

    module = load_factory(args.model)
    files = [args.model.rsplit(":", 1)[0]]
    if args.weights is not None:
        apply_weights(module, load_weights(args.weights), args.weights)
        files.append(args.weights)
    fields = {f.name: getattr(request, f.name) for f in dataclasses.fields(request)
              if f.name not in ("model", "calib", "eval", "dt", "source", "write_back")}
    return module_request(module, args.calib, args.eval, dt=args.dt, source=args.source,
                          model_name=args.model, input_files=tuple(files), **fields)


def _print_summary(result: Any) -> None:
    """The figures to decide from, per target (report/summary.py), then the ranking."""
    from sbc_deploy.report.summary import RANKINGS, ann_remark, borrowed_notes, summary_lines
    from sbc_deploy.report.vocabulary import layer_label

    report = result.report
    for t in report.targets:
        for line in summary_lines(t):
            print(shown(line))
        errors = [v for v in t.violations if v.severity == "error"]
        for v in errors[:5]:
            print(f"  [{v.severity}] {shown(layer_label(t, v.layer))}: {v.rule}: "
                  f"{shown(v.message)}")
            if getattr(v, "remedy", None):
                print(f"      remedy: {shown(v.remedy)}")
        if len(errors) > 5:
            print(f"  ... and {len(errors) - 5} more violation(s): see report.md")
        remark = ann_remark(t)
        if remark:
            print(f"  note: {shown(remark)}")
    for note in borrowed_notes(report.targets):
        print(f"note: {shown(note)}")
    from sbc_deploy.report.sweep import sweep_lines

    for line in sweep_lines(report.sweep):
        print(shown(line))
    if len(report.targets) > 1 and report.ranking:
        print(f"ranking ({RANKINGS.get(report.rank_by or 'energy', report.rank_by)}):")
        for entry in report.ranking:
            place = f"{entry['rank']}." if entry["rank"] else "--"
            tail = (f" {_ranked_value(report, entry)}" if entry["fits"] else
                    f" does not fit: {shown(entry['reason'])}")
            print(f"  {place} {shown(entry['target'])}{tail}")


def _ranked_value(report: Any, entry: Any) -> str:
    """What a ranked target was ranked by, as the report writes it."""
    from sbc_deploy.report.summary import energy_text
    from sbc_deploy.report.vocabulary import pct

    value, by = entry.get("value"), report.rank_by or "energy"
    if value is None:
        return "(n/a)"
    t = next(t for t in report.targets if t.target == entry["target"])
    return {"energy": lambda: energy_text(value, t), "accuracy": lambda: pct(value, 2),
            "cores": lambda: f"{value} cores",
            "latency": lambda: f"{1e3 * value:.3g} ms"}.get(by, lambda: str(value))()


def _print_written(result: Any) -> None:
    """The run's last lines: every file it wrote, reports, manifest and models."""
    files = [shown(path) for path in result.written.values()]
    files += [shown(path) for t in result.report.targets for path in t.exports.values()]
    print("wrote " + ", ".join(files) if len(files) < 3 else "wrote:\n" + "\n".join(
        f"  {path}" for path in files))


class _Progress:
    """A tqdm bar on stderr per stage; silent when disabled.

    Each stage counts real units (samples, layers, files) with ``update`` so that tqdm's rate
    and ETA are measured, and shows what it works on (``detail``: the layer and its size).
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar: Any = None
        self._stage: str | None = None

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __call__(self, stage: str, done: float, total: int, *, unit: str = "samples",
                 detail: str = "", step: tuple[int, int] | None = None) -> None:
        _STAGE[:] = [stage]
        if not self.enabled:
            return
        from tqdm import tqdm

        if stage != self._stage or self._bar is None:
            self._close()
            self._stage = stage
            # the bar starts at the stage's first call (done = 0 when the stage announces
            # itself), so the first rate is measured over real work, not since import
            # the raw stream: tqdm draws with carriage returns; names in it are shown() here
            self._bar = tqdm(total=total, desc=shown(stage), unit=f" {unit}",
                             file=getattr(sys.stderr, "raw", sys.stderr),
                             leave=True, initial=done, smoothing=0.1,
                             **_width())
        bar = self._bar
        if step is not None:  # "[4/9] compress loihi2": the stage's place in the run
            bar.set_description_str(f"[{step[0]}/{step[1]}] {shown(stage)}", refresh=False)
        # a layer part-solved shows 1.4/3; whole counts keep tqdm's own format
        bar.bar_format = (_FRACTION_FORMAT if isinstance(done, float) and not done.is_integer()
                          else None)
        if bar.total != total:
            bar.total = total
        if detail:
            bar.set_postfix_str(shown(detail), refresh=False)
        if done > bar.n:
            bar.update(done - bar.n)
        else:
            bar.refresh()
        if isinstance(done, int) and bar.n == done and not isinstance(bar.n, int):
            bar.n = done  # a bar that counted part-layers shows whole counts as such (2/2)
            bar.refresh()


# tqdm's default format with the count to one decimal (a part-solved layer)
_FRACTION_FORMAT = ("{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total_fmt} "
                    "[{elapsed}<{remaining}, {rate_fmt}{postfix}]")


def _width() -> dict[str, Any]:
    """Follow the terminal's width; a terminal that reports none (0 columns) gets 100."""
    try:
        columns = os.get_terminal_size(sys.stderr.fileno()).columns
    except (OSError, ValueError):
        columns = 0
    return {"dynamic_ncols": True} if columns > 0 else {"ncols": 100}


class _Collapsing(logging.Handler):
    """Log records to stderr, each message template once: its repeats are counted and said in
    one line at the end of the run, with their worst case (the largest ``deviation`` a record
    carries, e.g. the relative change of a rounded value; else the last one)."""

    FORMAT = "%(levelname)s %(name)s: %(message)s"

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(_NeutralFormatter(self.FORMAT))  # names in the records shown()
        self.repeats: dict[tuple[str, int, str], list[Any]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        key = (record.name, record.levelno, str(record.msg))
        seen = self.repeats.get(key)
        if seen is None:
            self.repeats[key] = [0, set(), None, record]
            self._write(self.format(record))
            return
        seen[0] += 1
        if len(seen[1]) < 10_000:
            seen[1].add(record.getMessage())
        worst = seen[2]
        if worst is None or getattr(record, "deviation", 0.0) > getattr(worst, "deviation", 0.0):
            seen[2] = record

    def summary(self) -> list[str]:
        """One line per repeated message: how often, how many distinct, the worst case."""
        lines = []
        for (name, _, _), (more, distinct, worst, first) in self.repeats.items():
            if not more:
                continue
            variants = len(distinct | {first.getMessage()})
            worst = worst if worst is not None else first
            lines.append(f"{first.levelname} {shown(name)}: {more + 1:,} messages like "
                         f"'{shown(first.getMessage()[:60])}...'"
                         + (f" ({variants:,} distinct)" if variants > 1 else "")
                         + f"; worst: {shown(worst.getMessage())}")
        return lines

    def _write(self, text: str) -> None:
        try:
            sys.stderr.write(text + "\n")
        except (OSError, ValueError):  # a closed stream: nothing to tell
            pass


def _logging(verbose: bool) -> _Collapsing:
    """Route the library's log records through one :class:`_Collapsing` handler."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _Collapsing):
            root.removeHandler(handler)
    handler = _Collapsing()
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    return handler


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``sbc-deploy``; returns the exit code (0, 1, 2, 3 or 4; 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    streams = sys.stdout, sys.stderr
    previous = _sigint(signal.default_int_handler)  # Ctrl-C: KeyboardInterrupt from here on
    try:
        # everything printed passes through shown_lines: no escape sequence from a name or a
        # file reaches the terminal (names are also shown() where they are formatted)
        sys.stdout, sys.stderr = _Neutral(streams[0]), _Neutral(streams[1])
        return _main_guarded(argv)
    except KeyboardInterrupt:  # one line at any moment, even while torch is importing
        _say("interrupted")
        return 130
    finally:
        sys.stdout, sys.stderr = streams
        _sigint(previous)


def _sigint(handler: Any) -> Any:
    """Install ``handler`` for SIGINT (main thread only); return the one it replaced."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGINT, handler)


class _Neutral:
    """A text stream that writes through :func:`~sbc_deploy.untrusted.shown_lines`."""

    def __init__(self, raw: Any):
        self.raw = raw

    def write(self, text: str) -> int:
        return self.raw.write(shown_lines(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class _NeutralFormatter(logging.Formatter):
    """Log lines with their arguments (names, paths) shown() and the line shown_lines()."""

    def format(self, record: logging.LogRecord) -> str:
        if isinstance(record.args, tuple) and record.args:
            record = logging.makeLogRecord(record.__dict__)
            record.args = tuple(shown(a) if isinstance(a, (str, Path)) else a
                                for a in record.args)
        return shown_lines(super().format(record))


def _caused_by_interrupt(err: BaseException) -> bool:
    """True when a KeyboardInterrupt lies in ``err``'s chain (a library re-raised it)."""
    seen: list[BaseException] = []
    item: BaseException | None = err
    while item is not None and item not in seen and len(seen) < 16:
        if isinstance(item, KeyboardInterrupt):
            return True
        seen.append(item)
        item = item.__cause__ or item.__context__
    return False


def _main_guarded(argv: list[str]) -> int:
    _ARGV[:] = argv
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        return _main(argv)
    except Exception as err:  # noqa: BLE001 - the one place that turns a bug into exit 3
        if _caused_by_interrupt(err):  # e.g. numpy turns a Ctrl-C in its import into an
            _say("interrupted")  # ImportError ("IMPORTANT: PLEASE READ")
            return 130
        named = resource_error(err, stage=_STAGE[0] if _STAGE else None)
        if named is not None:  # a disk, limit or memory that ran out: not a bug
            if debug:
                import traceback

                traceback.print_exc()
            _say("error: ", named)
            return EXIT_RESOURCE
        if debug:
            import traceback

            traceback.print_exc()
        first = (str(err).strip().splitlines() or [""])[0][:200]
        _say(f"internal error: {type(err).__name__}: {first} -- this is a bug in sbc-deploy, "
             "please report it with the command line"
             + ("" if debug else " (run again with --debug for the traceback)"))
        return EXIT_INTERNAL


def _main(argv: list[str]) -> int:
    handler: _Collapsing | None = None
    try:
        if argv and argv[0] in COMMANDS:
            command = argv[0]
            args = _sub_parser(command).parse_args(argv[1:])
            handler = _logging(getattr(args, "verbose", False))
            runner = {"inspect": _run_inspect, "check": _run_check, "targets": _run_targets,
                      "simulate": _run_simulate}[command]
            return runner(args)
        args = deploy_parser().parse_args(argv)
        handler = _logging(args.verbose)
        return _run_deploy(args)
    except _UsageError as err:
        _say("", err)
        _say("run 'sbc-deploy --help' for usage")
        return EXIT_USAGE
    except GuardError as err:
        _say("quality guard: ", err)
        return EXIT_VIOLATION
    except ResourceError as err:
        _say("error: ", err)
        return EXIT_RESOURCE
    except SbcDeployError as err:
        _say("error: ", err)
        return EXIT_USAGE
    except SystemExit as err:  # --help and --version exit through argparse
        return int(err.code or 0)
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    finally:
        if handler is not None:
            logging.getLogger().removeHandler(handler)
            _log_summary(handler)


def _say(prefix: str, err: BaseException | str | None = None) -> None:
    """Print an error on stderr: the one place every error message of the CLI goes through.

    The message is neutralised as a whole (:func:`~sbc_deploy.untrusted.shown`: one line, every
    newline and control character escaped), so a name anywhere inside it -- not only in the
    ``where`` part -- cannot forge a line or move the cursor. An error that lists several
    problems (``err.items``: a ValidationError's problems, the guards that stopped, usage hints)
    gets one line per item, each neutralised the same way.
    """
    if err is None:
        head, items = "", ()
    elif isinstance(err, (SbcDeployError, _UsageError)):
        head, items = err.head, err.items
    else:
        head, items = str(err), ()
    lead = "  " if isinstance(err, _UsageError) else "  - "
    print(shown(prefix + head) + "".join(f"\n{lead}{shown(item)}" for item in items),
          file=sys.stderr)


def _log_summary(handler: _Collapsing | None = None) -> None:
    """Say the repeated log messages (once each) and forget them."""
    handler = handler or next((h for h in logging.getLogger().handlers
                               if isinstance(h, _Collapsing)), None)
    if handler is None:
        return
    for line in handler.summary():
        print(line, file=sys.stderr)
    handler.repeats.clear()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
