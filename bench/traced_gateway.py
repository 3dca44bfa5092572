"""The gateway with tracemalloc on, for `bench.memory`.

    BENCH_SNAPSHOT=/path/prefix python -m bench.traced_gateway [gateway flags]

Starts tracemalloc (25 frames) before the gateway is imported, then runs `gateway.__main__`
with the flags given. Each SIGUSR1 writes a snapshot to `<prefix><n>` (n = 0, 1, ...), written
aside and renamed, so a file that exists is complete. Tracing makes the gateway slow and big:
its only use is to tell where the memory of open streams goes.
"""

from __future__ import annotations

import os
import signal
import sys
import tracemalloc
from types import FrameType

__all__ = ["main"]


def main() -> int:
    tracemalloc.start(25)
    prefix = os.environ["BENCH_SNAPSHOT"]
    taken = [0]

    def dump(signum: int, frame: FrameType | None) -> None:
        path = f"{prefix}{taken[0]}"
        tracemalloc.take_snapshot().dump(path + ".part")
        os.rename(path + ".part", path)
        taken[0] += 1

    signal.signal(signal.SIGUSR1, dump)
    from gateway.__main__ import main as gateway_main

    return gateway_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
