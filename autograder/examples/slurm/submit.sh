#!/bin/bash
# Queue the grading array (N shards) and, once all of them succeeded, the merge.
#
#   SUBMISSIONS=/path/to/submitted RESULTS=/path/to/results [ASSIGNMENT=01_flow_matching] \
#     autograder/examples/slurm/submit.sh 10
set -euo pipefail

shards="${1:?usage: submit.sh NUMBER_OF_SHARDS}"
here="$(cd "$(dirname "$0")" && pwd)"
export SUBMISSIONS RESULTS ASSIGNMENT
array=$(sbatch --parsable --export=ALL --array="1-$shards" "$here/grade.sbatch")
sbatch --export=ALL --dependency="afterok:${array%%;*}" "$here/merge.sbatch"
echo "queued grading array $array (shards 1-$shards) and its merge; results in $RESULTS/merged"
