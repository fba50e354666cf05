#!/usr/bin/env bash
# Run a timing command with this machine's other facemark work paused: SIGSTOP every
# `facemark train` / `facemark selftrain` / pytest process, run the command, SIGCONT them
# (always, also on error or Ctrl-C). Training runs carry on where they were.
#   bash benchmarks/run_paused.sh facemark bench speed facemark/weights/default.pt ...
set -u
PIDS=$(pgrep -f "facemark train|facemark selftrain|pytest" | grep -v "^$$\$" | tr '\n' ' ')
trap '[ -n "$PIDS" ] && kill -CONT $PIDS 2>/dev/null' EXIT
[ -n "$PIDS" ] && kill -STOP $PIDS 2>/dev/null
sleep 2
"$@"
