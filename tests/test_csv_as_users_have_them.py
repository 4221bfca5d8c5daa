"""CSVs as users have them (issue 21): pandas' index column, text columns, ``--drop``."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from gpumlp import ModelFileError, io
from gpumlp.data import MAX_LEVELS, DataError, read_features, read_training_table

pd = pytest.importorskip("pandas")


def run(*args):
    return subprocess.run([sys.executable, "-m", "gpumlp", *args], capture_output=True,
                          text=True, env=dict(os.environ, GPUMLP_DEVICE="cpu"), timeout=300)


@pytest.fixture
def frame():
    rng = np.random.default_rng(0)
    n = 120
    region = rng.choice(["north", "south", "east"], size=n)
    fuel = rng.choice(["diesel", "petrol"], size=n)
    x = rng.normal(size=n)
    price = 3 * x + (region == "north") * 2.0 - (fuel == "diesel") + 0.1 * rng.normal(size=n)
    return pd.DataFrame({"x": x, "region": region, "fuel": fuel, "price": price})


def test_pandas_index_is_dropped_and_said(tmp_path, frame):
    path = tmp_path / "p.csv"
    frame[["x", "price"]].to_csv(path)             # pandas' default: an unnamed index
    table = read_training_table(path)
    assert table.feature_names == ["x"] and table.target == "price"
    np.testing.assert_allclose(table.X[:, 0], frame["x"], rtol=1e-15)
    assert len(table.notes) == 1 and "row index" in table.notes[0]


def test_pandas_old_index_read_back_and_written_again_is_dropped_and_said(tmp_path, frame):
    """read_csv then to_csv again names the old index "Unnamed: 0"; it was trained on as
    a feature in silence (adversarial round 10). Not integers, it stays a feature."""
    first, again = tmp_path / "first.csv", tmp_path / "again.csv"
    frame[["x", "price"]].to_csv(first)
    pd.read_csv(first).to_csv(again, index=False)
    assert open(again).readline().startswith("Unnamed: 0,")
    table = read_training_table(again)
    assert table.feature_names == ["x"] and "'Unnamed: 0'" in table.notes[0]
    np.testing.assert_allclose(table.X[:, 0], frame["x"], rtol=1e-15)
    measured = tmp_path / "measured.csv"
    frame.assign(**{"Unnamed: 0": frame["x"] / 2})[["Unnamed: 0", "x", "price"]].to_csv(
        measured, index=False)
    assert read_training_table(measured).feature_names == ["Unnamed: 0", "x"]


def test_npz_arrays_train_does_not_read_are_named(tmp_path):
    """An .npz's sample_weight was dropped in silence (adversarial round 10)."""
    path = tmp_path / "w.npz"
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    np.savez(path, X=X, y=X[:, 0], sample_weight=np.arange(30.0))
    table = read_training_table(path)
    assert table.notes == [f"{path}: the arrays sample_weight are not read; gpumlp train "
                           f"reads X and y only (for sample weights, fit in Python: "
                           f"fit(X, y, sample_weight=...))."]
    np.savez(path, X=X, y=X[:, 0])
    assert read_training_table(path).notes == []


def test_an_unnamed_first_column_that_is_no_index_is_refused(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text(",a,y\n0.5,1,2\n1.5,2,3\n")
    with pytest.raises(DataError, match=r"column\(s\) 1 have no name"):
        read_training_table(path)
    path.write_text(",a,y\n1,1,2\n1,2,3\n")          # repeated: not an index either
    with pytest.raises(DataError, match=r"column\(s\) 1 have no name"):
        read_training_table(path)


@pytest.mark.parametrize("sep, name", [(";", "semicolons"), ("\t", "tabs")])
def test_a_file_of_another_separator_is_named_as_such(tmp_path, frame, sep, name):
    # Before: "there is no column 'price'; the columns are x;region;fuel;price".
    path = tmp_path / "e.csv"
    frame.to_csv(path, sep=sep, index=False)
    for target in ("price", None):
        with pytest.raises(DataError, match=f"separated by {name}; gpumlp reads comma-"):
            read_training_table(path, target)
    # predict's reader says so too (it said the columns were missing; round 19)
    with pytest.raises(DataError, match=f"separated by {name}; gpumlp reads comma-"):
        read_features(path, ["x"])


def test_a_spreadsheet_separator_hint_line_is_named(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("sep=,\na,b,y\n1,2,3\n2,3,4\n")
    with pytest.raises(DataError, match="starts with 'sep=': a spreadsheet's separator hint"):
        read_training_table(path)


def test_dropping_the_default_target_is_refused(tmp_path, frame):
    # Before: the column before it silently became the target (adversarial round 5).
    path = tmp_path / "d.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match="--drop names 'price', the last column, which is the "
                                        "target by default"):
        read_training_table(path, None, ("price",))
    table = read_training_table(path, "x", ("price",))   # a named target: fine
    assert table.target == "x" and "price" not in table.feature_names


def test_text_columns_are_encoded_one_hot(tmp_path, frame):
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    table = read_training_table(path)
    assert table.feature_names == ["x", "region=east", "region=north", "region=south",
                                   "fuel=diesel", "fuel=petrol"]
    assert table.columns == [("x", None), ("region", ["east", "north", "south"]),
                             ("fuel", ["diesel", "petrol"])]
    np.testing.assert_array_equal(table.X[:, 2], (frame["region"] == "north").astype(float))
    np.testing.assert_array_equal(table.X[:, 1:4].sum(axis=1), 1.0)
    assert any("one-hot" in note for note in table.notes)
    # Prediction encodes with the same levels, whatever the order of the columns.
    shuffled = tmp_path / "s.csv"
    frame[["fuel", "price", "region", "x"]].to_csv(shuffled)
    X = read_features(shuffled, table.feature_names, columns=table.columns)
    np.testing.assert_array_equal(X, table.X)


def test_an_unseen_level_is_refused_at_predict(tmp_path, frame):
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    table = read_training_table(path)
    new = frame.copy()
    new.loc[5, "region"] = "west"
    new.to_csv(tmp_path / "n.csv", index=False)
    with pytest.raises(DataError, match=r"line 7: column 'region' holds 'west', a level the "
                                        r"model did not see .*east, north, south"):
        read_features(tmp_path / "n.csv", table.feature_names, columns=table.columns)
    # An empty cell is a missing value, as training calls it, not an unseen level
    # (adversarial round 16).
    new.loc[5, "region"] = None
    new.to_csv(tmp_path / "e.csv", index=False)
    with pytest.raises(DataError, match=r"line 7: the text column 'region' has a missing "):
        read_features(tmp_path / "e.csv", table.feature_names, columns=table.columns)


def test_too_many_levels_name_the_column_and_the_flag(tmp_path, frame):
    frame["id"] = [f"car-{i}" for i in range(len(frame))]
    path = tmp_path / "h.csv"
    frame.to_csv(path, index=False)
    message = (rf"column 'id' holds text with {len(frame)} distinct values, too many to "
               rf"encode one-hot \(at most {MAX_LEVELS}\); drop it with --drop id")
    with pytest.raises(DataError, match=message):
        read_training_table(path, "price")
    table = read_training_table(path, "price", drop=["id"])
    assert "id" not in [name for name, _ in table.columns]


def test_a_text_target_and_missing_text_are_refused(tmp_path, frame):
    path = tmp_path / "m.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match="the target column 'fuel' holds text"):
        read_training_table(path, "fuel")
    frame.loc[3, "fuel"] = None
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"line 5: the text column 'fuel' has a missing value"):
        read_training_table(path, "price")


def test_cli_trains_and_predicts_on_such_a_csv(tmp_path, frame):
    data, model, report = tmp_path / "cars.csv", tmp_path / "m.npz", tmp_path / "r.json"
    frame.to_csv(data)                             # index and text columns
    result = run("train", "--data", str(data), "--out", str(model), "--quiet",
                 "--json", str(report))
    assert result.returncode == 0, result.stderr
    assert "note:" in result.stdout and "row index" in result.stdout
    assert json.loads(report.read_text())["test"]["r2"] > 0.8
    meta = io.read_metadata(model)
    assert meta["columns"][1] == {"name": "region", "levels": ["east", "north", "south"]}
    out = tmp_path / "p.csv"
    result = run("predict", "--model", str(model), "--data", str(data), "--out", str(out))
    assert result.returncode == 0, result.stderr
    predicted = np.loadtxt(out, delimiter=",", skiprows=1)
    loaded = io.load(model)
    X = read_training_table(data).X
    np.testing.assert_allclose(predicted, loaded.predict(X), rtol=1e-6)
    frame.loc[0, "region"] = "west"
    frame.to_csv(tmp_path / "w.csv")
    result = run("predict", "--model", str(model), "--data", str(tmp_path / "w.csv"))
    assert result.returncode == 2 and "'west', a level the model did not see" in result.stderr


def test_cli_drop_and_its_errors(tmp_path, frame):
    frame["id"] = [f"car-{i}" for i in range(len(frame))]
    data = tmp_path / "c.csv"
    frame.to_csv(data, index=False)
    result = run("train", "--data", str(data), "--target", "price", "--epochs", "3", "--quiet")
    assert result.returncode == 2 and "--drop id" in result.stderr
    model = tmp_path / "m.npz"
    result = run("train", "--data", str(data), "--target", "price", "--drop", "id",
                 "--epochs", "3", "--quiet", "--out", str(model))
    assert result.returncode == 0, result.stderr
    # Certification redoes the split from the same file, columns dropped and encoded.
    result = run("validate", "--model", str(model), "--data", str(data), "--backends",
                 "numpy", "--dtypes", "float32")
    assert result.returncode == 0, result.stdout + result.stderr
    result = run("train", "--data", str(data), "--drop", "nope", "--epochs", "3")
    assert result.returncode == 2 and "--drop names the column 'nope'" in result.stderr


@pytest.mark.parametrize("damage, message", [
    (lambda c: c[1].update(levels=["east", "east", "south"]), "not 1 to"),
    (lambda c: c[1].update(levels=["east", "north"]), "do not expand to the feature_names"),
    (lambda c: c[1].update(levels=[1, 2, 3]), "not 1 to"),
    (lambda c: c[1].pop("levels"), "not a named column"),
    (lambda c: c.append(dict(c[0])), "names a column twice"),
])
def test_damaged_columns_in_a_model_file_are_refused(tmp_path, frame, damage, message):
    from gpumlp import MLPRegressor, StandardizedRegressor

    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    table = read_training_table(path)
    model = StandardizedRegressor(MLPRegressor((4,), max_iter=3, device="cpu"))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(table.X, table.y)
    saved = tmp_path / "m.npz"
    io.save(model, saved, feature_names=table.feature_names, columns=table.columns)
    assert io.read_metadata(saved)["columns"][2]["levels"] == ["diesel", "petrol"]
    with np.load(saved) as archive:
        members = {name: archive[name] for name in archive.files}
    key = next(name for name in members if name.endswith("metadata"))
    metadata = json.loads(str(members[key]))
    damage(metadata["columns"])
    members[key] = np.asarray(json.dumps(metadata))
    np.savez(tmp_path / "bad.npz", **members)
    with pytest.raises(ModelFileError, match=message):
        io.load(tmp_path / "bad.npz")


def test_a_file_without_a_header_row_is_refused(tmp_path):
    """Its first row of data became the column names (numbers) and was lost from
    training, with no word said (adversarial round 16)."""
    path = tmp_path / "bare.csv"
    rows = np.random.default_rng(0).normal(size=(20, 3))
    np.savetxt(path, rows, delimiter=",")
    with pytest.raises(DataError, match="holds numbers, not column names"):
        read_training_table(path)
    with pytest.raises(DataError, match="holds numbers, not column names"):
        read_features(path, ["a", "b"])
    named = tmp_path / "named.csv"
    np.savetxt(named, rows, delimiter=",", header="1st,b,c", comments="")
    assert read_training_table(named).feature_names == ["1st", "b"]
