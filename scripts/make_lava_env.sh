#!/usr/bin/env bash
# Build the separate Lava environment used by the interop tests (tests/test_lava_interop.py).
#
#   scripts/make_lava_env.sh [DIR]        DIR defaults to <repo>/.lava-venv (git-ignored)
#
# lava-nc 0.10.0 and lava-dl 0.6.0 declare Python <3.11 and numpy <2; the main environment has
# Python 3.11 and numpy 2, so they live in their own venv, built with this recipe (DESIGN.md,
# "Real components, not mocks"):
#   1. torch==2.13.0 (CPU) first;
#   2. lava-nc==0.10.0 lava-dl==0.6.0 with --no-deps --ignore-requires-python;
#   3. their dependencies, with numpy<2 and networkx<=2.8.7 (the pins of lava's own metadata);
#   4. fix lava's magma/compiler/var_model.py: `x: ByteEncoder = ByteEncoder()` is a mutable
#      dataclass default that Python 3.11 refuses -> `field(default_factory=ByteEncoder)`;
#   5. a .pth file that registers empty torchvision, torchvision.ops, torchvision.transforms
#      modules (no CPU torchvision matches torch 2.13; lava.lib.dl imports it at import time).
# It then imports lava.lib.dl.netx and runs a one-neuron network in Loihi2SimCfg(fixed_pt).
#
# Idempotent: a finished environment carries a stamp with the recipe version; re-running checks
# the stamp and the import and returns in seconds. Fails loudly (set -e, explicit messages).
#
# Environment variables:
#   PYTHON           interpreter for the venv (default: python3.11, else python3; needs >= 3.10)
#   TORCH_INDEX_URL  extra index to find the CPU torch wheel on, e.g.
#                    https://download.pytorch.org/whl/cpu (default: pip's own configuration)
#   LAVA_ENV_FORCE=1 rebuild the recipe steps even when the stamp is present
set -euo pipefail

RECIPE_VERSION="1"   # bump when the recipe below changes: forces a re-run of the steps
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-$ROOT/.lava-venv}"
STAMP="$DIR/.sbc-lava-env"
START=$SECONDS

say() { printf '[make_lava_env] %s\n' "$*"; }
die() { printf '[make_lava_env] ERROR: %s\n' "$*" >&2; exit 1; }
trap 'printf "[make_lava_env] ERROR: failed at line %s: %s\n" "$LINENO" "$BASH_COMMAND" >&2' ERR

if [[ -z "${PYTHON:-}" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
command -v "$PYTHON" >/dev/null 2>&1 || die "interpreter '$PYTHON' not found (set PYTHON=...)"

PY="$DIR/bin/python"

smoke_test() {
    # Import netx and run one LIF neuron for 3 steps in the fixed-point simulator.
    "$PY" - <<'EOF'
import numpy as np
from lava.lib.dl import netx  # noqa: F401  (needs both fixes)
from lava.magma.core.run_conditions import RunSteps
from lava.magma.core.run_configs import Loihi2SimCfg
from lava.proc.lif.process import LIF

lif = LIF(shape=(1,), vth=10, du=4095, dv=0, bias_mant=1, bias_exp=6)
lif.run(condition=RunSteps(num_steps=3), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
v = int(lif.v.get()[0])
lif.stop()
# fixed point: v[t] = v[t-1] + (1 << 6) per step, no spike below vth << 6 = 640
assert v == 3 * 64, f"unexpected fixed-point voltage {v}"
print("lava fixed_pt smoke test: ok")
EOF
}

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$RECIPE_VERSION" && -x "$PY" \
      && "${LAVA_ENV_FORCE:-0}" != "1" ]]; then
    say "stamp found in $DIR; checking that the environment still works"
    if smoke_test; then
        say "up to date ($((SECONDS - START)) s)"
        exit 0
    fi
    say "the existing environment is broken; re-running the recipe"
fi

"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 10), sys.version' \
    || die "$PYTHON is older than Python 3.10"

if [[ ! -x "$PY" ]]; then
    say "creating venv $DIR with $("$PYTHON" --version)"
    "$PYTHON" -m venv "$DIR"
fi
rm -f "$STAMP"
PIP=("$PY" -m pip install --disable-pip-version-check)

torch_args=()
if [[ -n "${TORCH_INDEX_URL:-}" ]]; then torch_args=(--extra-index-url "$TORCH_INDEX_URL"); fi
say "step 1/5: torch==2.13.0 (CPU)"
"${PIP[@]}" "${torch_args[@]}" "torch==2.13.0"
"$PY" -W ignore -c 'import torch; assert torch.__version__.startswith("2.13.0"), torch.__version__' \
    || die "torch 2.13.0 is not what got installed"

say "step 2/5: lava-nc==0.10.0 lava-dl==0.6.0 (--no-deps --ignore-requires-python)"
"${PIP[@]}" --no-deps --ignore-requires-python "lava-nc==0.10.0" "lava-dl==0.6.0"

# The Requires-Dist of lava-nc 0.10.0 and lava-dl 0.6.0, except torch/torchvision (step 1 and 5)
# and the test-only pytest, unittest2 and ninja (slayer's CUDA extension builder).
say "step 3/5: dependencies (numpy<2, networkx<=2.8.7, ...)"
"${PIP[@]}" "numpy>=1.24.4,<2" "networkx<=2.8.7" "asteval>=0.9.31,<0.10" \
    "scipy>=1.10.1,<2" "h5py>=3.7,<4" "matplotlib>=3.5.2,<4" "scikit-learn>=1.5,<2" \
    "opencv-python-headless>=4.8.1.78,<5" "pillow>=10.0.1,<11"

PURELIB="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
VAR_MODEL="$PURELIB/lava/magma/compiler/var_model.py"
[[ -f "$VAR_MODEL" ]] || die "$VAR_MODEL is missing: lava-nc did not install"

say "step 4/5: patching mutable dataclass defaults in $VAR_MODEL"
"$PY" - "$VAR_MODEL" <<'EOF'
import re
import sys

path = sys.argv[1]
text = open(path, encoding="utf-8").read()
fixed, count = re.subn(r"(\w+): ByteEncoder = ByteEncoder\(\)",
                       r"\1: ByteEncoder = field(default_factory=ByteEncoder)", text)
if "from dataclasses import dataclass, InitVar\n" in fixed:
    fixed = fixed.replace("from dataclasses import dataclass, InitVar\n",
                          "from dataclasses import dataclass, field, InitVar\n", 1)
if "field(default_factory=ByteEncoder)" in fixed and not re.search(
        r"from dataclasses import [^\n]*\bfield\b", fixed):
    sys.exit(f"cannot add 'field' to the dataclasses import of {path}")
if fixed != text:
    open(path, "w", encoding="utf-8").write(fixed)
print(f"  replaced {count} field(s); already patched: {count == 0}")
EOF

say "step 5/5: empty torchvision stubs via $PURELIB/sbc_lava_torchvision_stub.pth"
cat > "$PURELIB/sbc_lava_torchvision_stub.py" <<'EOF'
"""Written by sbc-deploy's scripts/make_lava_env.sh: empty torchvision modules for lava.lib.dl.

No CPU torchvision matches torch 2.13; lava.lib.dl imports it only for object detection, which
the netx reader never uses. Does nothing when a real torchvision is installed.
"""
import importlib.util
import sys
import types

if "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is None:
    _root = types.ModuleType("torchvision")
    for _sub in ("ops", "transforms"):
        _module = types.ModuleType(f"torchvision.{_sub}")
        setattr(_root, _sub, _module)
        sys.modules[f"torchvision.{_sub}"] = _module
    sys.modules["torchvision"] = _root
EOF
echo "import sbc_lava_torchvision_stub" > "$PURELIB/sbc_lava_torchvision_stub.pth"

say "checking: import lava.lib.dl.netx and a fixed-point run"
smoke_test || die "the Lava environment does not work (see the traceback above)"
"$PY" -c 'import numpy, networkx; print(f"  numpy {numpy.__version__}, networkx {networkx.__version__}")'
echo "$RECIPE_VERSION" > "$STAMP"
say "done: $DIR ready in $((SECONDS - START)) s"
