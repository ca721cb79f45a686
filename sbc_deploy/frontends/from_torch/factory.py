"""``path/to/net.py:build --weights ckpt.pth``: the user's own code builds the module.

Stage contract: (factory spec, weights file) -> ``nn.Module`` with the weights loaded, or an
error naming what was wrong; nothing is written either way.

- The factory is ``FILE.py:NAME``: the file is imported as a module of its own (its folder on
  ``sys.path`` while it is imported, so it can import its neighbours) and ``NAME()`` is called
  with no arguments. It is the user's code and runs as such; an exception it raises is a
  :class:`ConfigError` naming the factory (exit 2).
- The weights are read with ``torch.load(weights_only=True)``: tensors and plain containers only.
  A pickle that would import or call anything (code) is refused by torch's restricted unpickler
  before it runs. A plain state dict or one under the key ``state_dict`` (a checkpoint) is
  taken; missing, unexpected and mis-shaped entries are all listed at once. Names read from the
  file are shown through ``ascii()`` (no control characters reach the terminal).
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from sbc_deploy.errors import ConfigError, FormatError

FACTORY = re.compile(r"^(?P<file>.+\.py):(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")
_SHOWN = 12   # entries listed per kind of mismatch

__all__ = ["FACTORY", "is_factory_spec", "load_factory", "load_weights", "apply_weights"]


def is_factory_spec(text: str | None) -> bool:
    """True for ``FILE.py:NAME``."""
    return isinstance(text, str) and FACTORY.match(text) is not None


def _safe(text: Any) -> str:
    return ascii(str(text))[1:-1]


def load_factory(spec: str) -> nn.Module:
    """Import ``FILE.py`` and return ``NAME()``.

    Raises:
        ConfigError: not ``FILE.py:NAME``, the file is missing, importing it or calling the
            factory raised, the name is missing or not callable, or it returned no module.
    """
    match = FACTORY.match(spec)
    if match is None:
        raise ConfigError(f"expected FILE.py:FACTORY, got {_safe(spec)}", where="MODEL")
    path, name = Path(match["file"]), match["name"]
    where = f"{_safe(path)}:{name}"
    if not path.is_file():
        raise ConfigError("the factory file does not exist", where=_safe(path))
    unique = "sbc_user_factory_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    spec_obj = importlib.util.spec_from_file_location(unique, path)
    if spec_obj is None or spec_obj.loader is None:
        raise ConfigError("cannot be imported as a Python module", where=_safe(path))
    code = importlib.util.module_from_spec(spec_obj)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        spec_obj.loader.exec_module(code)
    except Exception as err:  # the user's code: any failure is their input's
        raise ConfigError(f"importing the factory file raised {type(err).__name__}: "
                          f"{_safe(err)}", where=_safe(path)) from err
    finally:
        if sys.path and sys.path[0] == folder:
            sys.path.pop(0)
    factory = getattr(code, name, None)
    if not callable(factory):
        found = sorted(n for n, v in vars(code).items() if callable(v) and not n.startswith("_"))
        raise ConfigError(f"the file defines no callable '{name}'; callables: "
                          f"{', '.join(found[:20]) or 'none'}", where=where)
    try:
        module = factory()
    except Exception as err:
        raise ConfigError(f"the factory raised {type(err).__name__}: {_safe(err)}",
                          where=where) from err
    if not isinstance(module, nn.Module):
        raise ConfigError(f"the factory returned a {type(module).__name__}, not a "
                          "torch.nn.Module", where=where)
    return module


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path`` (``torch.load(weights_only=True)``; see the module docstring).

    Raises:
        FormatError: missing or unreadable file, a pickle holding code or other objects, or no
            mapping of names to tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FormatError("the weights file does not exist", where=_safe(path))
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError (code refused), corrupt zip, EOF, ...
        first = (str(err).strip().splitlines() or [""])[0]
        raise FormatError("is not a weights file that torch.load(weights_only=True) accepts "
                          f"(tensors and plain containers only): {type(err).__name__}: "
                          f"{_safe(first)[:300]}", where=_safe(path)) from err
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise FormatError(f"holds a {type(loaded).__name__}, not a state dict (a mapping of "
                          "parameter names to tensors, plain or under 'state_dict')",
                          where=_safe(path))
    bad = [k for k, v in loaded.items() if not isinstance(k, str) or
           not isinstance(v, torch.Tensor)]
    if bad:
        raise FormatError(f"{len(bad)} entries are not name -> tensor, e.g. "
                          f"{', '.join(_safe(k) for k in bad[:_SHOWN])}", where=_safe(path))
    return dict(loaded)


def apply_weights(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module`` after listing every missing, unexpected and mis-shaped
    entry at once.

    Raises:
        FormatError: any mismatch (nothing is loaded).
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    shapes = [f"{_safe(k)} (file {tuple(state[k].shape)}, module {tuple(expected[k].shape)})"
              for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    for label, items in (("missing", [_safe(k) for k in missing]),
                         ("unexpected", [_safe(k) for k in extra]), ("mis-shaped", shapes)):
        if items:
            more = f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:_SHOWN])}{more}")
    if problems:
        raise FormatError("does not fit the module: " + "; ".join(problems), where=_safe(source))
    module.load_state_dict(dict(state), strict=True)
