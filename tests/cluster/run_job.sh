#!/usr/bin/env bash
# Runs one MPI job for CTest and judges how it ended; then checks that no process of the job
# (a rank, its fork servers, their workers: all run `program`) outlived mpirun.
#
#   run_job.sh EXPECT SECONDS PROGRAM -- COMMAND...
#
# EXPECT: success   the job exits 0
#         failure   the job exits non-zero (not by our timeout)
#         either:RE the job exits non-zero, or exits 0 having printed a line matching RE
# SECONDS: the job is killed (and the test fails) past this many seconds.
set -uo pipefail
expect=$1 seconds=$2 program=$3
shift 4

output=$(mktemp)
trap 'rm -f "$output"' EXIT
started=$SECONDS
timeout -k 5 "$seconds" "$@" 2>&1 | tee "$output"
status=${PIPESTATUS[0]}
elapsed=$((SECONDS - started))
echo "::: the job ended with status $status after $elapsed s"

verdict=0
# timeout(1) says 124, or 137 when it had to SIGKILL; a job can end with 137 of its own (mpirun
# reports a rank killed by SIGKILL that way), so the elapsed time decides.
if [ "$status" -eq 124 ] || { [ "$status" -eq 137 ] && [ "$elapsed" -ge "$seconds" ]; }; then
  echo "FAILED: the job ran past $seconds s (a hang)"
  verdict=1
else
  case $expect in
    success) [ "$status" -eq 0 ] || { echo "FAILED: expected exit 0"; verdict=1; } ;;
    failure) [ "$status" -ne 0 ] || { echo "FAILED: expected a non-zero exit"; verdict=1; } ;;
    either:*)
      if [ "$status" -eq 0 ] && ! grep -Eq -- "${expect#either:}" "$output"; then
        echo "FAILED: exit 0 without a line matching '${expect#either:}'"
        verdict=1
      fi ;;
    *) echo "run_job.sh: unknown expectation $expect"; exit 2 ;;
  esac
fi

# Processes of the job end with it; give the last of them (workers of a rank that exited a
# moment ago, which die with their fork server) a few seconds.
for _ in $(seq 50); do
  pgrep -f -- "^$program( |$)" >/dev/null || break
  sleep 0.2
done
if left=$(pgrep -a -f -- "^$program( |$)"); then
  echo "FAILED: processes of the job outlived it:"
  echo "$left"
  pkill -KILL -f -- "^$program( |$)"
  verdict=1
fi
exit $verdict
