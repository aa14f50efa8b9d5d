"""Seconds per epoch: the package's trainer against a plain torch loop, in one run.

Both train the same GaussianMLP (one hidden layer of 50 units, as in the Deep Ensembles paper)
with Adam on the same preloaded float32 tensors, on one thread, at batch sizes 32 and 128.
The plain loop is what a careful user writes by hand: one permutation per epoch, slices,
zero_grad / forward / loss / backward / step. Two plain baselines are timed: Adam as it comes
(``torch.optim.Adam(params, lr)``) and Adam with ``fused=True``, which the trainer uses; the
ratio that matters for the trainer's own overhead is the one against the fused loop.

Each measurement is the median over ``--repeats`` alternating runs of ``--epochs`` epochs.

    python benchmarks/bench_training.py [--rows 2000] [--epochs 20] [--repeats 5]
"""

import argparse
import statistics
import time

import numpy as np
import torch

from autodeuq.nn import GaussianMLP, gaussian_nll_loss, train_network

LAYERS = [{"units": 50, "activation": "relu", "dropout": 0.0, "skip": []}]


def plain_loop(X, y, batch_size, epochs, fused, seed=0):
    torch.manual_seed(seed)
    module = GaussianMLP(X.shape[1], LAYERS)
    kwargs = {"fused": True} if fused else {}
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3, **kwargs)
    generator = torch.Generator().manual_seed(seed)
    module.train()
    n = len(X)
    start = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(n, generator=generator)
        Xp, yp = X[perm], y[perm]
        for i in range(0, n, batch_size):
            optimizer.zero_grad(set_to_none=True)
            mean, var = module(Xp[i:i + batch_size])
            loss = gaussian_nll_loss(mean, var, yp[i:i + batch_size])
            loss.backward()
            optimizer.step()
    return (time.perf_counter() - start) / epochs


def trainer(X, y, batch_size, epochs, seed=0):
    config = {"layers": LAYERS, "optimizer": "adam", "learning_rate": 1e-3,
              "batch_size": batch_size, "max_epochs": epochs, "patience": None}
    result = train_network(config, X, y, seed=seed)
    return result.fit_time / epochs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    X = torch.as_tensor(rng.normal(size=(args.rows, args.features)), dtype=torch.float32)
    y = torch.as_tensor(X[:, 0].numpy() * 2 + rng.normal(size=args.rows), dtype=torch.float32)
    # Warm up: the first optimizer in a process imports torch._dynamo (seconds).
    trainer(X[:64], y[:64], 32, 1)
    plain_loop(X[:64], y[:64], 32, 1, fused=True)

    print(f"rows={args.rows} features={args.features} epochs={args.epochs} "
          f"repeats={args.repeats} threads={torch.get_num_threads()} torch={torch.__version__}")
    print(f"{'batch':>5} {'trainer ms':>10} {'plain ms':>9} {'fused ms':>9} "
          f"{'ratio/plain':>11} {'ratio/fused':>11}")
    for batch_size in args.batch_sizes:
        times = {"trainer": [], "plain": [], "fused": []}
        for _ in range(args.repeats):
            times["trainer"].append(trainer(X, y, batch_size, args.epochs))
            times["plain"].append(plain_loop(X, y, batch_size, args.epochs, fused=False))
            times["fused"].append(plain_loop(X, y, batch_size, args.epochs, fused=True))
        med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        print(f"{batch_size:>5} {med['trainer']:>10.2f} {med['plain']:>9.2f} {med['fused']:>9.2f} "
              f"{med['trainer'] / med['plain']:>11.2f} {med['trainer'] / med['fused']:>11.2f}")


if __name__ == "__main__":
    main()
