"""What the bench reads from and sets on the machine: file limits, CPU pinning, /proc figures.

CPU time and memory of a proxy are read from /proc for the whole process tree (a gateway with
`--workers N` is a supervisor and N children; nginx is a master and its workers): CPU seconds
are summed over every thread of every process, memory is the sum of their VmRSS. CPU time comes from
/proc/PID/task/*/schedstat (nanoseconds), or utime + stime (10 ms ticks) where the kernel has no
schedstat. A process that vanished between two readings counts as zero from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CpuPlan",
    "ProcessTree",
    "RssSampler",
    "busy_seconds",
    "machine_facts",
    "plan_cpus",
    "raise_fd_limit",
]

_TICKS = os.sysconf("SC_CLK_TCK")


def raise_fd_limit(wanted: int = 1 << 17) -> int:
    """Raise RLIMIT_NOFILE towards `wanted` (the hard limit too, when allowed); the new soft."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
        return wanted
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    return soft


@dataclass(frozen=True, slots=True)
class CpuPlan:
    """Which cores the proxy under test and the harness run on (None: not pinned)."""

    proxy: frozenset[int] | None
    harness: frozenset[int] | None

    def proxy_for(self, workers: int) -> frozenset[int] | None:
        """The proxy's cores for `workers` processes: its own core, or more when asked."""
        if self.proxy is None or self.harness is None or workers <= 1:
            return self.proxy
        cores = sorted(self.proxy | self.harness)
        return frozenset(cores[: max(workers, 1)])

    def describe(self) -> str:
        if self.proxy is None or self.harness is None:
            return "not pinned (fewer than 2 cores available)"
        return (
            f"proxy under test on core(s) {sorted(self.proxy)}, "
            f"upstream and load generator on core(s) {sorted(self.harness)}"
        )


def plan_cpus() -> CpuPlan:
    """The first allowed core for the proxy, the others for the harness (if there are two)."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return CpuPlan(None, None)
    return CpuPlan(frozenset(cores[:1]), frozenset(cores[1:]))


def busy_seconds(cores: frozenset[int]) -> float:
    """Time `cores` spent busy so far, whoever ran (user, nice, system, irq, softirq, steal)."""
    total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, _, rest = line.partition(" ")
        if name[3:].isdigit() and name.startswith("cpu") and int(name[3:]) in cores:
            values = [int(v) for v in rest.split()]
            total += sum(values[i] for i in (0, 1, 2, 5, 6, 7))
    return total / _TICKS


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()  # fields from `state` on


def _children(root: int) -> list[int]:
    """All descendants of `root` (a scan of /proc: fine once per trial)."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                parent = int(_stat_fields(int(entry.name))[1])
                parents.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    todo = [root]
    while todo:
        kids = parents.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def _cpu_seconds(pid: int) -> float:
    try:
        threads = os.listdir(f"/proc/{pid}/task")
        return sum(
            int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0]) / 1e9
            for tid in threads
        )
    except FileNotFoundError:  # a kernel without schedstat: utime + stime, in ticks
        if Path(f"/proc/{pid}").exists():
            fields = _stat_fields(pid)
            return (int(fields[11]) + int(fields[12])) / _TICKS
        raise


@dataclass(slots=True)
class ProcessTree:
    """A process and its descendants, as found by the last `refresh()`."""

    root: int
    pids: list[int] = field(default_factory=list)

    def refresh(self) -> ProcessTree:
        self.pids = [self.root, *_children(self.root)]
        return self

    def cpu_seconds(self) -> float:
        """On-CPU time of every thread of every process (schedstat: ns, not 10 ms ticks)."""
        return sum(self.cpu_by_pid().values())

    def cpu_by_pid(self) -> dict[int, float]:
        found = {}
        for pid in self.pids:
            with contextlib.suppress(OSError, ValueError, IndexError):
                found[pid] = _cpu_seconds(pid)
        return found

    def rss_kib(self) -> int:
        total = 0
        for pid in self.pids:
            with contextlib.suppress(OSError, ValueError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        return total


@dataclass(slots=True)
class RssSampler:
    """Samples a tree's RSS every `interval` seconds while running; keeps the peak."""

    tree: ProcessTree
    interval: float = 0.1
    peak_kib: int = 0
    samples: list[tuple[float, int]] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RssSampler:
        self.peak_kib = self.tree.rss_kib()
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._take()

    def _take(self) -> None:
        rss = self.tree.rss_kib()
        self.samples.append((time.monotonic(), rss))
        self.peak_kib = max(self.peak_kib, rss)

    async def _sample(self) -> None:
        while True:
            self._take()
            await asyncio.sleep(self.interval)


def machine_facts() -> dict[str, object]:
    """The context of a run: CPU, cores, kernel, Python, load average."""
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": list(os.getloadavg()),
    }
