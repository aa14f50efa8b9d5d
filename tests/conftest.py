import gc
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

# Small budgets keep every fit in the suite well under a second on 2 cores.
FAST = {"hidden_layer_sizes": (16,), "max_epochs": 30, "learning_rate": 1e-2, "patience": 10}


def search_dir(checkpoint_dir):
    """The journal directory of the one search fitted with ``checkpoint_dir`` (its
    ``search-...`` subdirectory; ``checkpoint_dir`` itself where ``Journal`` was given it
    directly), None before there is one."""
    checkpoint_dir = Path(checkpoint_dir)
    if (checkpoint_dir / "meta.json").exists():
        return checkpoint_dir
    found = sorted(checkpoint_dir.glob("search-*"))
    assert len(found) <= 1, f"more than one search in {checkpoint_dir}: {found}"
    return found[0] if found else None


@pytest.fixture(scope="session")
def regression_data():
    """Heteroscedastic data: y = sin(x0) + x1, noise growing with |x2|."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(240, 3))
    noise = 0.1 + 0.3 * np.abs(X[:, 2])
    y = np.sin(X[:, 0]) + X[:, 1] + noise * rng.normal(size=len(X))
    return X[:200], y[:200], X[200:], y[200:]


@pytest.fixture(autouse=True)
def _no_default_client_left():
    """Fail a test that leaves a Dask client as the session's default: every later fit with
    ``scheduler=None`` would use it (CI once lost seven tests to one that never connected)."""
    yield
    if "distributed" not in sys.modules:
        return
    from distributed import default_client

    for _ in range(2):
        try:
            left = default_client()
        except ValueError:  # no client
            return
        gc.collect()  # one no longer referenced goes with its garbage
    pytest.fail(f"the test left {left!r} ({left.status}) as the default Dask client; close "
                "it, or make it with set_as_default=False")


@pytest.fixture(scope="session")
def client():
    """One real two-process Dask cluster for the session; a lost worker fails its task at once
    (the evaluator retries it itself)."""
    dask = pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=None)
    with distributed.Client(cluster, set_as_default=False) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="session")
def external_cluster(tmp_path_factory):
    """A scheduler and two workers started as separate processes with the dask CLI, as a job
    script on a cluster would; yields the scheduler's address and its scheduler file."""
    distributed = pytest.importorskip("distributed")
    folder = tmp_path_factory.mktemp("external")
    scheduler_file = folder / "scheduler.json"
    dask_cli = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    procs = [subprocess.Popen([*dask_cli, "--host", "127.0.0.1", "--port", "0",
                               "--dashboard-address", "127.0.0.1:0",
                               "--scheduler-file", str(scheduler_file)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.2)
        for _ in range(2):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", "--nthreads", "1",
                 "--host", "127.0.0.1", "--scheduler-file", str(scheduler_file)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with distributed.Client(scheduler_file=str(scheduler_file)) as c:
            c.wait_for_workers(2, timeout=120)
            address = c.scheduler.address
        yield address, scheduler_file
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


ROOT = Path(__file__).resolve().parents[1]


def load(relative):
    """Import a script of the repository (an example or a benchmark) by its path."""
    spec = importlib.util.spec_from_file_location(Path(relative).stem, ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
