#!/bin/bash
# A stand-in for Work Queue's resource monitor (cctools-monitor), given to Work
# Queue through CCTOOLS_RESOURCE_MONITOR: the first time it runs (of a run that
# sets GEN3WF_TEST_HANG_ONCE) it runs its task, then hangs, as Debian's
# cctools-monitor was seen to do after the process it monitored had exited.
# Every other time it is the real monitor.
if [ -n "$GEN3WF_TEST_HANG_ONCE" ] && mkdir "$GEN3WF_TEST_HANG_ONCE" 2>/dev/null; then
    while [ $# -gt 0 ] && [ "$1" != "--sh" ]; do shift; done
    /bin/sh -c "$2"
    echo "$$" > "$GEN3WF_TEST_HANG_ONCE/pid"
    exec sleep 100000
fi
exec /usr/bin/resource_monitor "$@"
