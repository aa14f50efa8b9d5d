"""Seconds to fit a deep ensemble: members trained in one batch against one after another.

Both sides are ``DeepEnsembleRegressor.fit`` on the same data with the same members (two
hidden layers of ``--units`` units, Adam, batch 32), differing only in ``batched=True`` or
``batched=False``. Early stopping is off, so every member runs ``--epochs`` epochs on both
sides and they do the same work (each still holds out its own tenth for best-epoch weights).
Each time is the median over ``--repeats`` alternating runs; the ratio is sequential over
batched. Wall-clock seconds are printed with the process's CPU seconds: on a shared machine
the wall clock also counts time spent waiting for a core, and the CPU time does not (with
``--threads 1`` it is the work done). The mean validation NLL of the members is printed as a
check that both sides train equally well. ``--device cuda`` trains both sides on a GPU (the
fitted members come back to the CPU, so each time includes the device's work).

    python benchmarks/bench_batched.py [--members 5 10] [--rows 4000] [--epochs 10]
        [--device cpu]
"""

import argparse
import statistics
import time

import numpy as np
import torch

from autodeuq import DeepEnsembleRegressor, GaussianMLPRegressor


def fit_seconds(X, y, n_members, batched, args, seed=0):
    member = GaussianMLPRegressor(hidden_layer_sizes=(args.units, args.units),
                                  max_epochs=args.epochs, early_stopping=False,
                                  learning_rate=1e-3, batch_size=args.batch_size,
                                  device=args.device)
    est = DeepEnsembleRegressor(member, n_members=n_members, random_state=seed,
                                batched=batched)
    start, cpu = time.perf_counter(), time.process_time()
    est.fit(X, y)
    seconds = (time.perf_counter() - start, time.process_time() - cpu)
    return seconds, float(np.mean([m.validation_nll_ for m in est.estimators_]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[5, 10])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own choice)")
    parser.add_argument("--device", default="cpu",
                        help="where the members train: 'cpu' (default), 'cuda' or 'cuda:N'")
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.rows, args.features))
    y = np.sin(X[:, 0]) + X[:, 1] + (0.1 + 0.2 * np.abs(X[:, 2])) * rng.normal(size=args.rows)
    # Warm up: the first optimizer in a process imports torch._dynamo (seconds).
    small = argparse.Namespace(**{**vars(args), "epochs": 1})
    for batched in (True, False):
        fit_seconds(X[:64], y[:64], 2, batched, small)

    print(f"rows={args.rows} features={args.features} layers=2x{args.units} "
          f"batch={args.batch_size} epochs={args.epochs} repeats={args.repeats} "
          f"threads={torch.get_num_threads()} device={args.device} torch={torch.__version__}")
    print(f"{'K':>3} {'clock':>5} {'sequential s':>12} {'batched s':>10} {'ratio':>6} "
          f"{'val NLL seq':>11} {'val NLL bat':>11}")
    for n_members in args.members:
        times = {True: [], False: []}
        nlls = {}
        for repeat in range(args.repeats):
            for batched in (False, True):
                seconds, nlls[batched] = fit_seconds(X, y, n_members, batched, args, repeat)
                times[batched].append(seconds)
        for column, clock in enumerate(("wall", "cpu")):
            seq = statistics.median(t[column] for t in times[False])
            bat = statistics.median(t[column] for t in times[True])
            print(f"{n_members:>3} {clock:>5} {seq:>12.2f} {bat:>10.2f} {seq / bat:>6.2f} "
                  f"{nlls[False]:>11.4f} {nlls[True]:>11.4f}")


if __name__ == "__main__":
    main()
