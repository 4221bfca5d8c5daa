"""The real-data benchmark's summary (scripts/bench_realdata.py), on rows worked out by hand."""

import importlib.util
import math
import pathlib

import pytest


def _script():
    path = pathlib.Path(__file__).parent.parent / "scripts" / "bench_realdata.py"
    spec = importlib.util.spec_from_file_location("bench_realdata", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(runner, dataset, split, r2, seconds):
    return dict(runner=runner, dataset=dataset, split=split, r2=r2, seconds=seconds,
                warnings=[])


ROWS = [
    # "a": 0.10 and 0.30 above sk-adam on its two splits; "b": 0.01 below, then level.
    _row("sk-adam", "a", 0, 0.50, 2.0), _row("mine", "a", 0, 0.60, 1.0),
    _row("sk-adam", "a", 1, 0.40, 4.0), _row("mine", "a", 1, 0.70, 1.0),
    _row("sk-adam", "b", 0, 0.80, 1.0), _row("mine", "b", 0, 0.79, 4.0),
    _row("sk-adam", "b", 1, 0.90, 1.0), _row("mine", "b", 1, 0.90, 1.0),
]


def test_summary_counts_datasets_within_and_pairs_the_splits():
    bench = _script()
    table = bench.summary(ROWS)
    mine = table["mine"]
    assert mine["per_dataset"] == pytest.approx({"a": 0.65, "b": 0.845})
    assert mine["mean_r2"] == pytest.approx(0.7475)
    # "b": 0.845 against 0.85 is within 0.01.
    assert mine["within"] == 2
    assert bench.summary(ROWS, within=0.001)["mine"]["within"] == 1
    # Time ratios 0.5, 0.25, 4, 1: their product is 0.5, the geometric mean 0.5**0.25.
    assert mine["time_ratio"] == pytest.approx(0.5 ** 0.25)
    # Differences 0.1 and 0.3: mean 0.2, s.e. std([0.1, 0.3], ddof=1) / sqrt(2) = 0.1.
    assert mine["paired"]["a"] == pytest.approx([0.2, 0.1])
    # Differences -0.01 and 0: mean -0.005, s.e. 0.005.
    assert mine["paired"]["b"] == pytest.approx([-0.005, 0.005])
    assert table["sk-adam"]["paired"]["a"] == pytest.approx([0.0, 0.0])
    text = bench.format_paired(table)
    assert "| a | +0.200 ± 0.100 |" in text and "| b | -0.005 ± 0.005 |" in text


def test_summary_of_one_split_has_no_standard_error():
    bench = _script()
    table = bench.summary([r for r in ROWS if r["split"] == 0])
    mean, se = table["mine"]["paired"]["a"]
    assert mean == pytest.approx(0.1) and math.isnan(se)


def _alpha_script():
    path = pathlib.Path(__file__).parent.parent / "scripts" / "bench_alpha_selection.py"
    spec = importlib.util.spec_from_file_location("bench_alpha_selection", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_alpha_choices_are_scored_by_their_rules():
    """Held-out R² per fold for alphas 1, 0.1, 0.01, worked out by hand."""
    script = _alpha_script()

    def fold(*r2):
        return [dict(alpha=a, r2=v, seconds=1.0) for a, v in zip(script.GRID, r2)]

    # Means 0.50, 0.55, 0.40: the best is 0.1. Against 0.1 the differences of
    # alpha 1 are -0.05 and -0.05 (s.e. 0), so one s.e. keeps 0.1; widen them
    # to -0.15 and +0.05 (mean -0.05, s.e. 0.1) and alpha 1 is within it.
    row = {"k5": [fold(0.45, 0.5, 0.4), fold(0.55, 0.6, 0.4)]}
    assert script._choose(row, "k5", None, "best") == (0.1, 6.0)
    assert script._choose(row, "k5", None, "1se") == (0.1, 6.0)
    row = {"k5": [fold(0.35, 0.5, 0.4), fold(0.65, 0.6, 0.4)]}
    assert script._choose(row, "k5", None, "best") == (0.1, 6.0)
    assert script._choose(row, "k5", None, "1se") == (1.0, 6.0)
    # A hold-out is the first fold alone: 0.35 < 0.5, so 0.1; its cost, 3 fits.
    assert script._choose(row, "k5", [0], "best") == (0.1, 3.0)
    # Ties go to the larger alpha.
    assert script._choose({"k5": [fold(0.5, 0.5, 0.5)]}, "k5", None, "best")[0] == 1.0
