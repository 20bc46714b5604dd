#!/usr/bin/env bash
# Runs one MPI job COUNT times through run_job.sh, for faults that show only in some runs (a
# race at the end of a job); fails at the first run that fails, printing that run's output.
#
#   repeat_job.sh COUNT EXPECT SECONDS PROGRAM -- COMMAND...
set -uo pipefail
count=$1
shift
here=$(dirname "$0")
for run in $(seq "$count"); do
  if ! output=$(bash "$here/run_job.sh" "$@" 2>&1); then
    echo "$output"
    echo "FAILED: run $run of $count"
    exit 1
  fi
done
echo "::: $count jobs ended as expected"
