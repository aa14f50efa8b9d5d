#!/bin/bash
# One Dask worker for one GPU. mpiexec starts one copy per GPU on every node:
#
#   mpiexec -n $((NNODES * 4)) --ppn 4 ./dask_gpu_worker.sh SCHEDULER_FILE [LOCAL_ROOT]
#
# Each copy sees only its own GPU: CUDA_VISIBLE_DEVICES is set from the rank's place on its
# node (PMI_LOCAL_RANK, which mpiexec sets on Polaris; PALS_LOCAL_RANKID is read when it is
# not there), taking the GPUs in reverse order as ALCF's set_affinity_gpu_polaris.sh does
# (Polaris's CPU-GPU topology). The worker runs TRIALS_PER_GPU tasks at a time (--nthreads,
# default 1) and offers one "GPU" resource, so AutoDEUQ trains that many candidates per GPU
# when the driver gets the same --trials-per-device; its scratch files go to node-local disk
# (LOCAL_ROOT, default /local/scratch), not to the shared file system.
#
# Environment: GPUS_PER_NODE (default 4, Polaris's A100s), TRIALS_PER_GPU (default 1),
# DASK_MEMORY_LIMIT (default 0.25: a quarter of the node's memory per worker).
set -euo pipefail

scheduler_file=${1:?"usage: $0 SCHEDULER_FILE [LOCAL_ROOT]"}
local_root=${2:-/local/scratch}
gpus_per_node=${GPUS_PER_NODE:-4}
local_rank=${PMI_LOCAL_RANK:-${PALS_LOCAL_RANKID:-}}
if [ -z "$local_rank" ]; then
    echo "$0: no local rank: start it with mpiexec (which sets PMI_LOCAL_RANK)," \
        "or set PMI_LOCAL_RANK to the worker's index on its node" >&2
    exit 2
fi

gpu=$((gpus_per_node - 1 - local_rank % gpus_per_node))
export CUDA_VISIBLE_DEVICES=$gpu

local_directory="$local_root/dask-${USER:-$(id -un)}-${PBS_JOBID:-interactive}/gpu$gpu"
mkdir -p "$local_directory"

exec dask worker \
    --scheduler-file "$scheduler_file" \
    --nthreads "${TRIALS_PER_GPU:-1}" \
    --resources "GPU=1" \
    --memory-limit "${DASK_MEMORY_LIMIT:-0.25}" \
    --local-directory "$local_directory" \
    --name "${HOSTNAME:-$(hostname)}-gpu$gpu" \
    --no-dashboard
