#!/usr/bin/env bash
# An sbatch example for data-parallel training: one task per GPU, srun starts them all, and each
# rank reads SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID itself (docs/distributed.md).
#   sbatch scripts/launch_slurm.sh configs/my_run.json [extra train arguments...]
# Before training, every rank lays out each attention phase on its GPU (`train --dry-run` does only
# that and the other checks), so a run that does not fit stops in its first minute.
# Adjust the #SBATCH lines to the cluster (partition, account, time). Resume after a time limit by
# submitting again with --resume; --stop-at or a SIGTERM before the limit writes a checkpoint.
#SBATCH --job-name=lighthouse
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12
#SBATCH --time=24:00:00
#SBATCH --signal=TERM@300
#SBATCH --output=%x-%j.out
set -euo pipefail

config=${1:?usage: sbatch scripts/launch_slurm.sh CONFIG [train args...]}
shift
binary=${LIGHTHOUSE_BINARY:-build/lighthouse}

# Rank 0 runs on the first node of the allocation; its address is exported so that no rank has to
# guess it from the node list. The port is derived from the job id (the default too), so two jobs
# sharing a node do not collide.
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))
export MASTER_ADDR MASTER_PORT
# Never let NCCL use NVLink multicast on shared machines, and keep NCCL's own diagnostics on.
export NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}

# A quick rendezvous check first: it fails in seconds if the network or the variables are wrong,
# instead of after the data loading of a long run.
srun --kill-on-bad-exit=1 "$binary" dist-check --timeout 120
# --kill-on-bad-exit stops every rank when one fails, like `lighthouse launch` does.
srun --kill-on-bad-exit=1 "$binary" train --config "$config" "$@"
