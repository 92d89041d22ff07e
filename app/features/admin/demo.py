"""admin: a demo dependency for the health panel, which the page can make fail on purpose.

It stands for any remote service: ``ping()`` answers, or raises ``ConnectionError`` while
``failing`` is set. Its breaker opens after 3 consecutive failures and lets a probe through
after ``ORION_DEMO_COOLOFF`` seconds (default 5), so the whole cycle fits in a demo.
"""

from __future__ import annotations

import os

from app.belt import breaker


class Demo:
    failing = False

    def ping(self) -> str:
        if self.failing:
            raise ConnectionError("the demo dependency refused the connection (made to fail on /admin/health)")
        return "pong"


DEMO = Demo()
BREAKER = breaker("demo", threshold=3, cooloff=float(os.environ.get("ORION_DEMO_COOLOFF", "5")))
