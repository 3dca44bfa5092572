"""`HeapTrimmer` gives the heap back once enough requests ended, and never when none did."""

from __future__ import annotations

from gateway.server.heap import HeapTrimmer, malloc_trim


def trimmer(in_flight: list[int], trims: list[int]) -> HeapTrimmer:
    return HeapTrimmer(lambda: in_flight[0], min_ended=10, trim=lambda: trims.append(1))


def test_the_heap_is_trimmed_once_enough_requests_ended_since_the_peak() -> None:
    in_flight, trims = [0], []
    subject = trimmer(in_flight, trims)
    for count in (5, 40, 35):  # a rise, then fewer than min_ended ended
        in_flight[0] = count
        assert not subject.look()
    in_flight[0] = 30  # 10 fewer than the peak of 40
    assert subject.look()
    assert not subject.look()  # the peak is now: nothing more ended
    assert trims == [1]


def test_a_steady_or_growing_load_never_trims() -> None:
    in_flight, trims = [0], []
    subject = trimmer(in_flight, trims)
    for count in range(0, 1000, 7):
        in_flight[0] = count
        subject.look()
    assert trims == []


def test_malloc_trim_is_found_on_glibc_and_callable() -> None:
    trim = malloc_trim()
    with open("/proc/self/maps") as maps:
        glibc = "libc.so.6" in maps.read()
    assert (trim is not None) == glibc
    if trim is not None:
        trim()
