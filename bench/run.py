"""The benchmark, in one command: upstream, targets, scenarios, report.

    python -m bench.run [--quick] [--scenarios a,b,c,d,e] [--targets direct,gateway,nginx,...]
                        [--apis chat,responses] [--workers N] [--translate] [--redis]
                        [--out bench/results] [--no-uvloop]

Starts the mock upstream (`bench.upstream`) and every target of `--targets`, each reaching the
upstream on a loopback address of its own: `direct` (no proxy), `gateway` (one worker),
`nginx` (if installed; `python -m bench.install` installs it), `gateway-wN` (N workers),
`gateway-translated` (chat clients on a route to an `anthropic` upstream, the bench upstream's
`/v1/messages`: every Messages event translated into chat chunks), `gateway-redis` (a gateway
key with a requests-per-minute limit counted in a redis-server started here: one Redis round
trip per request) and `gateway-keyed` (the same key counted in the process; not in the default
set). By default every target whose prerequisite exists (nginx, redis-server) is measured; one
whose prerequisite is missing is left out with a line in the report's notes. Every scenario
measures every target, interleaved (and, in c, the APIs of `--apis`). The proxy under test is
pinned to the first core, the upstream, redis-server and this process (the load generator) to
the others. Writes `report.md`, `summary.json` and the plots to `--out`.
`--quick` is the smoke-test size (under a minute). Every process started here is stopped here.
"""

from __future__ import annotations

import argparse
import datetime
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.disconnects import disconnect
from bench.eventloop import run, uvloop_available
from bench.loadgen import Address
from bench.processes import (
    GatewayOptions,
    Service,
    nginx_path,
    redis_path,
    redis_url,
    start_gateway,
    start_nginx,
    start_redis,
    start_upstream,
)
from bench.protocol import APIS, MESSAGES
from bench.report import write_results
from bench.scenarios import FULL, QUICK, SCENARIOS, Bench, NoiseMeter
from bench.system import CpuPlan, machine_facts, plan_cpus, raise_fd_limit
from bench.trials import Target

__all__ = ["main"]

RESULTS = Path(__file__).resolve().parent / "results"
_ORDER = "abced"  # idle (d) last: it restarts the proxies and leaves them big
_TRANSLATED = "gateway-translated"  # chat clients, an Anthropic upstream
_KEYED = ("gateway-keyed", "gateway-redis")  # a limited gateway key; in process, in Redis
_NAMED = ("direct", "gateway", "nginx", _TRANSLATED, *_KEYED)
_SCENARIOS = {**SCENARIOS, "e": ("disconnect", disconnect)}  # e: bench.disconnects


@dataclass(slots=True)
class _Lab:
    """The processes of one run, and how to start (and restart) each target."""

    workdir: Path
    plan: CpuPlan
    upstream_port: int = 0
    services: list[Service] = field(default_factory=list)
    hosts: dict[str, str] = field(default_factory=dict)
    redis: Service | None = None  # started with the first target that needs it
    client_key: str = field(default_factory=lambda: "sk-gw-" + secrets.token_urlsafe(32))

    def upstream_for(self, name: str) -> Address:
        if name not in self.hosts:
            self.hosts[name] = f"127.0.0.{2 + len(self.hosts)}"
        return Address(self.hosts[name], self.upstream_port)

    async def start(self, name: str) -> Target | None:
        if name == "direct":
            return Target("direct", self.upstream_for(name))
        if name == "nginx":
            service = await start_nginx(self.upstream_for(name), self.workdir, self.plan.proxy)
            if service is None:
                return None
            self.services.append(service)
            return Target(name, service.address, service)
        workers = int(name.removeprefix("gateway-w")) if name.startswith("gateway-w") else 1
        cores = self.plan.proxy_for(workers)
        options, key = await self._options(name)
        service = await start_gateway(
            name, self.upstream_for(name), workers, self.workdir, cores, options=options
        )
        self.services.append(service)
        upstream_api = MESSAGES if name == _TRANSLATED else None
        return Target(name, service.address, service, workers, key, upstream_api)

    async def _options(self, name: str) -> tuple[GatewayOptions, str | None]:
        """The configuration of gateway target `name`, and the key its clients present."""
        if name == _TRANSLATED:
            return GatewayOptions(kind="anthropic"), None
        if name not in _KEYED:
            return GatewayOptions(), None
        url = None
        if name == "gateway-redis":
            if self.redis is None:
                self.redis = await start_redis(self.workdir, self.plan.harness)
                self.services.append(self.redis)
            url = redis_url(self.redis)
        return GatewayOptions(client_key=self.client_key, redis_url=url), self.client_key

    async def restart(self, target: Target) -> Target:
        """The same target on a fresh process (`direct` is returned as it is)."""
        if target.service is None:
            return target
        target.service.stop()
        self.services.remove(target.service)
        fresh = await self.start(target.name)
        assert fresh is not None
        target.address, target.service = fresh.address, fresh.service
        return target

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes (< 1 minute)")
    parser.add_argument("--scenarios", default="a,b,c,d,e", help="comma-separated, of a-e")
    parser.add_argument(
        "--targets",
        default="",
        help="comma-separated, of direct, gateway, nginx, gateway-wN, gateway-translated, "
        "gateway-redis, gateway-keyed (default: all but gateway-keyed, gateway-w2 by --workers)",
    )
    parser.add_argument(
        "--apis", default="chat,responses", help=f"scenario c's APIs, of {','.join(APIS)}"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="N of the default gateway-wN (2; 1: none); with --targets, adds gateway-wN",
    )
    parser.add_argument(
        "--translate", action="store_true", help="shorthand: adds gateway-translated to --targets"
    )
    parser.add_argument(
        "--redis", action="store_true", help="shorthand: adds gateway-keyed, gateway-redis"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results are written")
    parser.add_argument("--no-uvloop", action="store_true", help="harness on the stdlib loop")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    args.scenarios = [s for s in _ORDER if s in args.scenarios.split(",")]
    args.targets = _target_names(args)
    unknown = [t for t in args.targets if t not in _NAMED and not _is_workers(t)]
    if unknown or not args.scenarios:
        parser.error(f"unknown targets {unknown}" if unknown else "no known scenario")
    names = [a for a in args.apis.split(",") if a]
    if not names or any(a not in APIS for a in names):
        parser.error(f"--apis takes some of {', '.join(APIS)}")
    args.apis = tuple(APIS[a] for a in dict.fromkeys(names))
    return args


def _target_names(args: argparse.Namespace) -> list[str]:
    """`--targets` with the shorthands' targets added; by default every kind of target."""
    workers = 2 if args.workers is None else args.workers
    multi = [f"gateway-w{workers}"] if workers > 1 else []
    if not args.targets:
        return ["direct", "gateway", "nginx", *multi, _TRANSLATED, "gateway-redis"]
    names = [t for t in args.targets.split(",") if t]
    names += multi if args.workers is not None else []
    names += [_TRANSLATED] if args.translate else []
    names += list(_KEYED) if args.redis else []
    return list(dict.fromkeys(names))


def _is_workers(name: str) -> bool:
    return name.startswith("gateway-w") and name.removeprefix("gateway-w").isdigit()


def _git_commit() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "gateway"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{commit}{' (gateway/ modified)' if dirty else ''}" if commit else "unknown"


def _nginx_version() -> str | None:
    binary = nginx_path()
    if binary is None:
        return None
    done = subprocess.run([binary, "-v"], capture_output=True, text=True)
    return (done.stderr or done.stdout).strip().removeprefix("nginx version: ")


async def _start_targets(lab: _Lab, args: argparse.Namespace, notes: list[str]) -> list[Target]:
    """The targets of `--targets` whose prerequisites exist; a missing one is a note."""
    targets: list[Target] = []
    for name in args.targets:
        if name == "gateway-redis" and redis_path() is None:
            notes.append(f"{name}: redis-server is not installed, left out")
            continue
        target = await lab.start(name)
        if target is None:
            notes.append(f"{name}: not installed, left out (`python -m bench.install`)")
        else:
            targets.append(target)
    return targets


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    fd_limit = raise_fd_limit()
    plan = plan_cpus()
    if plan.harness is not None:
        os.sched_setaffinity(0, plan.harness)
    params = QUICK if args.quick else FULL
    notes: list[str] = []
    if fd_limit < 2 * max(params.idle_sizes) + 200 and "d" in args.scenarios:
        notes.append(
            f"the open-file limit is {fd_limit:,} (the hard limit could not be raised): a proxy "
            f"holds 2 sockets per stream, so scenario d opens at most {(fd_limit - 200) // 2:,}"
        )
    workdir = Path(tempfile.mkdtemp(prefix="sse-bench-"))
    lab = _Lab(workdir, plan)
    started, facts = time.monotonic(), machine_facts()
    results: dict[str, Any] = {}
    use_uvloop = not args.no_uvloop and uvloop_available()
    targets: list[Target] = []
    try:
        hosts = ["127.0.0.1", *(f"127.0.0.{i}" for i in range(2, 3 + len(args.targets)))]
        upstream = start_upstream(hosts, workdir, plan.harness, use_uvloop)
        lab.services.append(upstream)
        lab.upstream_port = upstream.address.port
        targets = await _start_targets(lab, args, notes)
        bench = Bench(
            params,
            targets,
            upstream.tree(),
            upstream.address,
            lab.restart,
            fd_limit,
            plan,
            args.apis,
            lab.redis.tree() if lab.redis else None,
        )
        for key in args.scenarios:
            title, scenario = _SCENARIOS[key]
            print(f"scenario {key} ({title}) ...", flush=True)
            begun, noise = time.monotonic(), NoiseMeter(bench)
            results[key] = await scenario(bench)
            results[key]["seconds"] = round(time.monotonic() - begun, 1)
            if key != "d":  # d restarts the proxies: their CPU cannot be told from others'
                results[key]["noise"] = noise.result()
        notes += [
            f"{s.name}: {s.log_lines()} log lines at warning or above"
            for s in lab.services
            if s.log_lines()
        ]
    finally:
        lab.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    meta = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git_commit(),
        "mode": "quick" if args.quick else "full",
        "machine": facts,
        "loadavg_end": list(os.getloadavg()),
        "pinning": plan.describe(),
        "harness_loop": "uvloop" if use_uvloop else "asyncio",
        "nginx": _nginx_version(),
        "fd_limit": fd_limit,
        "params": asdict(params),
        "targets": [t.name for t in targets],
        "apis": [api.name for api in args.apis],
        "seconds": round(time.monotonic() - started, 1),
        "notes": notes,
        "command": " ".join(["python -m bench.run", *args.argv]),
    }
    return {"meta": meta, "scenarios": results}


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    summary = run(_bench(args), use_uvloop=not args.no_uvloop)
    paths = write_results(summary, args.out)
    for path in paths:
        print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
