"""The ALCF Polaris recipe (examples/alcf/) on this machine.

What can be run here is run the way the job script runs it: a ``dask scheduler`` writing a
scheduler file, two workers started by the same wrapper script (``dask_gpu_worker.sh``, which
pins one GPU per worker and offers a ``GPU`` resource) with the local rank that ``mpiexec``
would set given by hand, and the driver fitting against them with a tiny budget. There is no
GPU here, so the driver trains on the workers' CPUs (``--cpu``).
"""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, load

RECIPE = ROOT / "examples" / "alcf"
BASH = shutil.which("bash")
pytestmark = pytest.mark.skipif(BASH is None, reason="the recipe's scripts are bash scripts")


def test_job_script_parses_and_qsub_sees_its_directives():
    script = RECIPE / "polaris_job.sh"
    subprocess.run([BASH, "-n", str(script)], check=True)
    lines = script.read_text().splitlines()
    # qsub reads #PBS lines only up to the first command.
    first_command = next(i for i, line in enumerate(lines)
                         if line.strip() and not line.lstrip().startswith("#"))
    directives = [line for line in lines[:first_command] if line.startswith("#PBS ")]
    assert any(re.match(r"#PBS -l select=\d+:system=polaris$", d) for d in directives)
    assert any(d.startswith("#PBS -l walltime=") for d in directives)
    assert not [line for line in lines[first_command:] if line.startswith("#PBS")]


@pytest.fixture(scope="module")
def recipe_cluster(tmp_path_factory):
    """A scheduler and two workers, as the job script starts them; yields the scheduler file,
    the workers' local root and their addresses."""
    distributed = pytest.importorskip("distributed")

    from autodeuq.evaluation._dask import scheduler_workers

    folder = tmp_path_factory.mktemp("alcf")
    scheduler_file, local_root = folder / "scheduler.json", folder / "local"
    bin_dir = str(Path(sys.executable).parent)  # where `dask` is, as the venv puts it on PATH
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    env.pop("PALS_LOCAL_RANKID", None)
    procs = [subprocess.Popen(
        [os.path.join(bin_dir, "dask"), "scheduler", "--scheduler-file", str(scheduler_file),
         "--host", "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        for rank in (0, 1):  # mpiexec --ppn 2 would set these
            procs.append(subprocess.Popen(
                [BASH, str(RECIPE / "dask_gpu_worker.sh"), str(scheduler_file), str(local_root)],
                env={**env, "PMI_LOCAL_RANK": str(rank)},
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        with distributed.Client(scheduler_file=str(scheduler_file), timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
            workers = scheduler_workers(client)
        yield scheduler_file, local_root, workers
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def test_wrapper_gives_each_worker_one_gpu(recipe_cluster):
    from distributed import Client

    scheduler_file, local_root, workers = recipe_cluster
    with Client(scheduler_file=str(scheduler_file)) as client:
        visible = client.run(lambda: os.environ["CUDA_VISIBLE_DEVICES"])
    # Local ranks 0 and 1 of a 4-GPU node take GPUs 3 and 2 (Polaris's reverse order).
    assert sorted(visible.values()) == ["2", "3"]
    for address, info in workers.items():
        gpu = visible[address]
        assert info["resources"] == {"GPU": 1}
        assert info["nthreads"] == 1
        assert info["name"].endswith(f"-gpu{gpu}")
        # On node-local disk, a folder per GPU.
        assert f"gpu{gpu}" in Path(info["local_directory"]).relative_to(local_root).parts


def test_wrapper_refuses_to_start_without_a_local_rank(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_LOCAL_RANK",
                                                            "PALS_LOCAL_RANKID")}
    done = subprocess.run([BASH, str(RECIPE / "dask_gpu_worker.sh"), str(tmp_path / "s.json")],
                          env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "PMI_LOCAL_RANK" in done.stderr


def test_driver_fits_on_the_recipe_cluster_and_saves(recipe_cluster, tmp_path, capsys):
    from distributed import Client

    import autodeuq
    from autodeuq.evaluation._dask import scheduler_workers

    scheduler_file, _, workers = recipe_cluster
    out = tmp_path / "model.autodeuq"
    summary = load("examples/alcf/fit_autodeuq.py").main(
        ["--scheduler-file", str(scheduler_file), "--n-workers", "2", "--wait-timeout", "60",
         "--cpu", "--max-evals", "4", "--time-budget", "600", "--max-epochs", "5",
         "--max-layers", "2", "--ensemble-size", "2", "--out", str(out)])
    model = summary["model"]
    assert len(model.search_results_) == 4
    assert set(model.search_results_["worker"]) <= set(workers)  # trained on those workers
    assert (tmp_path / "model_search_results.csv").is_file()
    X = np.linspace(-40, 40, 9)[:, None]
    np.testing.assert_array_equal(autodeuq.load(out).predict(X), model.predict(X))
    assert summary["epistemic_outside"] > 0
    assert "2 workers joined" in capsys.readouterr().out
    # The job's cluster is left running for whatever comes next.
    with Client(scheduler_file=str(scheduler_file)) as client:
        assert len(scheduler_workers(client)) == 2


# Stand-ins for what only Polaris has: mpiexec runs its command once per rank on this machine,
# setting the local rank as mpiexec does there; module and conda do nothing (the test's own
# environment is the venv the job activates).
FAKE_MPIEXEC = """#!/bin/bash
n=1; ppn=1
while [ $# -gt 0 ]; do
    case "$1" in
        -n|--np) n=$2; shift 2 ;;
        --ppn|-ppn) ppn=$2; shift 2 ;;
        --hostfile|--depth|-d|--cpu-bind) shift 2 ;;
        *) break ;;
    esac
done
pids=()
for ((rank = 0; rank < n; rank++)); do
    PMI_RANK=$rank PMI_LOCAL_RANK=$((rank % ppn)) "$@" &
    pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null' TERM INT
wait
"""


@pytest.mark.slow
def test_job_script_runs_end_to_end(tmp_path):
    """The whole job script, with a stand-in mpiexec: scheduler, two GPU workers, the driver
    (on the CPU), the saved model, and the cluster stopped at the end."""
    pytest.importorskip("distributed")
    import autodeuq

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("mpiexec", FAKE_MPIEXEC), ("module", "#!/bin/sh\n"),
                       ("conda", "#!/bin/sh\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "nodefile").write_text("localhost\n")
    env = {**os.environ,
           "PATH": os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent),
                                    os.environ.get("PATH", "")]),
           "PBS_O_WORKDIR": str(tmp_path), "PBS_NODEFILE": str(tmp_path / "nodefile"),
           "PBS_JOBID": "123.polaris-pbs-01", "RECIPE_DIR": str(RECIPE),
           "VENV": sys.prefix, "GPUS_PER_NODE": "2", "LOCAL_ROOT": str(tmp_path / "local"),
           "SCHEDULER_PORT": "0", "DASHBOARD_PORT": "0", "TIME_BUDGET": "600",
           "DRIVER_ARGS": "--cpu --max-evals 2 --max-epochs 20 --max-layers 1 "
                          "--ensemble-size 2"}
    job = subprocess.Popen([BASH, str(RECIPE / "polaris_job.sh")], env=env, cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    try:
        output, _ = job.communicate(timeout=600)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, 15)
            job.wait(timeout=30)
    assert job.returncode == 0, output
    run_dir = tmp_path / "runs" / "autodeuq"
    assert "2 workers joined" in output
    assert (run_dir / "123" / "scheduler.log").is_file()
    assert len(list((run_dir / "checkpoint").iterdir())) > 0
    model = autodeuq.load(run_dir / "model.autodeuq")
    assert model.predict(np.zeros((1, 1))).shape == (1,)
    # Each worker kept its files on the node-local root, one folder per GPU.
    assert sorted(p.name for p in (tmp_path / "local").glob("dask-*/gpu*")) == ["gpu0", "gpu1"]
    # The job stopped its cluster on the way out: a scheduler removes its file when it stops.
    assert not (run_dir / "123" / "scheduler.json").exists()
