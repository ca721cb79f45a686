"""sbc-deploy: one-shot Spiking Brain Compression and deployment of SNNs to neuromorphic targets.

The public API is one verb per stage::

    graph = sbc_deploy.load("model.nir", dt=1e-3, reset="zero")      # NIR or lava-dl netx
    calibration = sbc_deploy.calibrate(graph, calib_data, config=config)
    compressed, stats = sbc_deploy.compress(graph, calibration, config)
    result = sbc_deploy.check(compressed, "loihi2")                   # every violation
    sbc_deploy.export(compressed, "netx", "out/model.net", steps=T)
    outputs = sbc_deploy.simulate(compressed, x)                       # float simulator
    sbc_deploy.deploy(sbc_deploy.DeployRequest(...))                   # all of it, plus the report

Most names are imported on first use. ``calibrate``, ``compress`` and ``check`` are bound at
import: they share their names with the modules ``sbc_deploy.calibrate``, ``sbc_deploy.compress``
and ``sbc_deploy.check``, and importing a submodule sets the package attribute to the module,
which would hide a lazily bound verb. Import from those modules with
``from sbc_deploy.compress import ...``.
"""

from __future__ import annotations

import importlib
from typing import Any

from sbc_deploy.version import __version__ as __version__

_EXPORTS: dict[str, tuple[str, str]] = {
    "load": ("sbc_deploy.frontends", "load_model"),
    "from_nir": ("sbc_deploy.frontends", "from_nir"),
    "from_netx": ("sbc_deploy.frontends", "from_netx"),
    "from_snntorch": ("sbc_deploy.frontends.from_snntorch", "from_snntorch"),
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


# Bound eagerly (see the module docstring): the verbs win over their subpackages' names.
from sbc_deploy.calibrate import calibrate  # noqa: E402
from sbc_deploy.check import check  # noqa: E402
from sbc_deploy.compress import compress  # noqa: E402


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
