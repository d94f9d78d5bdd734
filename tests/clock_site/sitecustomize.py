"""Started with the test clock on (tests/clock.py): this subprocess reads the same clock as the
test process, the real clock shifted by NLTEST_CLOCK_OFFSET_NS, ticking. Only on PYTHONPATH
while `pytest --clock` / NEWSLETTER_TEST_CLOCK is in force."""

from __future__ import annotations

import os

_offset = os.environ.get("NLTEST_CLOCK_OFFSET_NS")
if _offset:
    import time

    import time_machine

    _travel = time_machine.travel((time.time_ns() + int(_offset)) / 1e9, tick=True)
    _travel.start()
