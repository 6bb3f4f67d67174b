#!/usr/bin/env bash
# Gradescope's two scripts for real, on this machine, as root: setup.sh builds its virtual environment
# from the system's python3 and the package registries, then run_autograder grades the solution and a
# hostile notebook of ASSIGNMENT, with bubblewrap and with a bwrap that fails as it does in a container
# without namespaces (the grader's `user` level).
#
#   bash autograder/tools/gradescope_check.sh [ASSIGNMENT] [WORK]      (defaults: 01, /tmp/flowlab-gradescope-check)
#
# From the repository root, with the course's .venv (make env). FLOWLAB_TORCH_INDEX: where setup.sh takes
# torch (default here: PyPI; Gradescope's default is PyTorch's CPU index). WORK must be a folder every
# user may pass through (not under /root): the venv is there, as /opt/flowlab/venv is on Gradescope.
set -u
ASSIGNMENT=${1:-01}
WORK=${2:-/tmp/flowlab-gradescope-check}
ROOT=$WORK/autograder
SYSTEM_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
rm -rf "$WORK" && mkdir -p "$ROOT/source" && chmod 755 "$WORK" "$ROOT"
.venv/bin/flowlab export gradescope --assignment "$ASSIGNMENT" --out "$WORK/export" || exit 1
(cd "$ROOT/source" && unzip -q "$WORK/export/autograder.zip") || exit 1

started=$(date +%s)
env -i HOME=/root PATH=$SYSTEM_PATH GRADESCOPE_ROOT="$ROOT" FLOWLAB_VENV="$WORK/venv" \
  FLOWLAB_TORCH_INDEX="${FLOWLAB_TORCH_INDEX:-https://pypi.org/simple}" bash "$ROOT/source/setup.sh" > "$WORK/setup.log" 2>&1
echo "setup.sh: exit $? in $(( $(date +%s) - started )) s; the venv: $(du -sh "$WORK/venv" | cut -f1)"

.venv/bin/python - "$ASSIGNMENT" "$ROOT" "$WORK" <<'PY' || exit 1
import sys
from pathlib import Path
sys.path.insert(0, "tests")
from flowlab_grader.course import find_assignment
from test_grading_end_to_end import notebook, solutions
from test_grading_gradescope import failing_bwrap, hostile_notebook
assignment, root, work = find_assignment(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
(work / "solution.ipynb").write_bytes(notebook(assignment, solutions(assignment)))
(work / "hostile.ipynb").write_bytes(hostile_notebook(root, assignment))
failing_bwrap(work / "no-namespaces")
PY

for level in bwrap user; do
  for submission in solution hostile; do
    rm -rf "$ROOT/submission" "$ROOT/results" && mkdir -p "$ROOT/submission"
    cp "$WORK/$submission.ipynb" "$ROOT/submission/my work.ipynb"
    path=$SYSTEM_PATH; [ "$level" = user ] && path=$WORK/no-namespaces:$SYSTEM_PATH
    started=$(date +%s)
    env -i HOME=/root PATH="$path" GRADESCOPE_ROOT="$ROOT" FLOWLAB_VENV="$WORK/venv" \
      bash "$ROOT/source/run_autograder" > "$WORK/$level-$submission.log" 2>&1
    code=$?
    python3 - "$ROOT/results/results.json" "$level" "$submission" "$code" "$(( $(date +%s) - started ))" "$WORK/$level-$submission.log" <<'PY'
import json, sys
document = json.load(open(sys.argv[1]))
sandbox = next((line.split(" (")[0] for line in open(sys.argv[6]) if line.startswith("sandbox:")), "sandbox: ?").strip()
print(f"{sys.argv[2]:5} {sys.argv[3]:8} run_autograder exit {sys.argv[4]} in {sys.argv[5]} s, {sandbox}: "
      f"score {document['score']:g} of {sum(test['max_score'] for test in document['tests']):g}")
PY
  done
done
stat -c '%a %U %n' "$ROOT/source" "$ROOT"/source/course/autograder/references/*.npz
