"""What dockerd changes on the host's network, and how to take it back.

dockerd creates the `docker0` bridge (and `br-*` bridges for compose networks, `veth*` pairs for
containers), adds `DOCKER*` iptables chains with jump rules into the built-in chains, a
MASQUERADE rule, sets the FORWARD policy to DROP and turns on `net.ipv4.ip_forward`; it leaves
all of that behind when it stops. `NetworkSnapshot.take()` records the state before dockerd
starts; `undo_changes_since()` removes exactly what was added afterwards (rules, chains, links)
and restores policies and ip_forward, leaving anything that was there before alone.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["NetworkSnapshot"]

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
#: Interfaces dockerd makes; others that come and go meanwhile are not ours to delete.
DOCKER_LINK_PREFIXES = ("docker", "br-", "veth")


@dataclass(frozen=True, slots=True)
class TableState:
    """One iptables table as iptables-save prints it: chain policies, chains, rules in order."""

    policies: dict[str, str]
    chains: tuple[str, ...]
    rules: tuple[str, ...]  # "-A CHAIN spec..."


def _read_tables(save_command: str) -> dict[str, TableState]:
    if shutil.which(save_command) is None:
        return {}
    output = subprocess.run(
        [save_command], check=True, capture_output=True, text=True, timeout=30
    ).stdout
    tables: dict[str, TableState] = {}
    name = ""
    policies: dict[str, str] = {}
    chains: list[str] = []
    rules: list[str] = []
    for line in output.splitlines():
        if line.startswith("*"):
            name, policies, chains, rules = line[1:], {}, [], []
        elif line.startswith(":"):
            chain, policy = line[1:].split()[:2]
            chains.append(chain)
            if policy != "-":
                policies[chain] = policy
        elif line.startswith("-A "):
            rules.append(line)
        elif line == "COMMIT":
            tables[name] = TableState(policies, tuple(chains), tuple(rules))
    return tables


def _links() -> set[str]:
    output = subprocess.run(
        ["ip", "-o", "link", "show"], check=True, capture_output=True, text=True, timeout=30
    ).stdout
    # "5: docker0: <...>" or "7: veth1a2b@if6: <...>"
    return {line.split(":")[1].strip().split("@")[0] for line in output.splitlines()}


@dataclass(frozen=True, slots=True)
class NetworkSnapshot:
    iptables: dict[str, TableState]
    ip6tables: dict[str, TableState]
    links: frozenset[str]
    ip_forward: str | None

    @classmethod
    def take(cls) -> NetworkSnapshot:
        return cls(
            iptables=_read_tables("iptables-save"),
            ip6tables=_read_tables("ip6tables-save"),
            links=frozenset(_links()),
            ip_forward=IP_FORWARD.read_text().strip() if IP_FORWARD.exists() else None,
        )

    def undo_changes_since(self) -> list[str]:
        """Remove what was added since this snapshot; returns what could not be undone."""
        problems: list[str] = []
        for link in sorted(_links() - self.links):
            if link.startswith(DOCKER_LINK_PREFIXES):
                _run(["ip", "link", "delete", link], problems)
        _undo_tables("iptables", self.iptables, _read_tables("iptables-save"), problems)
        _undo_tables("ip6tables", self.ip6tables, _read_tables("ip6tables-save"), problems)
        if self.ip_forward is not None and IP_FORWARD.read_text().strip() != self.ip_forward:
            try:
                IP_FORWARD.write_text(self.ip_forward + "\n")
            except OSError as exc:
                problems.append(f"restoring ip_forward: {exc}")
        return problems


def _undo_tables(
    command: str,
    before: dict[str, TableState],
    after: dict[str, TableState],
    problems: list[str],
) -> None:
    for table, now in after.items():
        then = before.get(table)
        if then is None:  # the table appeared with dockerd: its built-in chains accepted all
            then = TableState(dict.fromkeys(now.policies, "ACCEPT"), (), ())
        old_chains = set(then.chains) | set(now.policies)  # built-in chains have policies
        old_rules = set(then.rules)
        # Rules in chains that existed before are deleted one by one; new chains go whole.
        for rule in reversed(now.rules):
            spec = shlex.split(rule)
            if rule in old_rules or spec[1] not in old_chains:
                continue
            _run([command, "-t", table, "-D", *spec[1:]], problems)
        new_chains = [chain for chain in now.chains if chain not in old_chains]
        for chain in new_chains:
            _run([command, "-t", table, "-F", chain], problems)
        for chain in new_chains:
            _run([command, "-t", table, "-X", chain], problems)
        for chain, policy in then.policies.items():
            if now.policies.get(chain) != policy:
                _run([command, "-t", table, "-P", chain, policy], problems)


def _run(argv: list[str], problems: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if result.returncode != 0:
        problems.append(f"{shlex.join(argv)}: {result.stderr.strip()}")
