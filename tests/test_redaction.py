"""`Redactor`: every fragment of a secret long enough to identify it is gone, wherever it was
planted, in every form; nothing else is touched; JSON stays JSON."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.redaction import MIN_FRAGMENT, REDACTED, Redactor

KEY_ALPHABET = string.ascii_letters + string.digits + "-_"
OPENAI_KEY = "sk-proj-" + "Zq7" * 10 + "T3BlbkFJ" + "x9Lm" * 8
ANTHROPIC_KEY = "sk-ant-api03-" + "Pq4Rs5Tu6Vw7" * 6 + "-AA"
GATEWAY_KEY = "gwkey_0123456789abcdef"
SECRETS = (OPENAI_KEY, ANTHROPIC_KEY, GATEWAY_KEY)
REDACTOR = Redactor(SECRETS)

# A random key: `sk-`, then letters each followed by a digit (so that no more of it looks like
# a kind prefix such as `sk-proj-`, and each of its windows mixes kinds of characters, as a
# random key's do), then anything keys hold.
random_keys = st.builds(
    lambda head, tail: "sk-" + "".join(f"{c}{i % 10}" for i, c in enumerate(head)) + tail,
    st.text(string.ascii_letters, min_size=8, max_size=40),
    st.text(KEY_ALPHABET, max_size=120),
)
filler = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=60)


def _kinds(text: str) -> int:
    return sum(any(test(char) for char in text) for test in (str.islower, str.isupper, str.isdigit))


def _identifying_fragments(secret: str, text: str) -> list[str]:
    """Windows of `text` that also occur in `secret` and identify it: MIN_FRAGMENT characters
    of two kinds, or twice as many of any, or the whole secret (brute force)."""
    found = []
    for length in (MIN_FRAGMENT, 2 * MIN_FRAGMENT, len(secret)):
        for start in range(len(text) - length + 1):
            window = text[start : start + length]
            if window in secret and (length > MIN_FRAGMENT or _kinds(window) >= 2):
                found.append(window)
    return found


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Incorrect API key provided: {OPENAI_KEY}.", f"Incorrect API key provided: {REDACTED}."),
        (f"Bearer {OPENAI_KEY}", f"Bearer {REDACTED}"),
        (OPENAI_KEY.removeprefix("sk-proj-"), REDACTED),
        (f"key ends in {OPENAI_KEY[-12:]}", f"key ends in {REDACTED}"),
        (f"x-api-key {ANTHROPIC_KEY}", f"x-api-key {REDACTED}"),
        (f"[{GATEWAY_KEY}]", f"[{REDACTED}]"),
        ("sk-proj- keys start like this", "sk-proj- keys start like this"),
        ("a perfectly ordinary answer", "a perfectly ordinary answer"),
    ],
)
def test_redact_text_examples(text: str, expected: str) -> None:
    assert REDACTOR.redact_text(text) == expected


def test_a_known_prefix_alone_is_not_a_fragment() -> None:
    prefix_and_a_little = OPENAI_KEY[: len("sk-proj-") + MIN_FRAGMENT - 1]
    assert REDACTOR.redact_text(prefix_and_a_little) == prefix_and_a_little


def test_text_without_secrets_is_returned_as_the_same_object() -> None:
    data = b'data: {"choices":[{"delta":{"content":"hello"}}]}\n\n'
    assert REDACTOR.redact_bytes(data) == (data, 0)
    assert REDACTOR.redact_bytes(data)[0] is data


def test_no_secrets_means_nothing_is_redacted() -> None:
    empty = Redactor([])
    assert not empty
    assert empty.redact_text(OPENAI_KEY) == OPENAI_KEY


def test_a_secret_too_short_to_search_for_is_ignored() -> None:
    assert Redactor(["abc"]).redact_text("abc abc") == "abc abc"


def test_a_short_secret_is_redacted_where_it_occurs_whole() -> None:
    redactor = Redactor(["s3cr3t"])
    assert redactor.redact_text("key s3cr3t, not s3cr") == f"key {REDACTED}, not s3cr"


def test_a_secret_with_characters_json_escapes_is_found_piece_by_piece() -> None:
    secret = 'abcDEF123456"ghiJKL789012'
    redactor = Redactor([secret])
    escaped = json.dumps({"message": secret})
    redacted = redactor.redact_text(escaped)
    assert "abcDEF123456" not in redacted
    assert "ghiJKL789012" not in redacted
    json.loads(redacted)  # still valid JSON


def test_counts_each_fragment_replaced() -> None:
    data = f"{OPENAI_KEY} and {GATEWAY_KEY} and {OPENAI_KEY[9:30]}".encode()
    redacted, count = REDACTOR.redact_bytes(data)
    assert count == 3
    assert redacted == f"{REDACTED} and {REDACTED} and {REDACTED}".encode()


@settings(max_examples=300, deadline=None)
@given(
    key=random_keys,
    before=filler,
    after=filler,
    cut=st.tuples(st.integers(0, 200), st.integers(0, 200)),
)
def test_every_planted_fragment_is_removed(
    key: str, before: str, after: str, cut: tuple[int, int]
) -> None:
    start, length = cut
    start = min(start, len(key) - MIN_FRAGMENT)
    fragment = key[start : start + max(length, MIN_FRAGMENT)]
    # A fragment that is mostly the `sk-` prefix need only lose its body part.
    text = before + fragment + after
    redacted = Redactor([key]).redact_text(text)
    body = key[len("sk-") :]
    for window in _identifying_fragments(body, redacted):
        # What is left may only be text the filler brought by chance, never the planted part.
        assert window in before + after or window in REDACTED


@settings(max_examples=200, deadline=None)
@given(key=random_keys, field=st.sampled_from(["message", "code", "param", "content"]))
def test_events_stay_valid_json_with_their_framing(key: str, field: str) -> None:
    payload = {"error": {field: f"echo {key} / {key[10:]} / {key[-MIN_FRAGMENT:]}"}}
    event = b"event: error\ndata: " + json.dumps(payload).encode() + b"\n\n"
    redacted, count = Redactor([key]).redact_bytes(event)
    assert count >= 2
    assert redacted.startswith(b"event: error\ndata: ")
    assert redacted.endswith(b"\n\n")
    assert redacted.count(b"\n") == 3
    data = json.loads(redacted[len(b"event: error\ndata: ") : -2])
    assert key[10:] not in json.dumps(data)


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300))
def test_text_sharing_no_fragment_is_untouched(text: str) -> None:
    if any(_identifying_fragments(secret, text) for secret in SECRETS):
        return
    assert REDACTOR.redact_text(text) == text


def test_a_word_inside_a_made_up_key_is_not_redacted_on_its_own() -> None:
    redactor = Redactor(["sk-upstream-canary-7f3a9c1e"])
    assert redactor.redact_text("the upstream closed") == "the upstream closed"
    assert redactor.redact_text("ends canary-7f3a9c1e") == f"ends {REDACTED}"


def test_a_long_run_is_redacted_whatever_its_characters() -> None:
    secret = "abcdefghijklmnopqrstuvwxyzabcdef"
    assert Redactor([secret]).redact_text(f"<{secret[3:20]}>") == f"<{REDACTED}>"
