"""Time and peak memory of gpumlp's CSV reader beside pyarrow, numpy.loadtxt and pandas.

Writes a CSV of random float64 values (default 400,000 rows x 20 columns, a
header row, 17 significant digits) to a temporary folder, then reads it with
each reader in a fresh Python process, so that one reader's memory never
counts against another's. Each process imports its modules first, then
resets and records its resident memory, reads the file into a float64 NumPy
table and records its peak resident memory (Linux's VmHWM; elsewhere
``resource.getrusage``); the difference is the reader's peak memory. Time is
the read alone, the best of ``--repeat`` processes.

The targets (issue 13): gpumlp within 4x of pyarrow's time (read and convert
to NumPy) and within 4x of the float64 table's size in peak memory.

    python scripts/bench_csv.py [--rows 400000] [--cols 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

TARGET = 4.0

# Each reader: the imports (not timed), then the read into a float64 table.
READERS = {
    "gpumlp (read_training_data)": (
        "from gpumlp.data import read_training_data",
        "X, y, _, _ = read_training_data(path)",
    ),
    "pyarrow.csv + to NumPy": (
        "import numpy as np; import pyarrow.csv as pc",
        "t = pc.read_csv(path); X = np.column_stack([c.to_numpy() for c in t.columns])",
    ),
    "numpy.loadtxt": (
        "import numpy as np",
        "X = np.loadtxt(path, delimiter=',', skiprows=1)",
    ),
    "pandas.read_csv + to_numpy": (
        "import pandas as pd",
        "X = pd.read_csv(path).to_numpy()",
    ),
}

# Peak memory: on Linux, /proc's VmHWM, reset to the current size just before the
# read (clear_refs 5), so neither the imports nor the parent's memory count (a
# forked child's ru_maxrss starts at its parent's size). Elsewhere, ru_maxrss.
_CHILD = """
import json, resource, sys, time
path = sys.argv[1]
{imports}
def status(key):
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(key))
try:
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    before, peak = status("VmRSS:"), (lambda: status("VmHWM:"))
except OSError:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
{read}
seconds = time.perf_counter() - start
after = peak()
print(json.dumps({{"seconds": seconds, "peak_kib": after - before, "total_kib": after}}))
"""


def write_csv(path, n_rows, n_cols, seed=0):
    """A header row and ``n_rows`` rows of random normals, as Python's repr writes them."""
    rng = np.random.default_rng(seed)
    header = ",".join([f"x{j}" for j in range(n_cols - 1)] + ["y"])
    with open(path, "w") as handle:
        handle.write(header + "\n")
        for start in range(0, n_rows, 50_000):
            block = rng.standard_normal((min(50_000, n_rows - start), n_cols))
            np.savetxt(handle, block, delimiter=",", fmt="%.17g")


def measure(name, path, repeat):
    """Best time and largest peak memory of ``repeat`` fresh processes."""
    imports, read = READERS[name]
    script = _CHILD.format(imports=imports, read=read)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    runs = []
    for _ in range(repeat):
        result = subprocess.run([sys.executable, "-c", script, path], capture_output=True,
                                text=True, env=env, check=True)
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    return (min(r["seconds"] for r in runs), max(r["peak_kib"] for r in runs) * 1024,
            max(r["total_kib"] for r in runs) * 1024)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--cols", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    table_bytes = args.rows * args.cols * 8
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "bench.csv")
        start = time.perf_counter()
        write_csv(path, args.rows, args.cols)
        size = os.path.getsize(path)
        print(f"{args.rows:,} x {args.cols} CSV, {size / 1e6:.0f} MB (written in "
              f"{time.perf_counter() - start:.1f} s); float64 table {table_bytes / 1e6:.0f} MB; "
              f"best of {args.repeat} fresh processes; {os.cpu_count()} CPU(s)")
        results = {name: measure(name, path, args.repeat) for name in READERS}
    print("\n| reader | time (s) | peak memory (MB) | x table | process peak (MB) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, (seconds, peak, total) in results.items():
        print(f"| {name} | {seconds:.2f} | {peak / 1e6:.0f} | {peak / table_bytes:.2f} | "
              f"{total / 1e6:.0f} |")
    ours, arrow = results["gpumlp (read_training_data)"], results["pyarrow.csv + to NumPy"]
    time_ratio, memory_ratio = ours[0] / arrow[0], ours[1] / table_bytes
    print(f"\ngpumlp / pyarrow time: {time_ratio:.2f}x (target <= {TARGET:g}x): "
          f"{'met' if time_ratio <= TARGET else 'NOT met'}")
    print(f"gpumlp peak memory / float64 table: {memory_ratio:.2f}x (target <= {TARGET:g}x): "
          f"{'met' if memory_ratio <= TARGET else 'NOT met'}")
    return 0 if time_ratio <= TARGET and memory_ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
