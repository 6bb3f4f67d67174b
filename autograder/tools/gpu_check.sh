#!/usr/bin/env bash
# One run on a GPU machine: flowlab grade --device cuda against --device cpu, and its throughput.
#
#   bash autograder/tools/gpu_check.sh [OUT]          (OUT: $OUT, else /tmp/flowlab-gpu-check)
#
# From the repository root, as root, with python3 holding torch with CUDA. Packages the machine
# lacks come as wheels in .whl/ (the Jupyter and nbgrader stack), bubblewrap as Debian packages
# in .bwrap/ where bwrap is missing; both folders are git-ignored (.git/info/exclude) and made on
# a machine with a package index (autograder/README.md, "Grading on a GPU", says how). Steps,
# each logged to OUT/log.txt and skipped when too little of the time budget is left:
#   1. install: the wheels into python3's environment (the sandbox sees only that), flowlab and
#      flowlab_grader from this tree (.pth + their entry points), bwrap in a private prefix;
#   2. COPIES x (8 solutions + 8 releases) graded with --jobs 16 on cuda, then on cpu (each timed),
#      and three CPU-only mistakes of notebook 01 on both; the verdict (autograder/tools/gpu_check.py);
#   3. flowlab bench grading --copies 4 (32 solutions; the default device: cuda here): submissions per
#      minute per core and what 2,400 notebooks cost;
#   4. pytest tests/test_grading_device.py (its CUDA half runs here);
#   5. whether CUDA starts in a sandboxed job under RLIMIT_DATA 1, 2 and 4 GiB (6 is the default,
#      which step 2 used);
#   6. if time is left: the calibration on the GPU (pytest tests/test_grading_cases.py -k cuda).
set -u
OUT=${1:-${OUT:-/tmp/flowlab-gpu-check}}
PYTHON=${PYTHON:-python3}      # the Python that holds torch (here: a local .venv/bin/python to try the script)
SKIP_INSTALL=${SKIP_INSTALL:-} # set where flowlab and the grader are installed already
BUDGET=${BUDGET:-360}          # seconds for the whole script
COPIES=${COPIES:-2}
JOBS=${JOBS:-16}
DEVICE=${DEVICE:-cuda}         # DEVICE=cpu tries the script where there is no GPU (the verdict then fails)
mkdir -p "$OUT"
LOG=$OUT/log.txt
START=$(date +%s)
export PYTHONUNBUFFERED=1
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
say() { echo "[$(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }
step() {   # step NAME SECONDS_NEEDED COMMAND...: run COMMAND (at most what is left) if enough time is left
  local name=$1 needed=$2; shift 2
  if (( $(left) < needed )); then say "SKIPPED $name: $(left) s left, needs ~$needed s"; return 99; fi
  say "BEGIN $name"
  timeout "$(left)" bash -c '"$@"' "$name" "$@" >>"$LOG" 2>&1; local code=$?
  say "END $name: exit $code"
  return $code
}

say "machine: $(nproc) cores; $(nvidia-smi -L 2>&1 | head -2 | tr '\n' ' ')"
"$PYTHON" -c "import sys, torch; print('python', sys.version.split()[0], sys.prefix, '| torch', torch.__version__, \
'| cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '', \
'| TF32 matmul', torch.backends.cuda.matmul.allow_tf32, 'cudnn', torch.backends.cudnn.allow_tf32)" 2>&1 | tee -a "$LOG"

# ---- 1. install ----------------------------------------------------------------------------------
install() {
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir .whl/*.whl || return 1
  local site; site=$("$PYTHON" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  echo "$PWD" > "$site/flowlab-tree.pth"; echo "$PWD/autograder" >> "$site/flowlab-tree.pth"
  for dist in flowlab flowlab_grader; do   # what the flowlab command and grader_version() read
    mkdir -p "$site/$dist-0.1.0.dist-info"
    printf 'Metadata-Version: 2.1\nName: %s\nVersion: 0.1.0\n' "${dist/_/-}" > "$site/$dist-0.1.0.dist-info/METADATA"
  done
  printf '[flowlab.commands]\ngrader = flowlab_grader.commands:cli_commands\n' \
    > "$site/flowlab_grader-0.1.0.dist-info/entry_points.txt"
  if ! command -v bwrap >/dev/null && ls .bwrap/*.deb >/dev/null 2>&1; then
    for deb in .bwrap/*.deb; do dpkg -x "$deb" /tmp/bwrap-root; done
    mkdir -p /tmp/bwrap-bin
    printf '#!/bin/sh\nLD_LIBRARY_PATH=/tmp/bwrap-root/lib/x86_64-linux-gnu:/tmp/bwrap-root/usr/lib/x86_64-linux-gnu exec /tmp/bwrap-root/usr/bin/bwrap "$@"\n' \
      > /tmp/bwrap-bin/bwrap
    chmod +x /tmp/bwrap-bin/bwrap
  fi
  "$PYTHON" -c "import nbgrader, nbclient, ipykernel, ipywidgets, flowlab, flowlab_grader; print('imports ok')"
}
export PYTHON LOG START BUDGET JOBS
export -f install
if [ -z "$SKIP_INSTALL" ]; then
  step install 60 install || { say "install failed: nothing else can run"; exit 1; }
fi
export PATH=/tmp/bwrap-bin:$PATH
say "bwrap: $(command -v bwrap) $(bwrap --version 2>&1)"

# ---- 2. grading: cuda vs cpu, timed ---------------------------------------------------------------
SUBS=/tmp/flowlab-gpu-subs
rm -rf "$SUBS" /tmp/flowlab-gpu-results
step submissions 10 "$PYTHON" autograder/tools/gpu_check.py submissions "$SUBS" --copies "$COPIES"
ISOLATION=""
LEVEL=$(timeout 120 "$PYTHON" autograder/tools/gpu_check.py isolation --device "$DEVICE" 2>>"$LOG" | tail -1)
say "isolation: ${LEVEL:-unknown}"
if [ "${LEVEL%% *}" != bwrap ]; then   # grade anyway, and say so: the verdict is about the GPU path
  say "grading with --allow-unisolated (bwrap taken out of PATH)"; ISOLATION=--allow-unisolated
  export PATH=${PATH#/tmp/bwrap-bin:}
fi
export ISOLATION
R=/tmp/flowlab-gpu-results
grade() {   # grade NAME DEVICE SUBMISSIONS: time one batch into $R/NAME
  local started; started=$(date +%s%N)
  "$PYTHON" -m flowlab.cli grade "$3" --out "$R/$1" --device "$2" --jobs "$JOBS" $ISOLATION
  local code=$? count; count=$(ls -d "$3"/*/*/ | wc -l)
  local ms=$(( ($(date +%s%N) - started) / 1000000 ))
  echo "TIMING $1: $count submissions in $ms ms wall with --jobs $JOBS on $(nproc) cores:" \
       "$(awk -v n="$count" -v ms="$ms" 'BEGIN { printf "%.1f", n * 60000 / ms }') submissions per minute"
  return $code
}
export R
export -f grade
step grade-cuda 90 grade clean-cuda "$DEVICE" "$SUBS/clean"
step grade-cpu 90 grade clean-cpu cpu "$SUBS/clean"
step mistakes-cuda 30 grade mistakes-cuda "$DEVICE" "$SUBS/mistakes"
step mistakes-cpu 30 grade mistakes-cpu cpu "$SUBS/mistakes"
for name in clean-cuda clean-cpu mistakes-cuda; do
  [ -f "$R/$name/grades.csv" ] && cp "$R/$name/grades.csv" "$OUT/grades-$name.csv"
done
[ -f "$R/clean-cuda/grading.json" ] && cp "$R/clean-cuda/grading.json" "$OUT/grading-clean-cuda.json"
"$PYTHON" autograder/tools/gpu_check.py verdict "$R/clean-cuda" "$R/clean-cpu" "$R/mistakes-cuda" "$R/mistakes-cpu" \
  2>&1 | tee "$OUT/verdict.txt" >>"$LOG"
grep -h "^TIMING\|^graded\|^device:\|^sandbox:" "$LOG" | tee -a "$OUT/verdict.txt"

# ---- 3. throughput: H2's benchmark, on the default device --------------------------------------------
bench() { set -o pipefail; "$PYTHON" -m flowlab.cli bench grading --copies 4 --jobs "$JOBS" $ISOLATION | tee "$OUT/bench-grading.md"; }
export OUT
export -f bench
step bench-grading 100 bench

# ---- 4. the device tests ------------------------------------------------------------------------
step pytest-device 45 "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_grading_device.py

# ---- 5. CUDA under smaller data limits ----------------------------------------------------------
step data-limits 30 "$PYTHON" autograder/tools/gpu_check.py data-limits 1 2 4

# ---- 6. the calibration on the GPU, if time is left -------------------------------------------------
step calibration-cuda 120 "$PYTHON" -m pytest -q -p no:cacheprovider -x -n 8 tests/test_grading_cases.py -k cuda
say "done"
