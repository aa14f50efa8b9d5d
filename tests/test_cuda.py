"""On a real GPU: a network and a batched ensemble trained there, the memory a trial hands
back, inference in batches on the device, and a search packing two trials on one GPU.

Every test here needs CUDA and is skipped without it (CI has none): run ``pytest
tests/test_cuda.py`` on a machine with a GPU. ``test_gpu_packing.py`` proves the same logic
with no GPU; ``benchmarks/bench_gpu.py`` measures candidates per hour on one.
"""

import itertools
import pickle

import numpy as np
import pytest
import torch
from conftest import FAST

from autodeuq import AutoDEUQRegressor, DeepEnsembleRegressor, GaussianMLPRegressor
from autodeuq.evaluation import train_candidate
from autodeuq.nn import PREDICT_BATCH_SIZE, GaussianMLP, predict_in_batches
from autodeuq.space import Float, Int
from autodeuq.uncertainty import gaussian_nll

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _on_cpu(module):
    return all(p.device.type == "cpu" for p in module.parameters())


def test_a_network_trains_on_the_gpu_and_is_kept_on_the_cpu(regression_data):
    X, y, X_test, y_test = regression_data
    params = {**FAST, "max_epochs": 60, "random_state": 0}
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    gpu = GaussianMLPRegressor(device="cuda", **params).fit(X, y)
    assert torch.cuda.max_memory_allocated() > 0  # it trained there
    assert _on_cpu(gpu.module_)  # and is kept on the CPU: it predicts anywhere
    cpu = GaussianMLPRegressor(device="cpu", **params).fit(X, y)
    # The same seeds on two devices: the same network up to the devices' rounding, so the
    # same quality, and predictions that agree far more closely than the noise.
    nll = {name: gaussian_nll(y_test, *est.predict(X_test, return_std=True))
           for name, est in (("gpu", gpu), ("cpu", cpu))}
    constant = gaussian_nll(y_test, np.full_like(y_test, y.mean()), np.full_like(y_test, y.std()))
    assert nll["gpu"] < constant - 0.3, (nll, constant)
    assert abs(nll["gpu"] - nll["cpu"]) < 0.2, nll
    gap = np.sqrt(np.mean((gpu.predict(X_test) - cpu.predict(X_test)) ** 2))
    assert gap < 0.1 * np.std(y_test)
    again = pickle.loads(pickle.dumps(gpu))
    np.testing.assert_array_equal(again.predict(X_test), gpu.predict(X_test))


def test_a_batched_ensemble_on_the_gpu_agrees_with_members_trained_one_by_one(regression_data):
    X, y, X_test, y_test = regression_data
    member = GaussianMLPRegressor(device="cuda", **{**FAST, "max_epochs": 60})
    runs = {mode: DeepEnsembleRegressor(member, n_members=5, batched=mode,
                                        random_state=0).fit(X, y)
            for mode in (True, False)}
    for est in runs.values():
        assert all(_on_cpu(m.module_) for m in est.estimators_)
    nlls = {mode: np.array([m.validation_nll_ for m in est.estimators_])
            for mode, est in runs.items()}
    spread = np.sqrt((nlls[True].var(ddof=1) + nlls[False].var(ddof=1)) / 5)
    assert abs(nlls[True].mean() - nlls[False].mean()) < 4 * spread + 0.05, nlls
    preds = {mode: est.predict(X_test) for mode, est in runs.items()}
    assert np.sqrt(np.mean((preds[True] - preds[False]) ** 2)) < 0.25 * np.std(y_test)
    # The mixture's identities hold on what the GPU trained.
    _, total, aleatoric, epistemic = runs[True].predict_uncertainty(X_test)
    np.testing.assert_allclose(total ** 2, aleatoric ** 2 + epistemic ** 2, rtol=1e-12)


def test_a_trial_hands_its_gpu_memory_back():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 8)).astype(np.float32)
    y = (X[:, 0] + 0.1 * rng.normal(size=3000)).astype(np.float32)
    data = {"X_train": X[:2400], "y_train": y[:2400], "X_valid": X[2400:], "y_valid": y[2400:]}
    config = {"layers": [{"units": 512}, {"units": 512}], "batch_size": 256, "max_epochs": 3,
              "learning_rate": 1e-3, "patience": None}
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    allocated, reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
    torch.cuda.reset_peak_memory_stats()
    result = train_candidate(config, data, 0, device="cuda")
    assert result.status == "success", result.error
    assert torch.cuda.max_memory_allocated() > allocated + 512 * 512 * 4  # it used the GPU
    assert torch.cuda.memory_allocated() == allocated  # nothing of it is left there
    assert torch.cuda.memory_reserved() <= reserved  # and the cache went back to the GPU
    assert all(isinstance(v, np.ndarray) for v in result.state.values())
    assert np.isfinite(result.valid_mean).all()
    assert (result.valid_var > 0).all()


def test_inference_in_batches_on_the_gpu_holds_one_batch_there():
    torch.manual_seed(0)
    cpu = GaussianMLP(8, [{"units": 256, "activation": "relu"}] * 2).eval()
    gpu = GaussianMLP(8, [{"units": 256, "activation": "relu"}] * 2)
    gpu.load_state_dict(cpu.state_dict())
    gpu = gpu.cuda().eval()
    rng = np.random.default_rng(0)

    def predict(n_rows):
        X = rng.normal(size=(n_rows, 8)).astype(np.float32)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        mean, var = predict_in_batches(gpu, X)
        return X, mean, var, torch.cuda.max_memory_allocated() - base

    _, _, _, peak_small = predict(2 * PREDICT_BATCH_SIZE)
    X, mean, var, peak_large = predict(16 * PREDICT_BATCH_SIZE + 7)
    assert 0 < peak_large <= peak_small * 1.05 + 2**20, (peak_small, peak_large)
    assert mean.device.type == var.device.type == "cpu"
    assert mean.shape == var.shape == (len(X),)
    whole_mean, whole_var = predict_in_batches(cpu, X)
    torch.testing.assert_close(mean, whole_mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(var, whole_var, rtol=1e-4, atol=1e-5)


def test_a_search_packs_two_trials_on_one_gpu(regression_data):
    X, y, X_test, _ = regression_data
    space = {"num_layers": 1, "units_1": Int(16, 64), "learning_rate": Float(1e-3, 3e-2, log=True),
             "max_epochs": 40, "patience": 10}
    est = AutoDEUQRegressor(search_space=space, algorithm="random", max_evals=8,
                            ensemble_size=2, devices=[0], trials_per_device=2, max_networks=None,
                            random_state=0).fit(X, y)
    results = est.search_results_
    assert (results["status"] == "success").all()
    assert results["worker"].nunique() == 2  # two processes on the one GPU
    spans = sorted(zip(results["start_time"], results["end_time"], strict=True))
    assert any(b[0] < a[1] for a, b in itertools.pairwise(spans)), "no two trials overlapped"
    assert all(_on_cpu(m.module_) for m in est.pipeline_[-1].estimators_)
    mean, total, _, epistemic = est.predict_uncertainty(X_test)
    assert np.isfinite(mean).all()
    assert (total >= epistemic).all()
    assert (epistemic > 0).all()
