"""DeepHyper 0.13.2's side of ``benchmarks/compare_deephyper.py``: AutoDEUQ as DeepHyper does it.

Runs in its own virtual environment (``benchmarks/.venv-deephyper``: ``deephyper==0.13.2`` and
torch's CPU build, made by compare_deephyper.py on first use), never in the package's: it
imports neither autodeuq nor anything of this repository. It rebuilds the AutoDEUQ pipeline the
way DeepHyper's tutorial "Neural Architecture Search and Deep Ensemble with Uncertainty
Quantification for Regression (Pytorch)" does it:

1. an ``HpProblem`` with the dimensions of the search space the harness sends (autodeuq's
   default space, as ``SearchSpace.to_dict()``): integer and real ranges as tuples (log ones
   with ``"log-uniform"``), choices as lists (DeepHyper makes a list of numbers an ordinal
   hyperparameter, of strings a categorical one), every per-layer dimension of hidden layer
   ``k >= 2`` active under ``ConfigSpace.GreaterThanCondition(dim, num_layers, k - 1)``;
   the harness's first candidate (GaussianMLPRegressor's defaults) becomes the problem's
   default configuration and ``initial_points=[problem.default_configuration]``, as the
   tutorial starts from its baseline;
2. ``CBO(problem, random_state=seed, log_dir=...)`` with its defaults otherwise, and
   ``Evaluator.create(run, method="process", method_kwargs={"num_workers": W, ...})``;
   ``search.search(evaluator, max_evals=..., timeout=...)``;
3. a run function that trains the Gaussian network in plain torch on the inner training part,
   early-stopping on the validation part, and saves its ``state_dict`` as
   ``model_<job.id>.pt`` (DeepHyper maximizes: the objective is minus the validation NLL);
4. the checkpointed models are reloaded with the parameters of their row of the results
   (``parameters_from_row``), wrapped in a ``TorchPredictor`` that returns
   ``{"loc", "scale"}``, and ``GreedySelector(loss_func=NormalNegLogLikelihood(),
   aggregator=MixedNormalAggregator(), k=5)`` picks members and weights by the validation NLL;
   ``EnsemblePredictor(predictors, MixedNormalAggregator(), weights)`` is the fitted ensemble.

The clock runs from just before the evaluator is created to the fitted ``EnsemblePredictor``
(``wall_time``); predicting the test set comes after it.

The network and its training are those of autodeuq, written again here: hidden layers of
``Linear`` (plus a bias-free ``Linear`` projection of each earlier output named by its
``skip_k_d`` dimensions, added before the activation), activation, dropout (when > 0); a head
``Linear(width, 2)`` giving the mean and ``var = softplus(raw) + var_floor`` (bias of the raw
variance at ``log(e - 1)``, so a fresh network predicts unit variance); the Gaussian NLL with
its ``0.5 log(2 pi)``; the optimizer, learning rate, weight decay, batch size, epochs and
learning-rate schedule of the configuration (SGD with Nesterov momentum 0.9; fused kernels
for Adam, AdamW and SGD; cosine over ``max_epochs`` epochs, or plateau with factor 0.5 and
patience ``max(2, patience // 4)`` on the validation NLL); one permutation per epoch, batches
sliced from it; the validation NLL once per epoch; the best epoch's weights kept and restored;
training stops after ``patience`` epochs without improvement, on a non-finite loss (the trial
fails) or at the time budget's deadline (it ends with its best weights, as autodeuq's trials
do, so that the search stops at the budget instead of waiting for running trainings).

Input, from the harness: a JSON job file (``--job``) with ``data`` (an ``.npz`` with
``X_train``, ``y_train``, ``X_valid``, ``y_valid``, ``X_test``, already scaled), ``out_dir``,
``space``, ``initial_config`` (a flat configuration or null), ``time_budget`` (seconds or
null), ``max_evals`` (or null), ``workers``, ``seed``, ``ensemble_size`` and ``var_floor``.
Output, in ``out_dir``: ``predictions.npz`` (the test predictions of DeepHyper's ensemble,
``loc`` and ``scale``, and of each member, ``member_loc`` and ``member_scale``, with
``weights``) and ``result.json`` (times, counts, trial durations, the members), whose path is
also printed as the last line.

    benchmarks/.venv-deephyper/bin/python benchmarks/peers/deephyper_autodeuq.py --job JOB.json
"""

import argparse
import json
import logging
import math
import os
import re
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from torch import nn

#: Categorical choice that stands for None (ConfigSpace choices cannot be None).
NONE = "none"

_ACTIVATIONS = {
    "relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "gelu": nn.GELU,
    "silu": nn.SiLU, "elu": nn.ELU, "selu": nn.SELU, "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid, "mish": nn.Mish, "identity": nn.Identity,
}
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_VAR_BIAS = math.log(math.e - 1.0)  # softplus(_VAR_BIAS) == 1

# The data, loaded once in the main process before the evaluator forks its workers.
_DATA = {}


class Diverged(RuntimeError):
    """A training or validation epoch loss became NaN or infinite."""


# -- the network ---------------------------------------------------------------------------

class _Layer(nn.Module):
    def __init__(self, in_features, units, activation, dropout, sources):
        super().__init__()
        self.linear = nn.Linear(in_features, units)
        self.sources = tuple(j for j, _ in sources)
        self.projections = nn.ModuleList(nn.Linear(w, units, bias=False) for _, w in sources)
        self.activation = _ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, h, outputs):
        z = self.linear(h)
        for j, projection in zip(self.sources, self.projections, strict=True):
            z = z + projection(outputs[j])
        return self.dropout(self.activation(z))


class GaussianMLP(nn.Module):
    """MLP with skip connections and a Gaussian head; ``forward`` returns ``(mean, var)``."""

    def __init__(self, n_features, layers, var_floor=1e-6):
        super().__init__()
        self.var_floor = float(var_floor)
        widths = [int(n_features)]
        hidden = []
        for layer in layers:
            sources = [(j, widths[j]) for j in layer["skip"]]
            hidden.append(_Layer(widths[-1], layer["units"], layer["activation"],
                                 layer["dropout"], sources))
            widths.append(layer["units"])
        self.hidden = nn.ModuleList(hidden)
        self.keep_outputs = any(layer["skip"] for layer in layers)
        self.head = nn.Linear(widths[-1], 2)
        with torch.no_grad():
            self.head.bias[1] = _VAR_BIAS

    def forward(self, x):
        outputs = [x] if self.keep_outputs else None
        h = x
        for layer in self.hidden:
            h = layer(h, outputs)
            if outputs is not None:
                outputs.append(h)
        raw = self.head(h)
        return raw[:, 0], nn.functional.softplus(raw[:, 1]) + self.var_floor


def gaussian_nll(mean, var, target):
    return _HALF_LOG_2PI + 0.5 * (torch.log(var) + (target - mean) ** 2 / var).mean()


def _value(params, name, default=None):
    """A parameter as a plain value: None for DeepHyper's "none" choice or a NaN (inactive)."""
    value = params.get(name, default)
    if isinstance(value, np.generic):
        value = value.item()
    if value == NONE or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def network_layers(params):
    """The hidden layers of a flat configuration (autodeuq's naming: ``units_k``, ...)."""
    layers = []
    for k in range(1, int(params["num_layers"]) + 1):
        skip = sorted(k - 1 - int(name.rsplit("_", 1)[1]) for name in params
                      if name.startswith(f"skip_{k}_") and _value(params, name) == 1)
        layers.append({"units": int(params[f"units_{k}"]),
                       "activation": str(params[f"activation_{k}"]),
                       "dropout": float(params[f"dropout_{k}"]), "skip": skip})
    return layers


def make_model(params, n_features, var_floor):
    return GaussianMLP(n_features, network_layers(params), var_floor)


# -- training ------------------------------------------------------------------------------

def _optimizer(params, model):
    name = _value(params, "optimizer", "adam")
    kwargs = {"lr": float(params["learning_rate"]),
              "weight_decay": float(_value(params, "weight_decay", 0.0) or 0.0)}
    if name == "rmsprop":
        return torch.optim.RMSprop(model.parameters(), **kwargs)
    if name == "sgd":
        kwargs.update(momentum=0.9, nesterov=True)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[name]
    return cls(model.parameters(), fused=True, **kwargs)


def train(params, data, seed, var_floor=1e-6, deadline=None):
    """Train one network; returns ``(model, best_valid_nll, n_epochs, best_epoch)``."""
    init_seed, shuffle_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
    X, y = torch.as_tensor(data["X_train"]), torch.as_tensor(data["y_train"])
    Xv, yv = torch.as_tensor(data["X_valid"]), torch.as_tensor(data["y_valid"])
    torch.manual_seed(init_seed)
    model = make_model(params, X.shape[1], var_floor)
    optimizer = _optimizer(params, model)
    max_epochs = int(params["max_epochs"])
    patience = _value(params, "patience")
    schedule = _value(params, "lr_schedule")
    clip = _value(params, "gradient_clip")
    if schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epochs)
    elif schedule == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=0.5, patience=max(2, int(patience or 20) // 4))
    else:
        scheduler = None
    generator = torch.Generator().manual_seed(shuffle_seed)
    batch_size, n = int(params["batch_size"]), len(X)
    best, best_state, best_epoch, misses, epoch = math.inf, None, 0, 0, 0
    for epoch in range(1, max_epochs + 1):
        model.train()
        order = torch.randperm(n, generator=generator)
        Xp, yp = X[order], y[order]
        total = torch.zeros(())
        for i in range(0, n, batch_size):
            xb, yb = Xp[i:i + batch_size], yp[i:i + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = gaussian_nll(*model(xb), yb)
            loss.backward()
            if clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), float(clip))
            optimizer.step()
            total += loss.detach() * len(xb)
        model.eval()
        with torch.no_grad():
            valid_loss = float(gaussian_nll(*model(Xv), yv))
        train_loss = float(total) / n
        if not (math.isfinite(train_loss) and math.isfinite(valid_loss)):
            raise Diverged(f"epoch {epoch}: train NLL {train_loss}, valid NLL {valid_loss}")
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(valid_loss)
        elif scheduler is not None:
            scheduler.step()
        if valid_loss < best:
            best, best_epoch, misses = valid_loss, epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            misses += 1
            if patience is not None and misses >= int(patience):
                break
        if deadline is not None and time.time() > deadline:
            break
    model.load_state_dict(best_state)
    return model.eval(), best, epoch, best_epoch


def job_seed(seed, job_id):
    """The seed of a job: a child of the run's seed keyed by the job's number."""
    number = int(str(job_id).split(".")[-1])
    child = np.random.SeedSequence(seed, spawn_key=(number,))
    return int(child.generate_state(1)[0])


def run(job, model_dir=".", seed=0, var_floor=1e-6, deadline=None, data_path=None):
    """DeepHyper's run function: train, save the weights, return minus the validation NLL.

    A module-level function: the process pool pickles it by reference, and its forked workers
    hold this module, with the data already loaded.
    """
    torch.set_num_threads(1)
    start = time.time()
    metadata = {"start": start}
    if deadline is not None and start >= deadline:
        return {"objective": "F_timeout", "metadata": {**metadata, "end": time.time()}}
    try:
        data = _DATA or load_data(data_path)
        model, valid_nll, n_epochs, best_epoch = train(
            job.parameters, data, job_seed(seed, job.id), var_floor, deadline)
        torch.save(model.state_dict(), os.path.join(model_dir, f"model_{job.id}.pt"))
        metadata.update(n_epochs=n_epochs, best_epoch=best_epoch, end=time.time())
        return {"objective": -valid_nll, "metadata": metadata}
    except Diverged as exc:
        metadata.update(error=str(exc), end=time.time())
        return {"objective": "F_diverged", "metadata": metadata}
    except Exception:  # a bad candidate is a result, as in autodeuq
        metadata.update(error=traceback.format_exc(limit=5), end=time.time())
        return {"objective": "F_failed", "metadata": metadata}


# -- the problem ---------------------------------------------------------------------------

def _choice(value):
    return NONE if value is None else value


def make_problem(space, initial_config=None):
    """An ``HpProblem`` with the dimensions and conditions of ``space`` (``to_dict()`` form).

    A dimension with a single choice (autodeuq's constant ``gradient_clip``) is left out: the
    run function takes its value from ``constants``. Returns ``(problem, constants)``.
    """
    from ConfigSpace import GreaterThanCondition
    from deephyper.hpo import HpProblem

    initial = dict(initial_config or {})
    problem, constants, added = HpProblem(), {}, {}
    for name, dim in space["dimensions"].items():
        default = initial.get(name)
        if dim["type"] == "categorical":
            choices = [_choice(c) for c in dim["choices"]]
            if len(choices) == 1:
                constants[name] = dim["choices"][0]
                continue
            value = choices
            default = None if name not in initial else _choice(default)
        elif dim["type"] in ("int", "float"):
            cast = int if dim["type"] == "int" else float
            value = (cast(dim["low"]), cast(dim["high"]))
            if dim["log"]:
                value = (*value, "log-uniform")
            default = None if default is None else cast(default)
        else:
            raise ValueError(f"space dimension {name!r} has type {dim['type']!r}; this peer "
                             "knows 'int', 'float' and 'categorical'.")
        added[name] = problem.add_hyperparameter(value, name, default_value=default)
    conditions = []
    for name, rules in space.get("conditions", {}).items():
        if name not in added:
            continue
        for rule in rules:
            parent, operator, value = rule["parent"], rule["op"], rule["value"]
            if operator != ">=":
                raise ValueError(f"condition on {name!r} is {parent} {operator} {value}; this "
                                 "peer knows '>=' (a per-layer dimension).")
            if value > space["dimensions"][parent]["low"]:  # else always active
                conditions.append(GreaterThanCondition(added[name], added[parent], value - 1))
    if conditions:
        problem.add_conditions(conditions)
    return problem, constants


# -- the ensemble --------------------------------------------------------------------------

def _predictor_class():
    from deephyper.predictor.torch import TorchPredictor

    class NormalTorchPredictor(TorchPredictor):
        """A Gaussian network as DeepHyper's ensemble module wants it: numpy in, loc/scale out."""

        def pre_process_inputs(self, X):
            return torch.as_tensor(X, dtype=torch.float32)

        def predict(self, X):
            with torch.no_grad():
                return super().predict(X)

        def post_process_predictions(self, y):
            mean, var = y
            return {"loc": mean.numpy().astype(np.float64),
                    "scale": var.sqrt().numpy().astype(np.float64)}

    return NormalTorchPredictor


def build_ensemble(results, model_dir, data, constants, var_floor, k):
    """Greedy selection over every checkpointed model, then DeepHyper's ``EnsemblePredictor``.

    Returns ``(ensemble, job_ids, n_models)``: the selected models' job numbers in the order
    of ``ensemble.predictors``, and how many checkpointed models there were to choose from.
    """
    from deephyper.analysis.hpo import filter_failed_objectives, parameters_from_row
    from deephyper.ensemble import EnsemblePredictor
    from deephyper.ensemble.aggregator import MixedNormalAggregator
    from deephyper.ensemble.loss import NormalNegLogLikelihood
    from deephyper.ensemble.selector import GreedySelector

    predictor_class = _predictor_class()
    ok, _ = filter_failed_objectives(results)
    rows = {int(row["job_id"]): row for _, row in ok.iterrows()}
    predictors, job_ids, y_predictors = [], [], []
    for file_name in sorted(os.listdir(model_dir)):
        if not file_name.endswith(".pt"):
            continue
        job_id = int(file_name[len("model_"):-len(".pt")].split(".")[-1])
        if job_id not in rows:
            continue
        params = {**constants, **parameters_from_row(rows[job_id])}
        module = make_model(params, data["X_valid"].shape[1], var_floor)
        module.load_state_dict(torch.load(os.path.join(model_dir, file_name),
                                          weights_only=True))
        predictor = predictor_class(module.eval())
        predictors.append(predictor)
        job_ids.append(job_id)
        y_predictors.append(predictor.predict(data["X_valid"]))
    if not predictors:
        raise RuntimeError("no trial produced a model: nothing to ensemble.")
    if len(predictors) == 1:  # GreedySelector needs two candidates to compare
        indices, weights = [0], [1.0]
    else:
        selector = GreedySelector(loss_func=NormalNegLogLikelihood(),
                                  aggregator=MixedNormalAggregator(), k=k)
        indices, weights = selector.select(np.asarray(data["y_valid"], dtype=np.float64),
                                           y_predictors)
    ensemble = EnsemblePredictor(predictors=[predictors[i] for i in indices],
                                 aggregator=MixedNormalAggregator(), weights=weights)
    return ensemble, [job_ids[i] for i in indices], len(predictors)


# -- main ----------------------------------------------------------------------------------

class AskTimer(logging.Handler):
    """Adds up the "Asking took X sec." records of DeepHyper's search loop (its own timing of
    every ``search.ask``), to show how much of the wall time the optimizer takes."""

    _PATTERN = re.compile(r"Asking took ([0-9.eE+-]+) sec")

    def __init__(self):
        super().__init__(logging.INFO)
        self.seconds, self.count = 0.0, 0

    def emit(self, record):
        match = self._PATTERN.match(record.getMessage())
        if match:
            self.seconds += float(match[1])
            self.count += 1


def load_data(path):
    with np.load(path) as npz:
        return {key: npz[key].astype(np.float32) for key in
                ("X_train", "y_train", "X_valid", "y_valid", "X_test")}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, required=True, help="the harness's job file")
    args = parser.parse_args(argv)
    job = json.loads(args.job.read_text())

    # The process evaluator forks: a child of a parent that ran multi-threaded torch can
    # deadlock, so the parent uses one thread from the start (as each worker does).
    torch.set_num_threads(1)
    import deephyper
    from deephyper.evaluator import Evaluator
    from deephyper.hpo import CBO

    _DATA.update(load_data(job["data"]))
    out = Path(job["out_dir"])
    model_dir, log_dir = out / "models", out / "search"
    model_dir.mkdir(parents=True, exist_ok=False)
    log_dir.mkdir(parents=True, exist_ok=False)
    problem, constants = make_problem(job["space"], job.get("initial_config"))
    budget, max_evals = job.get("time_budget"), job.get("max_evals")
    var_floor = float(job.get("var_floor", 1e-6))
    ask_timer = AskTimer()
    search_logger = logging.getLogger("deephyper.hpo._search")
    search_logger.setLevel(logging.INFO)
    search_logger.propagate = False
    search_logger.addHandler(ask_timer)

    start, start_unix = time.perf_counter(), time.time()
    deadline = None if budget is None else start_unix + float(budget)
    evaluator = Evaluator.create(run, method="process", method_kwargs={
        "num_workers": int(job["workers"]),
        "run_function_kwargs": {"model_dir": str(model_dir), "seed": int(job["seed"]),
                                "var_floor": var_floor, "deadline": deadline,
                                "data_path": job["data"]}})
    search = CBO(problem, random_state=int(job["seed"]), log_dir=str(log_dir),
                 initial_points=[problem.default_configuration]
                 if job.get("initial_config") else None)
    results = search.search(evaluator,
                            max_evals=-1 if max_evals is None else int(max_evals),
                            timeout=None if budget is None else max(1, math.ceil(budget)),
                            max_evals_strict=max_evals is not None)
    search_time = time.perf_counter() - start
    evaluator.executor.shutdown(wait=True)
    ensemble, selected, n_models = build_ensemble(results, str(model_dir), _DATA, constants,
                                                  var_floor, int(job.get("ensemble_size", 5)))
    wall_time = time.perf_counter() - start

    prediction = ensemble.predict(_DATA["X_test"])
    members = [p.predict(_DATA["X_test"]) for p in ensemble.predictors]
    np.savez(out / "predictions.npz", loc=prediction["loc"], scale=prediction["scale"],
             member_loc=np.stack([m["loc"] for m in members]),
             member_scale=np.stack([m["scale"] for m in members]),
             weights=np.asarray(ensemble.weights, dtype=np.float64))
    # A job cancelled before it started has no start or end: it took no worker time.
    starts, ends = (results[key].to_numpy(dtype=float) if key in results else np.zeros(0)
                    for key in ("m:start", "m:end"))
    objective = results["objective"].astype(str)
    result = {
        "library": "deephyper", "version": deephyper.__version__,
        "torch": torch.__version__, "python": sys.version.split()[0],
        "search": "deephyper.hpo.CBO (defaults)", "evaluator": "process",
        "workers": int(job["workers"]), "wall_time": wall_time, "search_time": search_time,
        "ensemble_time": wall_time - search_time, "ask_time": ask_timer.seconds,
        "n_asks": ask_timer.count, "n_trials": len(results),
        "n_candidates": n_models,
        "n_failed": int(objective.str.startswith("F").sum()),
        "statuses": {str(k): int(v) for k, v in results["job_status"].value_counts().items()},
        "trial_durations": [float(e - s) for s, e in zip(starts, ends, strict=True)
                            if math.isfinite(s) and math.isfinite(e)],
        "members": [{"job_id": j, "weight": float(w)}
                    for j, w in zip(selected, ensemble.weights, strict=True)],
        "predictions": str(out / "predictions.npz"),
    }
    path = out / "result.json"
    path.write_text(json.dumps(result, indent=2))
    print(path)


if __name__ == "__main__":
    main()
