"""ci/gpu, exercised as far as a machine without a GPU allows."""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "ci" / "gpu"


def run(*args, **env):
    environment = dict(os.environ, PYTHON=sys.executable, **env)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          env=environment, timeout=120)


def test_help_says_how_to_prepare_the_wheels():
    result = run("--help")
    assert result.returncode == 0
    assert "pip download --no-deps" in result.stdout and "TF32" in result.stdout


def test_unknown_argument_is_refused():
    result = run("--frobnicate")
    assert result.returncode == 2
    assert "unknown argument '--frobnicate'" in result.stderr


def test_fails_clearly_without_cupy(tmp_path):
    try:
        import cupy  # noqa: F401

        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    result = run("--out", str(tmp_path))
    assert result.returncode == 3
    assert "no usable CUDA GPU through CuPy" in result.stderr
    assert not any(tmp_path.iterdir())  # nothing ran, nothing was written


def test_the_script_parses():
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_opt_in_graph_steps_are_listed_and_unknown_steps_refused():
    help_text = run("--help").stdout
    assert "GPUMLP_CUDA_GRAPH=1" in help_text and "train-graph" in help_text
    result = run("--steps", "tests,grpah")
    assert result.returncode == 2
    assert "unknown step 'grpah'" in result.stderr and "graph" in result.stderr


def test_every_test_file_the_script_names_exists():
    import re

    named = set(re.findall(r"tests/test_\w+\.py", SCRIPT.read_text()))
    assert {"tests/test_tiles.py", "tests/test_cuda_graph.py"} <= named
    for path in named:
        assert (SCRIPT.parent.parent / path).is_file(), path


def test_the_dask_gpu_step_is_known_and_runs_the_cupy_chunk_cases():
    help_text = run("--help").stdout
    assert "dask-gpu" in help_text and "CUDA_VISIBLE_DEVICES" in help_text
    if importlib.util.find_spec("cupy") is None:  # with CuPy it would run the step
        # A known step: refused only for the missing GPU (3), not as unknown (2).
        result = run("--steps", "dask-gpu")
        assert result.returncode == 3 and "unknown step" not in result.stderr
    text = SCRIPT.read_text()
    command = text[text.index("want dask-gpu"):]
    command = command[:command.index("\n\n")]
    assert "--backends numpy,cupy" in command and "tests/test_distributed.py" in command
    assert 'CUDA_VISIBLE_DEVICES="$gpu_index"' in command
    # What the step runs holds CuPy-chunk cases (which skip here, without CuPy).
    tests = (SCRIPT.parent.parent / "tests" / "test_distributed.py").read_text()
    assert '@pytest.fixture(params=["torch", "cupy"])\ndef to_chunk(request):' in tests
    assert "def test_chunks_of_another_library_train_as_numpy_chunks(client, data, " \
           "to_chunk, solver):" in tests
