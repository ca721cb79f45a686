"""sbc-deploy: one-shot Spiking Brain Compression and deployment of SNNs to neuromorphic targets.

The public API is one verb per stage::

    graph = sbc_deploy.load("model.nir", dt=1e-3, reset="zero")      # NIR or lava-dl netx
    calibration = sbc_deploy.calibrate(graph, calib_data, config=config)
    compressed, stats = sbc_deploy.compress(graph, calibration, config)
    result = sbc_deploy.check(compressed, "loihi2")                   # every violation
    sbc_deploy.export(compressed, "netx", "out/model.net", steps=T)
    outputs = sbc_deploy.simulate(compressed, x)                       # float simulator
    sbc_deploy.deploy(sbc_deploy.DeployRequest(...))                   # all of it, plus the report
    compressed, report, graph = sbc_deploy.oneshot(torch_module, calib, target="loihi2")

Every name is imported on first use, so ``import sbc_deploy`` (and the ``sbc-deploy`` command,
whose entry point lives in this package) starts without loading torch: Ctrl-C at any moment is
handled by the CLI. ``calibrate``, ``compress`` and ``check`` share their names with the modules
``sbc_deploy.calibrate``, ``sbc_deploy.compress`` and ``sbc_deploy.check``; importing a
submodule sets the package attribute to the module, so the package's class keeps the verbs as
properties that such an assignment cannot replace. Import from those modules with
``from sbc_deploy.compress import ...``.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from sbc_deploy.version import __version__ as __version__

_EXPORTS: dict[str, tuple[str, str]] = {
    "load": ("sbc_deploy.frontends", "load_model"),
    "from_nir": ("sbc_deploy.frontends", "from_nir"),
    "from_netx": ("sbc_deploy.frontends", "from_netx"),
    "from_snntorch": ("sbc_deploy.frontends.from_snntorch", "from_snntorch"),
    "from_torch": ("sbc_deploy.frontends.from_torch", "from_torch"),
    "oneshot": ("sbc_deploy.torch_oneshot", "oneshot"),
    "load_data": ("sbc_deploy.data", "load_data"),
    "config_for": ("sbc_deploy.compress.config", "config_for"),
    "config_for_target": ("sbc_deploy.compress.config", "config_for_target"),
    "SBCConfig": ("sbc_deploy.compress.config", "SBCConfig"),
    "OBCConfig": ("sbc_deploy.compress.config", "OBCConfig"),
    "MagnitudeConfig": ("sbc_deploy.compress.config", "MagnitudeConfig"),
    "load_target": ("sbc_deploy.targets", "load_target"),
    "simulate": ("sbc_deploy.sim", "simulate"),
    "simulate_integer": ("sbc_deploy.sim.int_core", "simulate_integer"),
    "to_fixed_point": ("sbc_deploy.sim.fixed_point", "to_fixed_point"),
    "deploy": ("sbc_deploy.pipeline", "deploy"),
    "DeployRequest": ("sbc_deploy.pipeline", "DeployRequest"),
    "Graph": ("sbc_deploy.ir", "Graph"),
}


# The verbs that share their names with subpackages (see the module docstring).
_VERBS: dict[str, tuple[str, str]] = {
    "calibrate": ("sbc_deploy.calibrate", "calibrate"),
    "check": ("sbc_deploy.check", "check"),
    "compress": ("sbc_deploy.compress", "compress"),
}


def _verb(name: str) -> property:
    module, attr = _VERBS[name]

    def get(self: types.ModuleType) -> Any:
        bound = self.__dict__.get("_bound_verbs", {})
        if name in bound:
            return bound[name]
        return getattr(importlib.import_module(module), attr)

    def set_(self: types.ModuleType, value: Any) -> None:
        if isinstance(value, types.ModuleType):  # the import system binding the submodule
            return
        self.__dict__.setdefault("_bound_verbs", {})[name] = value  # a user's rebinding

    return property(get, set_, doc=f"``{module}.{attr}`` (imported on first use)")


class _Package(types.ModuleType):
    calibrate = _verb("calibrate")
    check = _verb("check")
    compress = _verb("compress")


sys.modules[__name__].__class__ = _Package


def export(graph: Any, fmt: str, path: Any, *, steps: int, **options: Any) -> Any:
    """Write ``graph`` as ``fmt`` (``"netx"``, ``"nir"`` or ``"onnx"``) to ``path``.

    ``options`` go to the writer: ``nir_for="snntorch"`` etc. for NIR (see ``--nir-for``)."""
    from sbc_deploy.errors import ConfigError
    from sbc_deploy.exporters import EXPORTERS

    if fmt not in EXPORTERS:
        raise ConfigError(f"unknown format {fmt!r}; known: {', '.join(EXPORTERS)}",
                          where="export(fmt=)")
    return EXPORTERS[fmt](graph, path, steps=steps, **options)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attr = _EXPORTS[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'sbc_deploy' has no attribute {name!r}")


__all__ = sorted([*_EXPORTS, "calibrate", "check", "compress", "export", "__version__"])
