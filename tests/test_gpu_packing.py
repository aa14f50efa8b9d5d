"""Several trials per GPU, GPU memory handed back after a trial, inference in batches.

This machine has no GPU: the tests prove the logic (worker specs, resource shares, trial
slots, real Dask scheduling with a declared ``GPU`` resource, the memory release hook, batched
inference); ``benchmarks/bench_gpu.py`` measures the rest on a GPU.
"""

import gc
import itertools
import os
import time
import weakref

import distributed
import numpy as np
import pytest
import torch
from conftest import load

from autodeuq import AutoDEUQRegressor, NASRegressor
from autodeuq.evaluation import DaskEvaluator, TrialResult, train_candidate
from autodeuq.evaluation import _dask as dask_module
from autodeuq.evaluation import _train as train_module
from autodeuq.evaluation._dask import (
    _gpu_share,
    _gpu_slots,
    _gpu_worker_specs,
    _idle_cores_advice,
)
from autodeuq.nn import (
    PREDICT_BATCH_SIZE,
    GaussianMLP,
    GaussianNet,
    TensorDataset,
    predict_in_batches,
    train_network,
)

NET = {"layers": [{"units": 16}], "max_epochs": 5, "learning_rate": 1e-2, "patience": 5}


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3)).astype(np.float32)
    y = (X[:, 0] + 0.1 * rng.normal(size=300)).astype(np.float32)
    return {"X_train": X[:240], "y_train": y[:240], "X_valid": X[240:], "y_valid": y[240:]}


# -- the embedded cluster's workers and the resource shares -----------------------------------


def test_worker_specs_pin_k_processes_to_each_gpu():
    specs = _gpu_worker_specs(["0", "MIG-4f2c"], 2)
    assert sorted(specs) == ["gpu-0-0", "gpu-0-1", "gpu-1-0", "gpu-1-1"]
    for name, spec in specs.items():
        options = spec["options"]
        assert spec["cls"] is distributed.Nanny  # a process of its own (no shared GIL)
        assert options["nthreads"] == 1
        assert options["host"] == "127.0.0.1"
        assert options["resources"] == {"GPU": 0.5}
        expected = "0" if name.startswith("gpu-0-") else "MIG-4f2c"
        assert options["env"] == {"CUDA_VISIBLE_DEVICES": expected}
    # Each GPU's workers declare one GPU in all.
    for gpu in ("0", "MIG-4f2c"):
        assert sum(s["options"]["resources"]["GPU"] for s in specs.values()
                   if s["options"]["env"]["CUDA_VISIBLE_DEVICES"] == gpu) == 1.0


def test_one_trial_per_device_keeps_one_worker_per_gpu():
    specs = _gpu_worker_specs(["3"], 1, security="sec")
    assert list(specs) == ["gpu-0"]
    assert specs["gpu-0"]["options"]["resources"] == {"GPU": 1.0}
    assert specs["gpu-0"]["options"]["security"] == "sec"


@pytest.mark.parametrize("k", range(1, 17))
def test_exactly_k_trials_fit_in_one_gpu(k):
    """k trials' requests fit in one GPU (as a Dask worker subtracts them), k + 1 do not,
    and one fits in a worker declaring 1/k."""
    share = _gpu_share(k)
    available, fitted = 1.0, 0
    while available >= share:
        available -= share
        fitted += 1
    assert fitted == k
    assert 1 / k >= share > 1 / (k + 1)


def test_trial_slots_count_gpu_shares_and_threads():
    def worker(gpu, nthreads):
        return {"resources": {"GPU": gpu}, "nthreads": nthreads}

    assert _gpu_slots(worker(1, 1), 1) == 1
    assert _gpu_slots(worker(1 / 3, 1), 3) == 1  # embedded: a third of a GPU, one thread
    assert _gpu_slots(worker(1, 2), 2) == 2  # external: --nthreads 2 --resources GPU=1
    assert _gpu_slots(worker(1, 1), 2) == 1  # one thread runs one trial at a time
    assert _gpu_slots(worker(1, 4), 1) == 1  # the GPU resource allows one
    assert _gpu_slots(worker(2, 4), 2) == 4
    assert _gpu_slots({"nthreads": 2}, 2) == 0  # no GPU resource: no GPU trial


# -- advice when GPU workers leave the cores idle ---------------------------------------------


def test_one_worker_per_gpu_on_many_cores_is_told_what_to_set():
    advice = _idle_cores_advice(1, 1, 16)
    assert "one candidate at a time on each of 1 GPU(s)" in advice
    assert "16 cores" in advice
    assert "trials_per_device=16" in advice
    assert "devices='cpu'" in advice
    assert "trials_per_device=4 " in _idle_cores_advice(2, 1, 8)  # the cores per GPU
    assert _idle_cores_advice(1, 2, 16) is None  # already packing
    assert _idle_cores_advice(4, 1, 8) is None  # two cores per GPU: little to gain
    assert _idle_cores_advice(1, 1, 3) is None


def test_the_embedded_gpu_cluster_sets_the_advice(monkeypatch):
    """Without starting a cluster: the start is replaced, the advice is what is checked."""
    monkeypatch.setattr(dask_module, "_start_whole", lambda make: "cluster")
    monkeypatch.setattr(dask_module, "available_cores", lambda: 16)
    evaluator = DaskEvaluator(devices=["0"])
    assert evaluator.advice is None
    assert evaluator._start_embedded()[0] == "cluster"
    assert "trials_per_device=16" in evaluator.advice
    evaluator.trials_per_device = 8
    evaluator._start_embedded()
    assert evaluator.advice is None
    evaluator.devices, evaluator.trials_per_device = "cpu", 1  # no GPU: nothing to say
    evaluator._start_embedded()
    assert evaluator.advice is None


# -- a real cluster whose worker declares a GPU -----------------------------------------------


@pytest.fixture(scope="module")
def gpu_client():
    """One worker process with two threads and one declared GPU (but no real one)."""
    import dask

    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True,
                                           host="127.0.0.1", dashboard_address=None,
                                           resources={"GPU": 1})
    with distributed.Client(cluster, set_as_default=False) as client:
        yield client
    cluster.close()


def _sleeper():
    # Defined here so that cloudpickle sends it by value to the worker process.
    def sleepy(config, data, seed, device="cpu", time_limit=None, trial_id=-1, deadline=None,
               holdout=None):
        start = time.time()
        time.sleep(0.5)  # a stand-in for training: it must not touch CUDA (there is none)
        return TrialResult(trial_id=trial_id, config=config, status="success", objective=0.0,
                           seed=int(seed), start=start, end=time.time(),
                           worker=f"{os.getpid()}:{device}")

    return sleepy


def _run_trials(client, data, trials_per_device, n):
    evaluator = DaskEvaluator(scheduler=client, task=_sleeper(),
                              trials_per_device=trials_per_device)
    with evaluator:
        evaluator.start(data)
        slots = evaluator.n_workers
        for i in range(n):
            evaluator.submit(i, {"i": i}, seed=i)
        results = []
        deadline = time.monotonic() + 60
        while len(results) < n and time.monotonic() < deadline:
            results += evaluator.collect(timeout=5)
    assert sorted(r.trial_id for r in results) == list(range(n))
    return slots, sorted((r.start, r.end) for r in results), {r.worker for r in results}


def _overlaps(spans):
    return sum(later_start < end for (_, end), (later_start, _) in itertools.pairwise(spans))


def test_two_trials_per_device_share_the_gpu_at_once(gpu_client, data):
    slots, spans, workers = _run_trials(gpu_client, data, 2, 4)
    assert slots == 2
    assert _overlaps(spans) >= 1
    assert all(w.endswith(":cuda") for w in workers)  # workers with a GPU train on "cuda"


def test_one_trial_per_device_never_overlaps(gpu_client, data):
    slots, spans, _ = _run_trials(gpu_client, data, 1, 3)
    assert slots == 1  # two threads, but one GPU
    assert _overlaps(spans) == 0


# -- bad values, and the estimators' parameter ------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2", None])
def test_bad_trials_per_device_is_refused_before_a_worker_starts(monkeypatch, data, value):
    def refuse(*args, **kwargs):
        raise AssertionError("a cluster was started or connected to")

    monkeypatch.setattr(DaskEvaluator, "_start_embedded", refuse)
    monkeypatch.setattr(DaskEvaluator, "_connect", refuse)
    evaluator = DaskEvaluator(trials_per_device=value)
    with pytest.raises(ValueError, match=r"trials_per_device must be an int >= 1; got ") as info:
        evaluator.start(data)
    assert repr(value) in str(info.value)
    assert "Use 1 for one trial per GPU" in str(info.value)
    assert evaluator._client is None


@pytest.mark.parametrize("cls", [NASRegressor, AutoDEUQRegressor])
def test_estimators_refuse_bad_values_and_pass_good_ones_on(monkeypatch, cls):
    def refuse(*args, **kwargs):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(DaskEvaluator, "start", refuse)
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(ValueError, match=r"trials_per_device must be an int >= 1; got 0\. Use "
                       "1 for one trial per GPU"):  # the evaluator's words
        cls(trials_per_device=0, max_evals=1).fit(X, X[:, 0])
    assert cls().get_params()["trials_per_device"] == 1
    evaluator = cls(trials_per_device=3)._make_evaluator()
    assert evaluator.trials_per_device == 3


# -- GPU memory handed back after a trial -----------------------------------------------------


def test_cached_gpu_memory_is_released_after_a_cuda_trial_only(monkeypatch, data):
    calls = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append(1))
    assert train_candidate(NET, data, 0).status == "success"
    assert calls == []  # no CUDA call on the CPU
    # No GPU here: the trial fails (no such device), and the cache is emptied all the same.
    result = train_candidate(NET, data, 0, device="cuda")
    assert calls == [1]
    if not torch.cuda.is_available():
        assert result.status == "failed"
    train_candidate(NET, data, 0, "cuda:0", None, 5)  # positional device too
    assert calls == [1, 1]


def test_a_trial_keeps_nothing_of_itself_alive_when_the_cache_is_emptied(monkeypatch, data):
    """By the time train_candidate empties the CUDA cache, its network, optimizer and data
    tensors are gone, freed by reference counting alone (the cyclic collector off), so what
    they held on a GPU is free for ``empty_cache`` to hand back. No GPU here: the trial is
    told ``device="cuda"`` and trains on the CPU."""
    made, alive_at_empty = [], []
    initialize, dataset_init = GaussianNet.initialize, TensorDataset.__init__

    def recording_initialize(self):
        initialize(self)
        made.extend(weakref.ref(o) for o in (self, self.module_, self.optimizer_))
        return self

    def recording_dataset_init(self, *args, **kwargs):
        dataset_init(self, *args, **kwargs)
        made.extend((weakref.ref(self), weakref.ref(self.X)))

    def on_the_cpu(*args, device, **kwargs):
        assert device == "cuda"
        return train_network(*args, device="cpu", **kwargs)

    monkeypatch.setattr(GaussianNet, "initialize", recording_initialize)
    monkeypatch.setattr(TensorDataset, "__init__", recording_dataset_init)
    monkeypatch.setattr(train_module, "train_network", on_the_cpu)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: alive_at_empty.append(
        [ref() for ref in made if ref() is not None]))
    gc.collect()
    gc.disable()
    try:
        result = train_candidate(NET, data, 1, device="cuda")
    finally:
        gc.enable()
    assert result.status == "success"
    assert len(made) >= 5  # the net, its module and optimizer, the data it trained on
    assert alive_at_empty == [[]]  # emptied once, with nothing of the trial left
    assert all(isinstance(v, np.ndarray) for v in result.state.values())


# -- inference in batches ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def module():
    torch.manual_seed(0)
    return GaussianMLP(3, [{"units": 8, "activation": "tanh"}]).eval()


def _on_pieces(module, X, size):
    with torch.inference_mode():
        parts = [module(torch.as_tensor(X[i:i + size])) for i in range(0, len(X), size)]
    return torch.cat([m for m, _ in parts]), torch.cat([v for _, v in parts])


def test_predict_in_batches_equals_the_pieces(module):
    X = np.random.default_rng(1).normal(size=(2 * PREDICT_BATCH_SIZE + 5, 3)).astype(np.float32)
    mean, var = predict_in_batches(module, X)
    piece_mean, piece_var = _on_pieces(module, X, PREDICT_BATCH_SIZE)
    assert mean.shape == var.shape == (len(X),)
    assert mean.device.type == var.device.type == "cpu"
    torch.testing.assert_close(mean, piece_mean, rtol=0, atol=0)
    torch.testing.assert_close(var, piece_var, rtol=0, atol=0)
    # And the same values as one pass over every row, to float32 rounding.
    with torch.inference_mode():
        whole_mean, whole_var = module(torch.as_tensor(X))
    torch.testing.assert_close(mean, whole_mean)
    torch.testing.assert_close(var, whole_var)
    small_mean, _ = predict_in_batches(module, X[:10], batch_size=3)
    torch.testing.assert_close(small_mean, _on_pieces(module, X[:10], 3)[0], rtol=0, atol=0)


def test_predict_in_batches_takes_no_rows_and_refuses_a_bad_batch_size(module):
    mean, var = predict_in_batches(module, np.zeros((0, 3), dtype=np.float32))
    assert mean.shape == var.shape == (0,)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1; got 0"):
        predict_in_batches(module, np.zeros((2, 3)), batch_size=0)


def test_validation_predictions_of_a_trial_go_in_batches(monkeypatch, data):
    """A validation part larger than a batch gives the predictions of its pieces."""
    rng = np.random.default_rng(2)
    X_valid = rng.normal(size=(PREDICT_BATCH_SIZE + 100, 3)).astype(np.float32)
    big = {**data, "X_valid": X_valid, "y_valid": X_valid[:, 0].copy()}
    sizes = []
    forward = GaussianMLP.forward

    def counting(self, X):
        sizes.append(len(X))
        return forward(self, X)

    monkeypatch.setattr(GaussianMLP, "forward", counting)
    result = train_candidate({**NET, "max_epochs": 2}, big, 0)
    assert result.status == "success"
    assert max(sizes) <= max(PREDICT_BATCH_SIZE, 8192)  # training validates in batches too
    assert sizes[-2:] == [PREDICT_BATCH_SIZE, 100]  # the last passes: the predictions
    net = GaussianMLP(3, NET["layers"])
    net.load_state_dict({k: torch.as_tensor(v) for k, v in result.state.items()})
    mean, var = _on_pieces(net.eval(), X_valid, PREDICT_BATCH_SIZE)
    np.testing.assert_array_equal(result.valid_mean, mean.numpy())
    np.testing.assert_array_equal(result.valid_var, var.numpy())


# -- the GPU benchmark ------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_the_gpu_benchmark_refuses_without_a_gpu(capsys):
    bench = load("benchmarks/bench_gpu.py")
    assert bench.main(["--seconds", "1"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
