"""Several processes train one run: ``torchrun`` + ``DistributedDataParallel``.

``torchrun --nproc-per-node N -m engine run ...`` (or ``python -m engine run --nproc N``, which starts
torchrun) starts N processes. Rank 0 is the run: it creates or opens the run directory, does every step
(forward passes over the whole set, the kNN graph, the propagation, the snapshot, the metrics line, the
checkpoint) and alone writes. The other ranks (followers) only help with the training epochs:

1. at the start rank 0 broadcasts the run's config, given labels and thread count (:func:`lead`); each
   follower loads the same dataset and builds the same networks (:func:`follow`);
2. for every teacher or student epoch rank 0 broadcasts one job: which network, the rows and targets (the
   labels and weights the propagation chose, so they reach every rank), the mode, the epoch; then rank 0's
   teacher, student and the trained network's optimiser state are broadcast, so every rank starts the epoch
   from rank 0's state (after a resume too); each rank wraps the trained network in
   ``DistributedDataParallel`` (gloo on CPUs, NCCL on GPUs) and trains its part of every batch
   (:class:`engine.method.training.Shard`, the order seeded by the run's seed and the epoch);
3. rank 0 broadcasts ``stop`` when the run is done and every rank leaves the group (:func:`leave`); on an
   error rank 0 exits and torchrun ends the others.

Augmentation and mixup draw from generators seeded by (seed, network, epoch, rank) afresh every epoch, so a
run resumed from rank 0's checkpoint repeats the uninterrupted run's numbers exactly.

Leaving the group must end gloo's worker threads while Python is still fully alive. A gloo worker thread
drops its last finished job (a barrier, which holds the jobs before it, such as the last DDP all-reduce
and its tensors) just after the waiting rank has moved on. Freeing a tensor that has a Python object takes
the GIL, and CPython ends a thread that asks for the GIL once the interpreter is finalizing with
``pthread_exit``, whose unwinding through a C++ destructor calls ``std::terminate``: "terminate called
without an active exception", SIGABRT. Seen in a core dump: the gloo thread in ``runLoop`` ->
``~AsyncBarrierWork`` -> ``~AsyncAllreduceWork`` -> ``TensorImpl::decref_pyobject`` -> ``take_gil`` ->
``pthread_exit``, the main thread in ``Py_FinalizeEx``. The gloo thread must be descheduled at that moment,
so it came on busy cores only (one launch in twenty of a 2-process DDP script at load 16; one in each full
test run). ``destroy_process_group`` joins those threads only if it frees the group, and it did not:
``torch.distributed.nn.functional`` binds ``group.WORLD`` as the default argument of ten functions when it
is imported, and ``torch._dynamo``, which DDP imports on first use, imports it; imported after the group
exists, those defaults hold the group for good. :func:`join` imports ``torch._dynamo`` first (the defaults
are then None), so :func:`leave` frees the group and joins its threads (a test checks that none is left).
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import sys
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from .run import Run

log = logging.getLogger(__name__)

#: The networks a job trains, and the code that seeds its order.
NETWORK_CODES = {"teacher": 1, "student": 2}


@dataclass(frozen=True)
class Group:
    """This process's place among the run's processes."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def leads(self) -> bool:
        return self.rank == 0


def launched_processes() -> int:
    """How many processes torchrun started for this run (1 when it was not started by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def join() -> Group | None:
    """Join the processes torchrun started (None for one process): gloo on CPUs, NCCL with one GPU each."""
    world = launched_processes()
    if world <= 1:
        return None
    import torch.distributed as dist

    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"process {local_rank} on this node has no GPU of its own ({torch.cuda.device_count()} "
                            "GPU(s)); start at most that many processes per node")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    # imported after the group exists, torch._dynamo (DDP imports it) would bind the group as a default
    # argument (torch.distributed.nn.functional), so leave() could not free it (see the module's docstring)
    importlib.import_module("torch._dynamo")

    if not dist.is_initialized():
        dist.init_process_group(backend)
    return Group(rank=rank, world=world, local_rank=local_rank, device=device)


def order_seed(seed: int, network: str, epoch: int) -> int:
    """The seed of an epoch's order of the samples: the same on every rank."""
    return int(np.random.SeedSequence([seed, NETWORK_CODES[network], epoch]).generate_state(1)[0])


def _rank_generators(seed: int, network: str, epoch: int, rank: int) -> tuple[np.random.Generator, torch.Generator]:
    """Each rank's own draws for augmentation and mixup in one epoch (seeded afresh: a resume repeats them)."""
    entropy = [seed, NETWORK_CODES[network], epoch, rank]
    torch_seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
    return np.random.default_rng(entropy), torch.Generator().manual_seed(torch_seed)


def _broadcast(value=None):
    """``value`` of rank 0, on every rank (any picklable object)."""
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ---------------------------------------------------------------- rank 0
def lead(run: Run, group: Group) -> None:
    """Tell the followers what the run is (rank 0, once it is created or opened)."""
    run.group = group
    _broadcast({"op": "start", "config": run.config.to_json(), "given": run.given, "threads": run.threads})


def stop(group: Group | None) -> None:
    """The run is done: the followers return (rank 0)."""
    if group is not None:
        _broadcast({"op": "stop"})
        leave()


def leave() -> None:
    """Leave the process group together and end its threads.

    A barrier first, so that no rank tears its connections down while another still receives the last
    message; the DDP wrappers of the last epoch (they hold the group) are collected while the group is still
    registered, so that freeing them frees nothing else; then ``destroy_process_group`` frees the group,
    which waits for gloo's worker threads to finish their jobs and joins them, with Python alive (see the
    module's docstring)."""
    import torch.distributed as dist

    dist.barrier()
    gc.collect()
    dist.destroy_process_group()


def lead_epoch(run: Run, network: str, targets: np.ndarray, mode: str, epoch: int,
               rows: np.ndarray | None = None, weights: np.ndarray | None = None,
               augment_kind: str = "none") -> dict:
    """One epoch of ``network`` trained by every rank (rank 0's side); returns the whole epoch's mean losses.

    ``rows``: the training samples the epoch uses (None: all); ``targets`` and ``weights`` are per row.
    """
    job = {"op": "epoch", "network": network, "targets": np.asarray(targets), "mode": mode, "epoch": int(epoch),
           "rows": None if rows is None else np.asarray(rows), "augment": augment_kind,
           "weights": None if weights is None else np.asarray(weights, dtype=np.float32)}
    _broadcast(job)
    return _epoch(run.nets, run.config, run.group, job, run.progress)


# ---------------------------------------------------------------- the other ranks
def follow(group: Group) -> int:
    """A follower's life: build the run's networks from rank 0's start message, train every epoch asked,
    return 0 at ``stop`` (1 when rank 0 is gone, 130 when interrupted: rank 0 says why, in one line)."""
    try:
        return _follow(group)
    except KeyboardInterrupt:
        return 130


def _follow(group: Group) -> int:
    from ..data import dataset_for_config
    from ..method.config import RunConfig
    from .networks import Networks
    import json

    start = _next_message()
    if start is None:
        return 1
    config = RunConfig.from_dict(json.loads(start["config"]))
    torch.set_num_threads(int(start["threads"]))
    nets = Networks(config, dataset_for_config(config), start["given"], group.device)
    while True:
        job = _next_message()
        if job is None:
            return 1
        if job["op"] == "stop":
            leave()
            return 0
        try:
            _epoch(nets, config, group, job)
        except Exception as exc:  # noqa: BLE001 - rank 0 says what failed; this process says what it saw
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            print(f"error: process {group.rank} stopped in an epoch of the {job['network']}: {first}",
                  file=sys.stderr)
            return 1


def _next_message() -> dict | None:
    """Rank 0's next message; None when rank 0 is gone (it failed and has said why in its own line, or it
    was killed), so this process ends quietly."""
    try:
        return _broadcast()
    except Exception:  # noqa: BLE001 - a closed connection to rank 0, whatever the backend calls it
        log.debug("rank 0 is gone", exc_info=True)
    import torch.distributed as dist

    try:
        dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - nothing left to tidy
        log.debug("leaving the process group failed", exc_info=True)
    return None


# ---------------------------------------------------------------- every rank
def _epoch(nets, config, group: Group, job: dict, progress=None) -> dict:
    """Sync rank 0's networks and optimiser, then train this rank's part of the epoch under DDP."""
    from torch.nn.parallel import DistributedDataParallel

    from ..method.training import Shard, student_epoch, train_epoch

    network = job["network"]
    model = getattr(nets, network)
    optimizer = nets.opt_teacher if network == "teacher" else nets.opt_student
    _sync_module(nets.teacher)
    _sync_module(nets.student)
    state = _broadcast(optimizer.state_dict() if group.leads else None)
    if not group.leads:
        optimizer.load_state_dict(state)
    rng, generator = _rank_generators(config.seed, network, job["epoch"], group.rank)
    shard = Shard(group.rank, group.world, order_seed(config.seed, network, job["epoch"]))
    x = nets.x if job["rows"] is None else nets.x[torch.as_tensor(job["rows"], device=nets.device)]
    targets = torch.as_tensor(job["targets"], device=nets.device)
    weights = None if job["weights"] is None else torch.as_tensor(job["weights"], device=nets.device)
    wrapped = DistributedDataParallel(model, device_ids=[group.device.index] if group.device.type == "cuda" else None)
    with warnings.catch_warnings():
        # a weight with a dimension of size 1 (a conv on 1-channel images) has two valid stride layouts; DDP
        # warns that its gradient's differs from its bucket's, which costs a copy and nothing else
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
        if network == "teacher":
            return train_epoch(wrapped, optimizer, x, targets, config.train, generator, job["augment"], progress,
                               shard=shard)
        return student_epoch(wrapped, nets.kd_teacher(job["rows"]), optimizer, x, targets, config.train, job["mode"], rng,
                             generator, weights, job["augment"], progress, shard=shard)


def _sync_module(module: torch.nn.Module) -> None:
    """Every rank's copy of ``module`` (parameters and buffers) becomes rank 0's."""
    import torch.distributed as dist

    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)
