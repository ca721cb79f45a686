#!/usr/bin/env bash
# Build the separate framework environments used by tests/test_framework_interop.py.
#
#   scripts/make_framework_envs.sh [NAME ...]     NAME in: torch sinabs spyx spikingjelly
#                                                 (default: all four)
#
# Each environment is a venv under <repo>/.fw-venvs/<NAME> (git-ignored; override the parent
# folder with FW_VENVS_DIR). Frameworks whose pins agree share one environment:
#
#   torch   snntorch==1.0.0, norse==1.1.0, rockpool==3.1.0, nir==1.0.8, nirtorch==2.6,
#           torch==2.13.0 (CPU)
#   sinabs  sinabs==3.1.3, nir==1.0.4 (sinabs 3.1.3 declares nir<=1.0.4), nirtorch==1.0
#           (the last nirtorch that accepts nir<1.0.6 and still has sinabs' nirtorch.load),
#           torch==2.13.0 (CPU)
#   spyx    spyx==1.0.0, jax/jaxlib==0.10.2, flax==0.12.8, optax==0.2.8, nir==1.0.8
#   spikingjelly  spikingjelly==2.0.0, nir==1.0.8, nirtorch==2.6, torch==2.13.0 (CPU)
#           (section "spikingjelly" below; used by tests/test_spikingjelly.py)
#
# lava-dl stays in its own environment (scripts/make_lava_env.sh, <repo>/.lava-venv).
#
# Deviations from the packages' declared dependencies, all for packages the drivers never import:
#   - norse 1.1.0 declares torchvision (used only by norse.task / norse.dataset); no CPU
#     torchvision matches torch 2.13 here, so norse is installed with --no-deps plus numpy, nir,
#     nirtorch.
#   - sinabs 3.1.3 declares samna (the DYNAP-CNN chip driver, a large binary used only by
#     sinabs.backend.dynapcnn); sinabs is installed with --no-deps plus its other dependencies.
#   - rockpool 3.1.0's NIR bridge needs torch and nirtorch (its [torch] extra also names
#     torchvision, which rockpool.nn.modules.torch does not import).
#
# Time: from scratch with no pip cache, 459 s wall (90 s CPU) for all three on this 2-core machine
# under a load average of ~9 (the wheels come from the package index; torch is the big one);
# a re-run with the stamps present takes a few seconds per environment (smoke imports).
#
# Idempotent: each finished environment carries a stamp with the recipe version; re-running
# checks the stamp and a smoke import and returns in seconds. Fails loudly.
#
# Environment variables:
#   PYTHON           interpreter for the venvs (default: python3.11, else python3)
#   TORCH_INDEX_URL  extra index for the CPU torch wheel (default: pip's own configuration)
#   FW_VENVS_DIR     parent folder of the venvs (default: <repo>/.fw-venvs)
#   FW_ENV_FORCE=1   rebuild even when the stamp is present
set -euo pipefail

RECIPE_VERSION="1"   # bump when a recipe below changes: forces a re-run of its steps
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE="${FW_VENVS_DIR:-$ROOT/.fw-venvs}"
START=$SECONDS

say() { printf '[make_framework_envs] %s\n' "$*"; }
die() { printf '[make_framework_envs] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'printf "[make_framework_envs] ERROR: failed at line %s: %s\n" "$LINENO" "$BASH_COMMAND" >&2' \
    ERR

if [[ -z "${PYTHON:-}" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
command -v "$PYTHON" >/dev/null 2>&1 || die "interpreter '$PYTHON' not found (set PYTHON=...)"

torch_args=()
if [[ -n "${TORCH_INDEX_URL:-}" ]]; then torch_args=(--extra-index-url "$TORCH_INDEX_URL"); fi

smoke() {  # smoke NAME: import what the drivers import and print the versions
    local py="$BASE/$1/bin/python"
    case "$1" in
        torch) "$py" -W ignore -c '
import importlib.metadata as md, torch, nir, nirtorch, snntorch, norse.torch, rockpool
from snntorch.export_nir import export_to_nir
from snntorch.import_nir import import_from_nir
from rockpool.nn.modules import to_nir, from_nir
assert torch.__version__.startswith("2.13.0"), torch.__version__
print("  " + ", ".join(f"{p} {md.version(p)}" for p in
      ("torch", "snntorch", "norse", "rockpool", "nir", "nirtorch")))' ;;
        sinabs) "$py" -W ignore -c '
import importlib.metadata as md, torch, nir, sinabs
from sinabs import from_nir, to_nir
assert torch.__version__.startswith("2.13.0"), torch.__version__
print("  " + ", ".join(f"{p} {md.version(p)}" for p in ("torch", "sinabs", "nir", "nirtorch")))' ;;
        spyx) "$py" -W ignore -c '
import importlib.metadata as md, jax, nir, spyx, spyx.nir
print("  " + ", ".join(f"{p} {md.version(p)}" for p in ("spyx", "jax", "flax", "nir")))' ;;
        spikingjelly) "$py" -W ignore -c '
import importlib.metadata as md, sys, types, torch, nir, nirtorch
assert "torchvision" not in {d.metadata["Name"] for d in md.distributions()}, "torchvision"
for name in ("torchvision", "torchvision.models", "torchvision.models.utils"):
    sys.modules[name] = types.ModuleType(name)  # as the driver does (see the section below)
sys.modules["torchvision.models.utils"].load_state_dict_from_url = None
from spikingjelly.activation_based import functional, layer, neuron
from spikingjelly.activation_based.model import sew_resnet, spiking_vgg, spikformer
from spikingjelly.activation_based.nir_exchange import export_to_nir
assert torch.__version__.startswith("2.13.0"), torch.__version__
print("  " + ", ".join(f"{p} {md.version(p)}" for p in
      ("torch", "spikingjelly", "nir", "nirtorch")))' ;;
    esac
}

build() {  # build NAME
    local name="$1" dir="$BASE/$1" t0=$SECONDS
    local py="$dir/bin/python" stamp="$dir/.sbc-fw-env"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$RECIPE_VERSION" && -x "$py" \
          && "${FW_ENV_FORCE:-0}" != "1" ]]; then
        if smoke "$name"; then say "$name: up to date ($((SECONDS - t0)) s)"; return 0; fi
        say "$name: the existing environment is broken; re-running the recipe"
    fi
    [[ -x "$py" ]] || "$PYTHON" -m venv "$dir"
    rm -f "$stamp"
    local pip=("$py" -m pip install --disable-pip-version-check -q)
    case "$name" in
        torch)
            "${pip[@]}" "${torch_args[@]}" "torch==2.13.0"
            "${pip[@]}" "snntorch==1.0.0" "rockpool==3.1.0" "nir==1.0.8" "nirtorch==2.6" \
                "numpy>=1.24,<3" "scipy" "torch==2.13.0"
            "${pip[@]}" --no-deps "norse==1.1.0" ;;
        sinabs)
            "${pip[@]}" "${torch_args[@]}" "torch==2.13.0"
            "${pip[@]}" "nir==1.0.4" "nirtorch==1.0" "pbr" "matplotlib" "numpy>=1.24,<3" \
                "torch==2.13.0"
            "${pip[@]}" --no-deps "sinabs==3.1.3" ;;
        spyx)
            "${pip[@]}" "spyx==1.0.0" "jax[cpu]==0.10.2" "flax==0.12.8" "optax==0.2.8" \
                "nir==1.0.8" ;;
        spikingjelly)
            # spikingjelly 2.0.0 declares torchvision and torchaudio (used by its datasets,
            # model-zoo weight downloads and examples, none of which the driver runs); pip
            # resolves them to CUDA builds that fail beside the CPU torch ("operator
            # torchvision::nms does not exist"). So: --no-deps, plus what the driver's imports
            # need (numpy, loguru; nir and nirtorch for its NIR export, which it does not declare
            # outside its [nir] extra). The driver registers an empty torchvision module for
            # the zoo's `from torchvision.models.utils import load_state_dict_from_url`.
            "${pip[@]}" "${torch_args[@]}" "torch==2.13.0"
            "${pip[@]}" "nir==1.0.8" "nirtorch==2.6" "numpy>=1.24,<3" "packaging" "loguru>=0.7,<1" \
                "torch==2.13.0"
            "${pip[@]}" --no-deps "spikingjelly==2.0.0" ;;
        *) die "unknown environment '$name' (known: torch sinabs spyx spikingjelly)" ;;
    esac
    smoke "$name" || die "the $name environment does not import (see the traceback above)"
    echo "$RECIPE_VERSION" > "$stamp"
    say "$name: ready in $((SECONDS - t0)) s"
}

mkdir -p "$BASE"
names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(torch sinabs spyx spikingjelly)
for name in "${names[@]}"; do build "$name"; done
say "done in $((SECONDS - START)) s: ${names[*]} under $BASE"
