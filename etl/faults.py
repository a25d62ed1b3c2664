"""Named kill points for crash-safety tests.

`MEDCORPUS_KILL_AT=<point>` makes the process SIGKILL itself when it reaches that point, so a test can
interrupt a build at an exact place (mid-conversion, mid-dedup, mid-write) and check that the rerun
resumes and gives the same bytes. Unset, a checkpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "MEDCORPUS_KILL_AT"


def checkpoint(point: str) -> None:
    if os.environ.get(ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
