"""Soak test: a long search on a real Dask cluster whose workers keep getting killed.

``NASRegressor(max_evals=--trials)`` runs short candidates (one hidden layer of 4-16 units,
``--max-epochs`` epochs on ``--rows`` rows) with a ``checkpoint_dir``, on a cluster of
``--workers`` single-threaded worker processes, each watched by a Dask nanny, as the embedded
cluster is. Every ``--kill-every`` seconds a thread SIGKILLs one running worker process (a
busy one when there is one, in turn); its nanny starts it again. Each trial the kill interrupts is
retried once (or sent again without spending an attempt if it was only queued there); a trial
killed on both attempts is recorded as ``lost``.

At the end it reports trials finished (by status), retried (``attempts > 1``) and lost, the
kills, and the wall time, and checks that no finished trial went missing: every trial id
appears exactly once in ``search_results_`` and once in the journal, the two agree on each
trial's status, each successful trial's weights are on disk, and there are ``--trials`` of
them. It exits with status 1 if not.

    python benchmarks/soak.py                      # 300 candidates, a kill every 30 s
    python benchmarks/soak.py --trials 40 --kill-every 5 --json soak.json
    python benchmarks/soak.py --scheduler tcp://127.0.0.1:8786   # an external cluster

With ``--scheduler``, the workers must run on this machine (they are killed by process id).
Dask's worker processes import this script again (as ``__mp_main__``), so it does its work
only under ``if __name__ == "__main__"``.
"""

import argparse
import collections
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger("soak")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300, help="candidates to train")
    parser.add_argument("--kill-every", type=float, default=30.0,
                        help="seconds between two worker kills")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--max-epochs", type=int, default=10, help="epochs per candidate")
    parser.add_argument("--patience", type=int, default=5,
                        help="early-stopping patience in epochs (0: none, every epoch runs)")
    parser.add_argument("--rows", type=int, default=200, help="rows of training data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scheduler", default=None,
                        help="address of an external scheduler (default: a local cluster)")
    parser.add_argument("--checkpoint-dir", type=Path, default=None,
                        help="journal directory (default: a temporary one)")
    parser.add_argument("--json", type=Path, default=None, help="write the report there")
    return parser.parse_args(argv)


def make_data(rows, seed):
    """y = sin(x0) + x1 with noise growing with |x2|."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(rows, 3))
    y = np.sin(X[:, 0]) + X[:, 1] + (0.1 + 0.3 * np.abs(X[:, 2])) * rng.normal(size=rows)
    return X, y


class Killer(threading.Thread):
    """SIGKILLs one worker process every ``every`` seconds until stopped."""

    def __init__(self, client, every):
        super().__init__(daemon=True)
        self.client, self.every = client, every
        self.kills = []  # (seconds since start, worker address)
        self.stopped = threading.Event()
        self.start_time = time.monotonic()
        self._turn = 0

    def run(self):
        while not self.stopped.wait(self.every):
            try:
                self._kill_one()
            except Exception as exc:  # a worker dying meanwhile: try again next time
                logger.warning("no kill this time: %s: %s", type(exc).__name__, exc)

    def _kill_one(self):
        # Only workers that are up (not one its nanny is still starting), busy ones first.
        from autodeuq.evaluation._dask import scheduler_workers

        info = scheduler_workers(self.client)
        workers = sorted(w for w, about in info.items() if about.get("status") == "running")
        busy = sorted(w for w, keys in self.client.processing().items() if keys)
        candidates = [w for w in busy if w in workers] or workers
        if not candidates:
            return
        address = candidates[self._turn % len(candidates)]
        self._turn += 1
        pid = self.client.run(os.getpid, workers=[address])[address]
        os.kill(pid, signal.SIGKILL)
        self.kills.append((round(time.monotonic() - self.start_time, 1), address))
        logger.info("killed worker %s (pid %d)", address, pid)

    def stop(self):
        self.stopped.set()
        self.join()


def check(table, directory, trials):
    """Problems with the bookkeeping: a list of strings, empty when every trial is accounted."""
    problems = []
    # The search's own subdirectory of checkpoint_dir (the newest, should it hold others).
    directory = max(directory.glob("search-*"), key=lambda path: path.stat().st_mtime)
    lines = (directory / "journal.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    journal_ids = [r["trial_id"] for r in records]
    table_ids = list(table["job_id"])
    for name, ids in (("search_results_", table_ids), ("the journal", journal_ids)):
        duplicated = sorted(i for i, n in collections.Counter(ids).items() if n > 1)
        if duplicated:
            problems.append(f"trial ids {duplicated} appear more than once in {name}")
        if len(set(ids)) != trials:
            problems.append(f"{name} holds {len(set(ids))} trials, not {trials}")
    if set(table_ids) != set(journal_ids):
        problems.append(f"ids only in search_results_: {sorted(set(table_ids) - set(journal_ids))}"
                        f"; only in the journal: {sorted(set(journal_ids) - set(table_ids))}")
    statuses = dict(zip(table["job_id"], table["status"], strict=True))
    for record in records:
        if statuses.get(record["trial_id"], record["status"]) != record["status"]:
            problems.append(f"trial {record['trial_id']}: status {record['status']} in the "
                            f"journal, {statuses[record['trial_id']]} in search_results_")
        weights = directory / "weights" / f"trial-{record['trial_id']}.npz"
        if record["status"] == "success" and not weights.exists():
            problems.append(f"trial {record['trial_id']} succeeded but {weights} is missing")
    return problems


def soak(args, directory):
    import dask
    import distributed

    from autodeuq import NASRegressor
    from autodeuq.space import Float, Int

    cluster = None
    if args.scheduler is None:
        # As the embedded cluster: a lost worker fails its task at once, the search retries it.
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            cluster = distributed.LocalCluster(
                n_workers=args.workers, threads_per_worker=1, processes=True,
                host="127.0.0.1", dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR)
    client = distributed.Client(cluster if cluster is not None else args.scheduler,
                                set_as_default=False)
    try:
        client.wait_for_workers(args.workers, timeout=120)
        space = {"num_layers": 1, "units_1": Int(4, 16),
                 "learning_rate": Float(1e-3, 1e-1, log=True), "max_epochs": args.max_epochs,
                 "patience": args.patience or None}
        X, y = make_data(args.rows, args.seed)
        est = NASRegressor(search_space=space, algorithm="random", max_evals=args.trials,
                           scheduler=client, checkpoint_dir=directory, refit=False,
                           random_state=args.seed)
        killer = Killer(client, args.kill_every)
        start = time.monotonic()
        killer.start()
        try:
            est.fit(X, y)
        finally:
            killer.stop()
        wall = time.monotonic() - start
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    table = est.search_results_
    counts = table["status"].value_counts()
    return {
        "trials": args.trials,
        "finished": len(table),
        "by_status": {str(k): int(v) for k, v in counts.items()},
        "retried": int((table["attempts"] > 1).sum()),
        "lost": int(counts.get("lost", 0)),
        "kills": len(killer.kills),
        "kill_times": [t for t, _ in killer.kills],
        "wall_time_s": round(wall, 1),
        "trials_per_minute": round(60 * len(table) / wall, 1),
        "workers": args.workers,
        "kill_every_s": args.kill_every,
        "problems": check(table, directory, args.trials),
    }


def report(result):
    print(f"soak: {result['trials']} candidates, {result['workers']} workers, a worker killed "
          f"every {result['kill_every_s']:g} s")
    print(f"  finished  {result['finished']}  {result['by_status']}")
    print(f"  retried   {result['retried']}")
    print(f"  lost      {result['lost']}")
    print(f"  kills     {result['kills']}  at {result['kill_times']} s")
    print(f"  wall time {result['wall_time_s']} s  ({result['trials_per_minute']} trials/min)")
    if result["problems"]:
        print("  NOT ACCOUNTED FOR:")
        for problem in result["problems"]:
            print(f"    {problem}")
    else:
        print("  every trial accounted for, once, in search_results_ and in the journal")


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    logger.setLevel(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="autodeuq-soak-") as scratch:
        directory = args.checkpoint_dir or Path(scratch) / "journal"
        result = soak(args, directory)
    report(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(1 if main()["problems"] else 0)
