#!/usr/bin/env bash
# The GPU checks of one session, in one command (a lent GPU machine's time is short):
# the CUDA tests, then benchmarks/gpu.py, whose tables are saved after every network so that
# a run stopped at its time limit keeps what it measured.
#
#   OUT=build/gpu bash benchmarks/gpu_session.sh        # from the repository root, with CUDA
#
# On a machine whose Python lacks nir (the project's pin), put its wheel in .whl/ first:
#   pip download --no-deps -d .whl nir==1.0.8
# Environment: OUT (where logs and tables go, default build/gpu), BENCH_TIMEOUT (seconds for
# the benchmark, default 420), BENCH_ARGS (extra arguments of benchmarks/gpu.py, e.g. --quick),
# TESTS (the test files, default the CUDA ones).
set -u
OUT=${OUT:-build/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/sbc-site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/sbc-site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, os; print('torch', torch.__version__, torch.version.cuda, os.cpu_count(), 'CPUs')"
python3 -m pytest -q -p no:cacheprovider -rs ${TESTS:-tests/test_device.py} 2>&1 | tee "$OUT/pytest.log" | tail -n 30
timeout "${BENCH_TIMEOUT:-420}" python3 benchmarks/gpu.py ${BENCH_ARGS:-} --out "$OUT/gpu.md" \
    > "$OUT/gpu.log" 2>&1
echo "benchmarks/gpu.py exit $?"
tail -n 45 "$OUT/gpu.log"
