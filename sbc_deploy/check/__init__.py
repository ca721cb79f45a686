"""Check a graph against a hardware target: every design rule, every violation.

    result = check(graph, "loihi2")
    for v in result.violations:
        print(v.layer, v.rule, v.limit, v.actual, v.message)
    result.mapping.cores_used

:func:`check` runs the rules the target lists (``check.rules.RULES``) and collects every
violation of every rule; it never stops at the first. It also returns the core-mapping estimate
(``check.mapping.map_to_cores``) that the per-core rules are judged on, and the chip / host
split (``check.split.chip_host_split``): which nodes the target runs and which stay on the host.

Rules apply to what the chip runs. When the chip runs part of the network, the nodes the split
leaves to the host (``check.split.offloaded``) are judged by no chip rule and hold no core:
each gets one warning, ``<why>; it runs on the host``, under the rule that places it
(``supported_neuron_model`` for a neuron, ``supported_layer_types`` otherwise). A target whose
chip can run none of the network's neuron layers (refused by ``validate.refusal``) is judged
whole, every rule on every node, so that its check lists all the chip would need.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sbc_deploy.check.mapping import (
    CoreUse,
    LayerPlacement,
    Mapping,
    MappingIssue,
    map_to_cores,
)
from sbc_deploy.check.rules import RULES, Rule, Violation, _mapping, host_placement
from sbc_deploy.check.split import (
    ChipHostSplit,
    HostNode,
    Segment,
    Transfer,
    chip_host_split,
    offloaded,
)
from sbc_deploy.errors import TargetError
from sbc_deploy.ir import Graph
from sbc_deploy.targets import Target, load_target

__all__ = ["RULES", "CheckResult", "ChipHostSplit", "CoreUse", "HostNode", "LayerPlacement",
           "Mapping", "MappingIssue", "Rule", "Segment", "Transfer", "Violation", "check",
           "chip_host_split", "map_to_cores"]


@dataclass(frozen=True)
class CheckResult:
    """Every violation of every rule the target lists, the mapping estimate and the chip /
    host split (``None`` only where a caller builds the result by hand)."""

    target: str
    rules: tuple[str, ...]
    violations: tuple[Violation, ...]
    mapping: Mapping
    split: ChipHostSplit | None = None
    offloaded: tuple[str, ...] = ()  # nodes judged and mapped as the host's (module docstring)

    @property
    def errors(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.severity == "error")

    @property
    def warnings(self) -> tuple[Violation, ...]:
        return tuple(v for v in self.violations if v.severity == "warning")

    @property
    def ok(self) -> bool:
        """True when no rule is broken (warnings allowed)."""
        return not self.errors


def check(graph: Graph, target: Target | str | Path) -> CheckResult:
    """Run every rule of ``target`` on ``graph`` and collect all violations.

    Args:
        graph: the network to check (not modified).
        target: a :class:`~sbc_deploy.targets.Target`, a bundled target's name or a TOML path.

    Raises:
        TargetError: the target is unknown or lists a rule that does not exist.
    """
    target = load_target(target)
    unknown = [r for r in target.rules if r not in RULES]
    if unknown:
        raise TargetError(f"lists unknown rules: {', '.join(unknown)}; known: "
                          f"{', '.join(RULES)}", where=f"target {target.name}")
    split = chip_host_split(graph, target)
    host = offloaded(graph, target, split)
    placed = tuple(host_placement(graph, target, h.name, h.reason) for h in split.host
                   if h.name in host)
    violations = placed + tuple(v for rule in target.rules
                                for v in RULES[rule](graph, target, host=host))
    return CheckResult(target.name, target.rules, violations, _mapping(graph, target, host),
                       split, tuple(sorted(host)))
