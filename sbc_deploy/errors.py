"""One exception family. Every error says what was wrong and where.

``where`` names the file, node, layer or parameter at fault; ``str(err)`` reads
``"<where>: <message>"`` so the CLI can print it as is. ``where`` often comes from input (a
path, a node name), so the text shows it neutralised (:func:`sbc_deploy.untrusted.shown`: one
line, control characters escaped) and clipped to :data:`WHERE_CHARS` characters;
``err.where`` keeps it as given.

An error that lists several problems passes them as ``items``: ``str(err)`` puts each on a line
of its own (``"\n  - item"``) after the head (``err.head``: where, message, hint). The CLI prints
``err.head`` and each item as one neutralised line each, so nothing inside a message (a name
with a newline) can forge a line of its own.
"""

from __future__ import annotations

from sbc_deploy.untrusted import shown

WHERE_CHARS = 240


def _place(where: str) -> str:
    text = shown(where)
    if len(text) <= WHERE_CHARS:
        return text
    return f"{text[:WHERE_CHARS]}... ({len(where)} characters)"


class SbcDeployError(Exception):
    """Base class of every error this package raises on purpose."""

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None,
                 items: tuple[str, ...] | list[str] = ()):
        self.message = message
        self.where = where
        self.hint = hint
        self.items = tuple(items)
        text = f"{_place(where)}: {message}" if where else message
        if hint:
            text = f"{text} (hint: {hint})"
        self.head = text
        super().__init__(text + "".join(f"\n  - {item}" for item in self.items))


class IRError(SbcDeployError):
    """The graph or one of its nodes is inconsistent (bad parameter, bad edge)."""


class ShapeError(IRError):
    """Shapes along an edge or inside a node do not agree."""


class UnsupportedNodeError(IRError):
    """A model contains a node type that the importer or exporter cannot handle."""


class FormatError(SbcDeployError):
    """A file is missing, unreadable, corrupt, or not the format it claims to be."""


class DataError(SbcDeployError):
    """Calibration or evaluation data is missing, malformed or does not fit the graph."""


class ConfigError(SbcDeployError):
    """A configuration value (CLI flag, config dataclass field) is invalid."""


class TargetError(SbcDeployError):
    """A hardware target file is invalid or unknown."""


class NumericalError(SbcDeployError):
    """A numerical routine failed (for example a Hessian that stays indefinite)."""


class ExportError(SbcDeployError):
    """A graph cannot be written in the requested format."""


class PathError(SbcDeployError):
    """A path derived from input (a target's name, a manifest entry) would lead outside the
    output folder, or a write was about to land outside it: refused, nothing written there."""


class ResourceError(SbcDeployError):
    """The machine ran out of something (disk space, a file size limit, a disk quota, memory,
    GPU memory): not bad input and not a bug; exit code 4. ``resource`` names what ran out
    (see :mod:`sbc_deploy.resources`)."""

    def __init__(self, message: str, *, resource: str, where: str | None = None,
                 hint: str | None = None, items: tuple[str, ...] | list[str] = ()):
        self.resource = resource
        super().__init__(message, where=where, hint=hint, items=items)


class GuardError(SbcDeployError):
    """A quality guard stopped the run early (exit 1, not bad input): for example the dense
    network is silent or at chance on the user's data, so compressing it would be wasted.

    ``findings`` holds the :class:`~sbc_deploy.report.model.Finding` values that stopped it.
    """

    def __init__(self, message: str, *, findings: tuple = (), where: str | None = None,
                 hint: str | None = None, items: tuple[str, ...] | list[str] = ()):
        self.findings = tuple(findings)
        super().__init__(message, where=where, hint=hint, items=items)
