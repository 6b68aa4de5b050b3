"""The soak run's statistics (``bench/soak_report.py``): what is flat, what grows.

Pure functions on hand-made samples: a metric that only wanders is flat; a steady
leak smaller than the noise per sample is still found over the run; a restart's new
level is not growth; warm-up and the minutes after a restart are left out.
"""

from __future__ import annotations

import random

from bench.soak_report import fit, fits, select, slopes_table, summary


def _samples(values: dict[str, list[float]]) -> list[dict[str, object]]:
    count = len(next(iter(values.values())))
    return [{"minute": m + 0.5, **{key: v[m] for key, v in values.items()}} for m in range(count)]


def test_noise_is_flat_and_a_small_steady_leak_grows():
    rng = random.Random(7)
    noise = [100 + rng.gauss(0, 0.5) for _ in range(30)]
    leak = [100 + 0.1 * m + rng.gauss(0, 0.5) for m in range(30)]  # 0.1 MB/min under 0.5 MB noise
    flat = fit("rss", select(_samples({"v": noise}), "v", [], 3, 2))
    growing = fit("rss", select(_samples({"v": leak}), "v", [], 3, 2))
    assert flat.verdict == "flat" and flat.samples == 27
    assert growing.verdict == "growing"
    assert 0.07 < growing.slope < 0.13 and 0.07 < growing.percent_per_minute < 0.13


def test_a_restart_starts_a_new_level_not_growth_and_its_settling_is_left_out():
    # 90 MB until the restart at minute 10, then 120 MB: flat on both sides.
    values = [90.0 if m < 10 else (150.0 if m < 12 else 120.0) for m in range(30)]
    values = [v + (0.2 if m % 2 else -0.2) for m, v in enumerate(values)]
    points = select(_samples({"v": values}), "v", [10.0], 3, 2)
    assert {segment for segment, _, _ in points} == {0, 1}
    assert all(not 10 <= minute < 12 for _, minute, _ in points)  # the settling after it
    assert fit("rss", points).verdict == "flat"


def test_missing_samples_and_too_few_are_reported_not_judged():
    samples = _samples({"v": [1.0, None, 2.0, None, 3.0]})
    result = fit("keys", select(samples, "v", [], 0, 0))
    assert result.samples == 3 and result.verdict == "too few samples"


def test_the_tables_and_summary_name_every_metric_and_the_counts():
    rng = random.Random(3)
    samples = _samples({key: [10 + rng.random() for _ in range(20)]
                        for key in ("rss_mb", "fds", "blocks", "keys", "redis_mb")})
    results = fits(samples, {"web": [8.0], "redis": [12.0]}, {"web": 3, "redis": 5}, 2)
    table = slopes_table(results)
    assert [r.metric for r in results] == ["web RSS", "web open files", "web Python blocks",
                                          "Redis keys", "Redis used_memory"]
    older = fits([{k: v for k, v in s.items() if k != "blocks"} for s in samples],
                 {}, {"web": 3, "redis": 5})
    assert "web Python blocks" not in [r.metric for r in older]
    assert all(r.metric in table for r in results)
    text = summary(results, lost=0, unended=2)
    assert "lost events: 0 (OK)" in text and "executions not ended: 2 (FAILED)" in text


def test_noise_cut_into_segments_by_restarts_is_rarely_called_growing():
    # Two restarts cut 30 samples of pure noise into three short segments: the growth a
    # slope predicts over the summed window then passes twice the scatter by chance in
    # ~30 % of runs; it must also be told apart from zero (95 %) to count: ~6 %.
    flagged = 0
    for seed in range(1000):
        rng = random.Random(seed)
        values = [4000 + rng.gauss(0, 40) for _ in range(30)]
        result = fit("keys", select(_samples({"v": values}), "v", [10.0, 20.0], 3, 2))
        flagged += result.verdict != "flat"
    assert flagged <= 80
