"""Chaos and soak: a seeded random mix of upstream faults and client behaviours, many requests
at once through one real gateway, every request checked against the contract.

`apis` says what each API looks like on the wire; `upstream_plan` what an upstream may do and
what the client must then get; `faults` builds such a plan for every fault of the foundation's
list; `plans` draws whole requests (API, upstream, client) from a seed; `client` plays a
request's client side; `invariants` checks what it got; `mix` runs many of them against a
gateway; `log_tally` keeps the gateway's one line per request; and `resources` measures what
the process holds (for the soak).
"""
