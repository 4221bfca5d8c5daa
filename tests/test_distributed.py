"""Training on Dask: agreement with in-process training, faults, data readers, CLI."""

import os
import signal
import threading
import time
import warnings

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="Dask is not installed")
da = pytest.importorskip("dask.array")

from test_cli import run  # noqa: E402

from gpumlp import MLPRegressor, StandardizedRegressor, io  # noqa: E402
from gpumlp import distributed as gd  # noqa: E402


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=None)
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1003, 5))
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2]
    return X, y


def fit_quietly(model, X, y, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(X, y, **kwargs)


def assert_same_model(a, b, tol=1e-12):
    for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert np.linalg.norm(p - q) <= tol * np.linalg.norm(p)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=tol)


@pytest.mark.parametrize("chunks, solver, extra", [
    # 1003 rows in chunks that do not divide them: 4 x 250 + 3.
    (250, "gd", {}),
    ((400, 300, 303), "gd", {}),
    (1003, "gd", {}),
    # Minibatches equal the in-process ones when each chunk is one batch.
    (250, "sgd", {"batch_size": 250, "momentum": 0.9}),
    (250, "adam", {"batch_size": 250, "learning_rate_init": 0.01}),
], ids=["gd-5-uneven", "gd-3", "gd-1", "sgd-momentum", "adam"])
def test_distributed_equals_in_process(client, data, chunks, solver, extra):
    X, y = data
    params = dict(hidden_layer_sizes=(8,), solver=solver, max_iter=20, tol=0, shuffle=False,
                  random_state=0, alpha=0.01, **extra)
    local = fit_quietly(MLPRegressor(device="cpu", **params), X, y)
    remote = fit_quietly(MLPRegressor(**params), da.from_array(X, chunks=(chunks, 5)),
                         da.from_array(y, chunks=(chunks,)), client=client)
    assert remote.n_iter_ == 20
    assert_same_model(local, remote)


@pytest.mark.parametrize("case", ["sample_weight", "poisson", "lbfgs"])
def test_weights_poisson_and_lbfgs_on_dask_equal_in_process(client, data, case):
    # Weights come chunked like the rows (here as a dask array with other
    # chunks, which are rechunked); Poisson and L-BFGS go through the chunks too.
    X, y = data
    params = dict(hidden_layer_sizes=(8,), max_iter=15, tol=0, shuffle=False, random_state=0,
                  alpha=0.01)
    fit_kwargs, remote_kwargs = {}, {}
    if case == "sample_weight":
        weights = np.random.default_rng(1).uniform(0.0, 2.0, len(y))
        params.update(solver="sgd", batch_size=250, momentum=0.9)
        fit_kwargs["sample_weight"] = weights
        remote_kwargs["sample_weight"] = da.from_array(weights, chunks=500)
    elif case == "poisson":
        y = np.exp(0.5 * y)
        params.update(loss="poisson", learning_rate_init=0.01)
    else:
        params.update(solver="lbfgs")
    local = fit_quietly(MLPRegressor(device="cpu", **params), X, y, **fit_kwargs)
    remote = fit_quietly(MLPRegressor(**params), da.from_array(X, chunks=(250, 5)),
                         da.from_array(y, chunks=(250,)), client=client, **remote_kwargs)
    assert_same_model(local, remote, tol=1e-9 if case == "lbfgs" else 1e-12)
    if case == "sample_weight":
        unweighted = fit_quietly(MLPRegressor(device="cpu", **params), X, y)
        assert not np.allclose(unweighted.coefs_[0], remote.coefs_[0], rtol=1e-6)


def test_shuffled_minibatches_visit_every_chunk_once_per_epoch(client, data):
    X, y = data
    model = fit_quietly(MLPRegressor((8,), solver="sgd", batch_size=400, max_iter=5, tol=0,
                                     random_state=3),
                        da.from_array(X, chunks=(250, 5)), da.from_array(y, chunks=250),
                        client=client)
    assert model.t_ == 5 * 1003
    again = fit_quietly(MLPRegressor((8,), solver="sgd", batch_size=400, max_iter=5, tol=0,
                                     random_state=3),
                        da.from_array(X, chunks=(250, 5)), da.from_array(y, chunks=250),
                        client=client)
    assert_same_model(model, again, tol=0)  # the seed fixes the chunk order


def test_predict_returns_a_dask_array(client, data):
    X, y = data
    model = fit_quietly(MLPRegressor((8,), max_iter=5, device="cpu"), X, y)
    Xd = da.from_array(X, chunks=(300, 5))
    y_pred = model.predict(Xd)
    assert isinstance(y_pred, da.Array) and y_pred.shape == (1003,)
    np.testing.assert_allclose(y_pred.compute(), model.predict(X), rtol=1e-12)
    multi = fit_quietly(MLPRegressor((8,), max_iter=5, device="cpu"), X,
                        np.column_stack([y, -y]))
    assert multi.predict(Xd).compute().shape == (1003, 2)


def test_distributed_model_is_an_ordinary_model(client, data, tmp_path):
    X, y = data
    model = fit_quietly(StandardizedRegressor(MLPRegressor((8,), max_iter=10)),
                        da.from_array(X, chunks=(250, 5)), da.from_array(y, chunks=250),
                        client=client)
    io.save(model, tmp_path / "m.npz")
    loaded = io.load(tmp_path / "m.npz")
    loaded.regressor_.set_params(device="cpu")
    np.testing.assert_allclose(loaded.predict(X), model.predict(da.from_array(X)).compute(),
                               rtol=1e-12)


def test_bad_dask_input_gets_clear_errors(client, data):
    X, y = data
    bad = X.copy()
    bad[700, 2] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN or infinity in 1 chunk\(s\)"):
        MLPRegressor().fit(da.from_array(bad, chunks=(250, 5)), y, client=client)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        MLPRegressor().fit(da.from_array(X, chunks=(250, 5)), y[:10], client=client)
    with pytest.raises(ValueError, match="holds out whole chunks"):
        MLPRegressor(early_stopping=True).fit(da.from_array(X), y, client=client)


def test_eval_set_on_dask_gives_the_in_process_figures(client, data):
    X, y = data
    params = dict(hidden_layer_sizes=(8,), max_iter=15, tol=0, random_state=0,
                  learning_rate_init=0.1)
    local = fit_quietly(MLPRegressor(device="cpu", **params), X[:800], y[:800],
                        eval_set=(X[800:], y[800:]))
    remote = fit_quietly(
        MLPRegressor(**params), da.from_array(X[:800], chunks=(200, 5)),
        da.from_array(y[:800], chunks=200), client=client,
        eval_set=(da.from_array(X[800:], chunks=(100, 5)), da.from_array(y[800:], chunks=100)))
    assert len(remote.validation_scores_) == 15
    np.testing.assert_allclose(remote.validation_loss_curve_, local.validation_loss_curve_,
                               rtol=1e-10)
    np.testing.assert_allclose(remote.validation_scores_, local.validation_scores_,
                               rtol=1e-9)


def test_early_stopping_on_dask_holds_out_chunks_and_keeps_the_best(client, data):
    X, y = data
    model = fit_quietly(MLPRegressor((8,), early_stopping=True, validation_fraction=0.2,
                                     learning_rate_init=0.1, max_iter=40, random_state=0),
                        da.from_array(X, chunks=(100, 5)), da.from_array(y, chunks=100),
                        client=client)
    scores = model.validation_scores_
    assert len(scores) == model.n_iter_ and model.best_validation_score_ == max(scores)
    # ceil(0.2 * 11) = 3 of the eleven chunks (ten of 100 rows, one of 3) are held out.
    assert model.t_ / model.n_iter_ in (1003 - 300, 1003 - 203)
    assert model.score(X, y) > 0.0


@pytest.mark.parametrize("how", ["warm_start", "partial_fit"])
def test_a_dask_fitted_model_goes_on_training_in_memory(client, data, how):
    X, y = data
    model = fit_quietly(MLPRegressor((8,), solver="adam", max_iter=3, tol=0, random_state=0),
                        da.from_array(X, chunks=(250, 5)), da.from_array(y, chunks=250),
                        client=client)
    before = [W.copy() for W in model.coefs_]
    if how == "warm_start":
        fit_quietly(model.set_params(warm_start=True, device="cpu"), X, y)
    else:
        model.set_params(device="cpu").partial_fit(X, y)
    # Behaviour changed deliberately (issue 12): n_iter_ counts the last
    # call's epochs, as in scikit-learn; loss_curve_ keeps every epoch.
    assert model.n_iter_ == (3 if how == "warm_start" else 1)
    assert len(model.loss_curve_) == 3 + model.n_iter_
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.coefs_))
    assert all(np.all(np.isfinite(W)) for W in model.coefs_)


def test_without_a_client_says_how_to_get_one(data, monkeypatch):
    X, y = data

    def no_client():
        raise ValueError("No clients found")

    monkeypatch.setattr(distributed, "default_client", no_client)
    with pytest.raises(ValueError, match="needs a Dask client"):
        MLPRegressor().fit(da.from_array(X), y)


def test_a_killed_worker_never_gives_a_silently_wrong_model(client, data):
    X, y = data
    params = dict(hidden_layer_sizes=(8,), max_iter=80, tol=0, random_state=0)
    expected = fit_quietly(MLPRegressor(device="cpu", **params), X, y)
    outcome = {}

    def train():
        try:
            outcome["model"] = fit_quietly(MLPRegressor(**params),
                                           da.from_array(X, chunks=(250, 5)),
                                           da.from_array(y, chunks=250), client=client)
        except Exception as exc:  # the test inspects what it was
            outcome["error"] = exc

    thread = threading.Thread(target=train)
    thread.start()
    time.sleep(1.0)
    assert thread.is_alive()  # the kill lands mid-fit
    pids = client.run(os.getpid)
    os.kill(next(iter(pids.values())), signal.SIGKILL)
    thread.join(timeout=120)
    assert not thread.is_alive()
    if "model" in outcome:
        assert outcome["model"].n_iter_ == 80
        assert_same_model(expected, outcome["model"])
    else:
        assert isinstance(outcome["error"], RuntimeError)
        assert "Training on the Dask cluster failed" in str(outcome["error"])
    client.wait_for_workers(2, timeout=60)


def _table(n, f, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, f))
    return X, X @ np.arange(1.0, f + 1)


def test_readers_keep_data_lazy_and_exact(tmp_path):
    parts = [_table(n, 3, seed) for seed, n in enumerate((40, 25, 35))]
    X_all = np.concatenate([p[0] for p in parts])
    y_all = np.concatenate([p[1] for p in parts])
    npy, npz = tmp_path / "npy", tmp_path / "npz"
    npy.mkdir()
    npz.mkdir()
    for i, (X, y) in enumerate(parts):
        np.save(npy / f"part{i}.npy", np.column_stack([X, y]))
        np.savez(npz / f"part{i}.npz", X=X, y=y)
    for source in (str(npy), str(npy / "*.npy"), str(npz)):
        X, y, names, target = gd.read_dataset(source)
        assert isinstance(X, da.Array) and X.chunks[0] == (40, 25, 35)
        np.testing.assert_array_equal(X.compute(), X_all)
        np.testing.assert_array_equal(y.compute(), y_all)
        assert names == ["x0", "x1", "x2"] and target == "y"
    zarr = pytest.importorskip("zarr")
    store = tmp_path / "data.zarr"
    group = zarr.open_group(str(store), mode="w")
    create = getattr(group, "create_array", None) or group.create_dataset  # zarr 3 or 2
    create("X", data=X_all, chunks=(30, 3))
    create("y", data=y_all, chunks=(30,))
    X, y, _, _ = gd.read_dataset(str(store))
    np.testing.assert_array_equal(X.compute(), X_all)
    np.testing.assert_array_equal(y.compute(), y_all)


def test_parquet_reader(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    X_all, y_all = _table(250, 3, 0)
    frame = pd.DataFrame(X_all, columns=["a", "b", "c"]).assign(price=y_all)
    frame.to_parquet(tmp_path / "t.parquet", row_group_size=100)
    X, y, names, target = gd.read_dataset(str(tmp_path / "t.parquet"), "price")
    assert names == ["a", "b", "c"] and target == "price"
    np.testing.assert_array_equal(X.compute(), X_all)
    np.testing.assert_array_equal(y.compute(), y_all)
    from gpumlp.data import DataError

    with pytest.raises(DataError, match="there is no column 'cost'"):
        gd.read_dataset(str(tmp_path / "t.parquet"), "cost")


def test_reader_errors(tmp_path):
    from gpumlp.data import DataError

    with pytest.raises(DataError, match="no .npy or .npz files found"):
        gd.read_dataset(str(tmp_path))
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(DataError, match="expected a 2-D array"):
        gd.read_dataset(str(tmp_path))


def test_cli_trains_on_a_local_cluster(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    for i in range(4):
        X, y = _table(300, 4, i)
        np.save(folder / f"part{i}.npy", np.column_stack([X, y]))
    model = tmp_path / "model.npz"
    result = run("train", "--data", str(folder / "*.npy"), "--cluster", "local:2",
                 "--epochs", "30", "--quiet", "--out", str(model), check=True)
    assert "dask workers (2 local)" in result.stdout
    assert "900 train / 300 test rows" in result.stdout
    assert f"saved model to {model}" in result.stdout
    assert io.load(model).predict(np.zeros((2, 4))).shape == (2,)


def test_cli_cluster_errors():
    result = run("train", "--cluster", "local:x", "--data", "nowhere/*.npy")
    assert result.returncode == 2 and "--cluster takes local:N" in result.stderr
    result = run("train", "--cluster", "local:2")
    assert result.returncode == 2 and "--cluster and --scheduler need --data" in result.stderr


def test_cli_joins_a_running_scheduler(client, tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    for i in range(3):
        X, y = _table(200, 3, i)
        np.savez(folder / f"part{i}.npz", X=X, y=y)
    address = client.scheduler.address
    result = run("train", "--data", str(folder), "--scheduler", address, "--epochs", "5",
                 "--quiet", check=True)
    assert f"dask workers ({address})" in result.stdout
    assert "400 train / 200 test rows" in result.stdout
