#!/bin/bash -l
# AutoDEUQ on ALCF Polaris: a Dask cluster of one worker per A100 GPU, and the fit on it.
#
#   cd examples/alcf && qsub -A YOUR_PROJECT polaris_job.sh
#
# The scheduler runs on the job's first node, one worker per GPU on every node (4 per node),
# all started with mpiexec; then fit_autodeuq.py waits for the workers, searches, and saves
# the model. Everything this job writes goes to runs/$RUN_NAME/ under the folder it was
# submitted from (the shared file system, which every node and the driver read): the
# scheduler file, the logs, the model, and the search's checkpoint, which the next job with the
# same RUN_NAME resumes from. See README.md for each step and the settings below.
#PBS -N autodeuq
#PBS -q debug
#PBS -l select=2:system=polaris
#PBS -l place=scatter
#PBS -l walltime=00:30:00
#PBS -l filesystems=home:eagle
#PBS -j oe

set -eo pipefail

# -- settings (override at submission: qsub -v TIME_BUDGET=1800,RUN_NAME=mine ...) ----------
RECIPE_DIR=${RECIPE_DIR:-$PBS_O_WORKDIR}     # the wrapper and the driver: qsub from their folder
VENV=${VENV:-$RECIPE_DIR/venv}               # a venv on top of the conda module, see README
RUN_NAME=${RUN_NAME:-autodeuq}
RUN_DIR=${RUN_DIR:-$PBS_O_WORKDIR/runs/$RUN_NAME}  # model, checkpoint, logs: shared file system
TIME_BUDGET=${TIME_BUDGET:-900}              # seconds of search; leave time for the refit
GPUS_PER_NODE=${GPUS_PER_NODE:-4}            # Polaris: 4 A100 per node
TRIALS_PER_GPU=${TRIALS_PER_GPU:-1}          # candidates training at once on each GPU
LOCAL_ROOT=${LOCAL_ROOT:-/local/scratch}     # node-local disk, for the workers' files
SCHEDULER_PORT=${SCHEDULER_PORT:-8786}
DASHBOARD_PORT=${DASHBOARD_PORT:-8787}
# Extra options of the driver, e.g. DRIVER_ARGS="--data /eagle/PROJ/data.csv --target y"
DRIVER_ARGS=${DRIVER_ARGS:-}

# -- environment ----------------------------------------------------------------------------
module use /soft/modulefiles
module load conda
conda activate base
source "$VENV/bin/activate"
export GPUS_PER_NODE TRIALS_PER_GPU

NNODES=$(wc -l < "$PBS_NODEFILE")
NWORKERS=$((NNODES * GPUS_PER_NODE))
JOB_DIR=$RUN_DIR/${PBS_JOBID%%.*}            # this job's scheduler file and logs
mkdir -p "$JOB_DIR"
SCHEDULER_FILE=$JOB_DIR/scheduler.json
FIRST_NODE=$(head -n 1 "$PBS_NODEFILE")
echo "$FIRST_NODE" > "$JOB_DIR/first_node"
echo "$(date) job $PBS_JOBID: $NNODES nodes, $NWORKERS GPU workers; scheduler and dashboard" \
    "(port $DASHBOARD_PORT) on ${FIRST_NODE%%.*}; logs in $JOB_DIR"

# Whatever happens, stop the cluster when this script ends (PBS would at the walltime).
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT

# -- 1. the scheduler: one rank on the first node --------------------------------------------
mpiexec -n 1 --ppn 1 --hostfile "$JOB_DIR/first_node" \
    dask scheduler --scheduler-file "$SCHEDULER_FILE" \
    --port "$SCHEDULER_PORT" --dashboard-address ":$DASHBOARD_PORT" \
    > "$JOB_DIR/scheduler.log" 2>&1 &

for _ in $(seq 120); do
    [ -s "$SCHEDULER_FILE" ] && break
    sleep 1
done
if [ ! -s "$SCHEDULER_FILE" ]; then
    echo "the scheduler did not write $SCHEDULER_FILE in 120 s: see $JOB_DIR/scheduler.log" >&2
    exit 1
fi

# -- 2. the workers: one rank per GPU on every node, 16 hardware threads each ----------------
mpiexec -n "$NWORKERS" --ppn "$GPUS_PER_NODE" --depth 16 --cpu-bind depth \
    "$RECIPE_DIR/dask_gpu_worker.sh" "$SCHEDULER_FILE" "$LOCAL_ROOT" \
    > "$JOB_DIR/workers.log" 2>&1 &

# -- 3. the driver: waits for all the workers, searches, saves -------------------------------
# shellcheck disable=SC2086  # DRIVER_ARGS is a list of options
python "$RECIPE_DIR/fit_autodeuq.py" \
    --scheduler-file "$SCHEDULER_FILE" \
    --n-workers "$NWORKERS" \
    --time-budget "$TIME_BUDGET" \
    --trials-per-device "$TRIALS_PER_GPU" \
    --checkpoint-dir "$RUN_DIR/checkpoint" \
    --out "$RUN_DIR/model.autodeuq" \
    $DRIVER_ARGS
echo "$(date) done: $RUN_DIR/model.autodeuq"
