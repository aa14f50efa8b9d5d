import numpy as np
import pytest

# Small budgets keep every fit in the suite well under a second on 2 cores.
FAST = {"hidden_layer_sizes": (16,), "max_epochs": 30, "learning_rate": 1e-2, "patience": 10}


@pytest.fixture(scope="session")
def regression_data():
    """Heteroscedastic data: y = sin(x0) + x1, noise growing with |x2|."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(240, 3))
    noise = 0.1 + 0.3 * np.abs(X[:, 2])
    y = np.sin(X[:, 0]) + X[:, 1] + noise * rng.normal(size=len(X))
    return X[:200], y[:200], X[200:], y[200:]


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
