"""What redaction by value costs per relayed write and per event, beside the relay's own work.

    .venv/bin/python -m bench.redaction [--rounds N]

Writes of 1, 10 and 100 chat chunks (the shape scenario c relays) are scanned by a `Redactor`
of no secret, of one upstream key (the shape and length of an OpenAI project key) and of three
secrets (two upstream keys and a gateway key). For scale, the same events' cost in the relay's
per-event work that already runs (`SSEDecoder.feed` and the OpenAI tracker's `inspect`) is
measured beside. Prints a Markdown table; the numbers are the best of `--rounds` runs.
"""

from __future__ import annotations

import argparse
import secrets
import timeit
from collections.abc import Callable

from gateway.apis import OPENAI_CHAT
from gateway.redaction import Redactor
from gateway.streaming import SSEDecoder

EVENT = (
    b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,'
    b'"model":"m","choices":[{"index":0,"delta":{"content":"token "},"finish_reason":null}]}\n\n'
)


def _best(work: Callable[[], object], number: int, rounds: int) -> float:
    """Microseconds per call, best of `rounds`."""
    return min(timeit.repeat(work, number=number, repeat=rounds)) / number * 1e6


def _relay_work(data: bytes) -> Callable[[], object]:
    inspect = OPENAI_CHAT.dialect.tracker().inspect

    def work() -> object:
        decoder = SSEDecoder()
        return [inspect(event) for event in decoder.feed(data)]

    return work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    redactors = {
        "no secret": Redactor([]),
        "1 upstream key": Redactor(["sk-proj-" + secrets.token_urlsafe(117)]),
        "3 secrets": Redactor(
            [
                "sk-proj-" + secrets.token_urlsafe(117),
                "sk-ant-api03-" + secrets.token_urlsafe(70),
                "gw-" + secrets.token_urlsafe(32),
            ]
        ),
    }
    print("| events per write | bytes | relay's own work, us | " + " | ".join(
        f"redaction, {name}, us (per event)" for name in redactors
    ) + " |")
    print("|---" * (3 + len(redactors)) + "|")
    for count in (1, 10, 100):
        data = EVENT * count
        number = max(2_000, 200_000 // count)
        own = _best(_relay_work(data), number, args.rounds)
        cells = []
        for redactor in redactors.values():
            cost = _best(lambda r=redactor, d=data: r.redact_bytes(d), number, args.rounds)
            cells.append(f"{cost:.2f} ({cost / count:.3f})")
        print(f"| {count} | {len(data)} | {own:.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
