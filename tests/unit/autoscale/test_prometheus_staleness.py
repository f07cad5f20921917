"""Which Prometheus series count as current (llm_operator.autoscale.prometheus.is_current)."""

from llm_operator.autoscale.prometheus import CLOCK_SLACK_S, MISSED_SCRAPES, is_current


def scrapes(every: float, count: int, last: float = 1000.0) -> list[float]:
    return [last - every * i for i in reversed(range(count))]


def test_a_series_scraped_on_time_is_current() -> None:
    assert is_current(scrapes(15, 4), now=1000 + 14)
    assert is_current(scrapes(1, 60), now=1000 + 0.9)


def test_a_series_whose_scrapes_stopped_is_not_current() -> None:
    # Scraped every second until the load began, then every scrape timed out for 5 s: the newest
    # value (the idle 0 from before) must not stand for now.
    assert not is_current(scrapes(1, 60), now=1000 + MISSED_SCRAPES * 1 + CLOCK_SLACK_S + 0.5)
    assert not is_current(scrapes(15, 4), now=1000 + MISSED_SCRAPES * 15 + CLOCK_SLACK_S + 1)


def test_one_missed_scrape_is_tolerated() -> None:
    assert is_current(scrapes(10, 6), now=1000 + 19)


def test_the_interval_is_the_median_so_one_long_gap_does_not_widen_it() -> None:
    timestamps = [*scrapes(1, 30, last=950.0), *scrapes(1, 10, last=1000.0)]  # a 41 s gap in the middle
    assert is_current(timestamps, now=1001)
    assert not is_current(timestamps, now=1010)


def test_a_single_sample_is_left_to_the_policy() -> None:
    assert is_current([1000.0], now=1030)
    assert is_current([], now=1030)
