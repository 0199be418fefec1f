"""A job that goes wrong on purpose (run by test_failures.py): argv[1] says how.

  raise    rank 1 raises before the collective rank 0 is waiting in
  kill     rank 1 is killed (SIGKILL) while rank 0 waits
  timeout  rank 1 stops calling collectives; rank 0's next one hits its group's 2 s timeout
"""
import datetime
import os
import signal
import sys
import time

import ember
import ember.distributed as dist

mode = sys.argv[1]
dist.init_process_group("mpi", timeout=datetime.timedelta(seconds=60))   # slow starts are fine
short = dist.new_group(timeout=datetime.timedelta(seconds=2))              # ... hangs are not
r = dist.get_rank()
t = ember.ones(4)
dist.all_reduce(t)                     # everyone is up
if r == 1:
    if mode == "raise":
        raise ValueError("rank 1 fails on purpose")
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "timeout":
        time.sleep(60)                 # alive, but never joins the next collective
        sys.exit(0)
work = dist.all_reduce(t, group=short, async_op=True)
work.wait()                            # rank 0 waits here
print("rank", r, "was not stopped", flush=True)
