"""Where the C blocks hand over to NumPy: the per-CPU calibration (issue 23 section 2).

Its rule, its file (keying, parsing, a damaged file), the override and the
order between them, and that a process decides once. No timing is asserted:
:func:`calibrate` is run on tiny sizes for its plumbing only.
"""

from __future__ import annotations

import json

import pytest

from gpumlp import cli
from gpumlp.fastpath import calibration, cblocks

BUILT = cblocks._module() is not None


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A calibration file of the test's own, no override, nothing decided yet."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LOCALAPPDATA", raising=False)
    monkeypatch.delenv(calibration.ENVIRONMENT, raising=False)
    monkeypatch.setattr(calibration, "_CHOSEN", {})
    return tmp_path / "cache" / "gpumlp" / "cblocks.json"


def _write(path, entries):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": calibration.FORMAT, "entries": entries}))


def _entry(isa, value, **key):
    key = {**calibration.cpu_key(isa), **key}
    return {calibration._key_text(key): {"key": key, "max_work": value}}


@pytest.mark.parametrize("rows, line", [
    ([(10, 0.5), (20, 0.9), (40, 1.1), (80, 0.5)], 20),   # the first loss ends it
    ([(40, 0.5), (10, 0.4), (20, 0.8)], 40),              # any order; no extrapolation
    ([(10, 1.0), (20, 0.5)], 0),                          # a tie is no win
    ([], 0),
])
def test_the_line_is_the_last_win_before_the_first_loss(rows, line):
    assert calibration.crossover(rows) == line


def test_without_file_or_override_nothing_is_set(isolated):
    assert not isolated.exists()
    assert calibration.max_work("avx2") is None


def test_the_entry_for_this_cpu_and_instruction_set_applies(isolated):
    _write(isolated, {**_entry("avx2", 77), **_entry("avx512", 99),
                      **_entry("avx2", 55, cpu="another CPU")})
    assert calibration.max_work("avx2") == 77
    assert calibration.max_work("avx512") == 99
    assert calibration.max_work("baseline") is None


def test_the_key_names_what_decides_the_line():
    key = calibration.cpu_key("avx2")
    assert set(key) == {"cpu", "isa", "blas", "cores"} and key["isa"] == "avx2"
    assert key["cores"] >= 1 and key["cpu"] and key["blas"]
    assert calibration._key_text(key) != calibration._key_text(calibration.cpu_key("avx512"))


@pytest.mark.parametrize("text, value", [("0", 0), (" 5000 ", 5000)])
def test_the_environment_overrides_the_file(isolated, monkeypatch, text, value):
    _write(isolated, _entry("avx2", 77))
    monkeypatch.setenv(calibration.ENVIRONMENT, text)
    assert calibration.max_work("avx2") == value


@pytest.mark.parametrize("text", ["-1", "2**27", "lots"])
def test_a_bad_override_is_a_clear_error(monkeypatch, text):
    monkeypatch.setenv(calibration.ENVIRONMENT, text)
    with pytest.raises(ValueError, match="GPUMLP_CBLOCKS_MAX_WORK=.*non-negative integer"):
        calibration.max_work("avx2")


@pytest.mark.parametrize("content", [
    "{not json",
    json.dumps({"format": "something else", "entries": {}}),
    json.dumps({"format": calibration.FORMAT, "entries": {"k": {"max_work": -3}}}),
    json.dumps({"format": calibration.FORMAT, "entries": {"k": {"max_work": True}}}),
])
def test_a_damaged_file_is_ignored_with_a_warning(isolated, content):
    isolated.parent.mkdir(parents=True)
    isolated.write_text(content)
    with pytest.warns(calibration.CalibrationWarning, match="gpumlp calibrate"):
        assert calibration.max_work("avx2") is None


def test_a_process_decides_once(isolated, monkeypatch):
    """A later change of the file or the environment does not move this process's line:
    the same fit takes the same path all along. Storing a calibration does."""
    _write(isolated, _entry("avx2", 77))
    assert calibration.max_work("avx2") == 77
    _write(isolated, _entry("avx2", 88))
    monkeypatch.setenv(calibration.ENVIRONMENT, "5")
    assert calibration.max_work("avx2") == 77
    monkeypatch.delenv(calibration.ENVIRONMENT)
    calibration.store({"key": calibration.cpu_key("avx2"), "max_work": 99})
    assert calibration.max_work("avx2") == 99


def test_storing_keeps_the_other_cpus_entries(isolated):
    _write(isolated, _entry("avx2", 55, cpu="another CPU"))
    path = calibration.store({"key": calibration.cpu_key("avx2"), "max_work": 66})
    assert path == isolated
    entries = json.loads(isolated.read_text())["entries"]
    assert sorted(e["max_work"] for e in entries.values()) == [55, 66]
    isolated.write_text("{damaged")
    with pytest.warns(calibration.CalibrationWarning, match="was replaced"):
        calibration.store({"key": calibration.cpu_key("avx2"), "max_work": 67})
    assert [e["max_work"] for e in json.loads(isolated.read_text())["entries"].values()] == [67]


def test_storing_drops_only_a_damaged_entry_and_says_so(isolated):
    """One damaged entry used to cost every other CPU's entry, with nothing said
    (adversarial round 10)."""
    _write(isolated, {**_entry("avx2", 55, cpu="another CPU"),
                      **_entry("avx2", -3, cpu="a damaged CPU")})
    with pytest.warns(calibration.CalibrationWarning, match="1 damaged entry was dropped"):
        calibration.store({"key": calibration.cpu_key("avx2"), "max_work": 66})
    entries = json.loads(isolated.read_text())["entries"].values()
    assert sorted((e["key"]["cpu"], e["max_work"]) for e in entries) == sorted(
        [("another CPU", 55), (calibration.cpu_key("avx2")["cpu"], 66)])


@pytest.mark.parametrize("variable, text", [
    (calibration.ENVIRONMENT, "1e9"), (calibration.ENVIRONMENT, "0x10"),
    (calibration.ENVIRONMENT, "1.5"), ("GPUMLP_SIMD", "avx9"),
])
def test_every_fit_refuses_a_bad_fast_path_variable(monkeypatch, variable, text):
    """Adam's minibatches never consult the C blocks, so these values were
    silently ignored there (adversarial round 10); issue 20 asks that unknown
    values be errors."""
    import warnings

    import numpy as np

    from gpumlp import MLPRegressor

    X = np.random.default_rng(0).standard_normal((40, 3))
    model = MLPRegressor((4,), max_iter=2, random_state=0)
    simd = "auto"
    if variable == "GPUMLP_SIMD":
        simd = text            # read at import: set as the context the fit sees
    else:
        monkeypatch.setenv(variable, text)
    with cblocks.simd(simd), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=f"{variable}='?{text}'? is not"):
            model.fit(X, X[:, 0])
    assert not hasattr(model, "coefs_")


def test_calibrate_stores_the_line_its_rows_give(isolated):
    if not BUILT:
        pytest.skip("the C extension gpumlp.fastpath._cblocks is not built here")
    seen = []
    result = cblocks.calibrate([(300, 3, 8), (200, 3, 4)], rounds=1, seconds=1e-4,
                               report=seen.append)
    rows = result["rows"]
    assert seen == rows and [r["n"] for r in rows] == [200, 300][:len(rows)]
    assert all(r["c_ms"] > 0 and r["numpy_ms"] > 0 for r in rows)
    assert result["max_work"] == calibration.crossover([(r["work"], r["ratio"]) for r in rows])
    assert result["key"] == calibration.cpu_key(cblocks.chosen_isa())
    assert result["path"] == str(isolated)
    assert calibration.max_work(cblocks.chosen_isa()) == result["max_work"]


def test_gpumlp_calibrate_dry_run_stores_nothing(isolated, monkeypatch, capsys):
    if not BUILT:
        pytest.skip("the C extension gpumlp.fastpath._cblocks is not built here")
    monkeypatch.setattr(cblocks, "LADDER", ((200, 3, 4),))
    monkeypatch.setattr(cblocks, "_load", lambda: 0.0)
    assert cli.main(["calibrate", "--dry-run", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "(200, 3, 4)" in out and "stored nothing" in out and "C blocks" in out
    assert "busy" not in out
    monkeypatch.setattr(cblocks, "_load", lambda: 99.0)
    assert cli.main(["calibrate", "--dry-run", "--rounds", "1"]) == 0
    assert "the machine was busy (load average 99.0" in capsys.readouterr().out
    assert not isolated.exists()
    assert cli.main(["calibrate", "--rounds", "0"]) == 2
    assert "--rounds 0" in capsys.readouterr().err


def test_without_the_c_blocks_there_is_nothing_to_calibrate(capsys):
    with cblocks.simd("none"):
        assert cli.main(["calibrate", "--dry-run"]) == 2
    assert "nothing to calibrate" in capsys.readouterr().err
