"""Several processes train one run (engine.steps.distributed): torchrun, DDP on gloo, rank 0 alone writes.

The shard of each seeded batch is checked by hand; a 2-process DDP epoch against one process's epoch over
the same batches, after which leaving the group has ended gloo's threads in both processes; then whole 2-process runs of the CLI on digits: one metrics line and one snapshot per
step, the same result twice, a resume after the process group is killed that ends where an uninterrupted
run ends, and the clear refusals (another number of processes, bad --nproc).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.cli import main, parse_nproc
from engine.errors import UserError
from engine.rundir import RunStore
from engine.method.training import Shard, shard_batches

ROOT = Path(__file__).resolve().parents[1]
SCHEDULE = ["--dataset", "digits", "--seed", "3", "--threads", "1", "--teacher-epochs", "2", "--warmup-epochs", "1",
            "--refine-epochs", "2", "--mutual-epochs", "2"]
STEPS = 8  # teacher 2 + propagate + warmup + refine 2 + mutual 2
#: Two processes need two GPUs where CUDA is present (one each, NCCL); on CPUs they share the cores (gloo).
two_processes = pytest.mark.skipif(torch.cuda.is_available() and torch.cuda.device_count() < 2,
                                   reason="two processes need two GPUs on a CUDA machine")


def _env() -> dict:
    """A clean environment for the launched processes: nothing an earlier test left in this process's
    environment reaches them."""
    kept = {name: os.environ[name] for name in ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL") if name in os.environ}
    return dict(kept, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


# ---------------------------------------------------------------- the shard of each batch
def test_the_shards_of_two_processes_cut_each_seeded_batch_in_two():
    n, batch = 23, 7
    ranks = [list(shard_batches(n, batch, Shard(rank, 2, order_seed=11))) for rank in range(2)]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(11))
    # batches of 7, 7, 7 and 2: the last is smaller than 2 x 2 processes and is left out on both ranks
    assert [len(r) for r in ranks] == [3, 3]
    for b in range(3):
        (first, s0), (second, s1) = ranks[0][b], ranks[1][b]
        assert first.tolist() == order[7 * b:7 * b + 4].tolist() and second.tolist() == order[7 * b + 4:7 * b + 7].tolist()
        assert (s0, s1) == (4 * 2 / 7, 3 * 2 / 7)  # sum of scale x mean loss / 2 = the batch's mean loss
    one = list(shard_batches(n, batch, Shard(0, 1, order_seed=11)))
    assert [idx.tolist() for idx, _ in one] == [order[s:s + 7].tolist() for s in (0, 7, 14, 21)]
    assert {scale for _, scale in one} == {1.0}


def test_a_shard_names_a_valid_rank():
    with pytest.raises(ValueError, match="rank 2 of 2"):
        Shard(2, 2, 0)


WORKER = textwrap.dedent("""
    import os, sys, torch
    from engine.method.config import TrainConfig
    from engine.method.training import Shard, train_epoch
    from engine.steps.distributed import join, leave
    group = join()  # as the engine joins (None for one process)
    rank, world = (group.rank, group.world) if group else (0, 1)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 4)
    class Net(torch.nn.Module):
        def __init__(self): super().__init__(); self.lin = model
        def forward(self, x): return self.lin(x), x
    net = Net()
    init = model.weight.detach().clone()
    opt = torch.optim.SGD(net.parameters(), lr=0.3, momentum=0.9, nesterov=True)
    x = torch.randn(21, 3, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 4, (21,), generator=torch.Generator().manual_seed(2))
    cfg = TrainConfig(batch_size=7)
    wrapped = torch.nn.parallel.DistributedDataParallel(net) if group else net
    for epoch in range(2):
        losses = train_epoch(wrapped, opt, x, y, cfg, torch.Generator(), shard=Shard(rank, world, 5 + epoch))
    del wrapped  # as engine.steps.distributed's epochs end: a live DDP wrapper holds the group
    if group:
        leave()
    threads = []  # gloo's threads still running: none may be left to meet the interpreter's finalization
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/comm") as f:
            name = f.read().strip()
        threads += [name] if "gloo" in name else []
    torch.save({"weight": model.weight.detach(), "init": init, "loss": losses["loss_ce"], "threads": threads},
               f"{sys.argv[1]}.rank{rank}")
""")


@pytest.mark.slow
def test_a_two_process_epoch_takes_the_step_of_one_process_over_the_same_batches(tmp_path):
    """Shards of 4 and 3 samples: without the loss scale the average of the two gradients is not the batch's.
    After ``leave`` no gloo thread is left in either process: one that is left can be finishing a job when
    the interpreter finalizes, and abort the process (engine.steps.distributed's docstring)."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    results = {}
    for world in (1, 2):
        out = tmp_path / f"w{world}.pt"
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                               str(world), str(script), str(out)], cwd=ROOT, env=_env(), capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        results[world] = [torch.load(f"{out}.rank{rank}") for rank in range(world)]
    (one,), (two, other) = results[1], results[2]
    assert torch.allclose(one["weight"], two["weight"], atol=1e-6), (one["weight"] - two["weight"]).abs().max()
    assert torch.equal(two["weight"], other["weight"])  # DDP kept the two processes' copies equal
    assert (one["weight"] - one["init"]).abs().max() > 1e-2  # it trained
    assert two["loss"] == pytest.approx(one["loss"], abs=1e-6)  # the epoch's loss over both processes' samples
    assert two["threads"] == [] and other["threads"] == []


# ---------------------------------------------------------------- whole runs of the CLI
def _run(out: Path, *extra: str, nproc: int = 2, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engine", "run", *SCHEDULE, "--out", str(out),
                             "--nproc", str(nproc), *extra], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-2000:]
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _snapshot(run: Path, step: int) -> dict:
    return {k: np.asarray(v) for k, v in RunStore(run).snapshot(step).items()}


def _same_snapshot(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _without_seconds(metrics: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if "seconds" not in k} for m in metrics]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two uninterrupted 2-process runs of the same config, trained at the same time."""
    base = tmp_path_factory.mktemp("ddp")
    runs = [base / "a", base / "b"]
    procs = [_run(path) for path in runs]
    for proc in procs:
        _finish(proc)
    return runs


@pytest.mark.slow
@two_processes
def test_a_two_process_run_writes_one_metrics_line_and_one_snapshot_per_step(two_runs):
    run = two_runs[0]
    assert [m["step"] for m in _metrics(run)] == list(range(1, STEPS + 1))
    assert RunStore(run).steps() == list(range(1, STEPS + 1))  # one snapshot per step, whatever N
    record = json.loads((run / "runtime.json").read_text())
    assert record["processes"] == 2 and record["threads"] == 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == STEPS and summary["refined_label_precision"] > summary["given_label_precision"]


@pytest.mark.slow
@two_processes
def test_under_two_processes_the_student_sits_the_judges_hold_out_out(two_runs):
    """The calibrated rule's judge needs samples the student never fitted: the two processes together train the
    student on every sample but the teacher's hold-out in each of its epochs (1,437 - 144; the last batch of
    1,293 % 64 = 13 is kept, two processes need 4)."""
    holdout = RunStore(two_runs[0]).dataset_arrays()["holdout"]
    assert holdout.sum() == 144 and len(holdout) == 1437
    students = [m for m in _metrics(two_runs[0]) if m["phase"] in ("warmup", "refine", "mutual")]
    assert len(students) == 5 and [m["student_samples"] for m in students] == [1437 - 144] * 5


@pytest.mark.slow
@two_processes
def test_two_process_runs_of_one_config_give_the_same_result(two_runs):
    a, b = two_runs
    assert _without_seconds(_metrics(a)) == _without_seconds(_metrics(b))
    for step in range(1, STEPS + 1):
        _same_snapshot(_snapshot(a, step), _snapshot(b, step))


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _kill_with_ranks(proc: subprocess.Popen) -> None:
    """SIGKILL the launcher (its torchrun agent runs in it) and the ranks, which torchrun starts in sessions of
    their own, all at once."""
    groups = {proc.pid} | {os.getpgid(child) for child in _children(proc.pid)}
    for group in groups:
        os.killpg(group, signal.SIGKILL)


@pytest.mark.slow
@two_processes
def test_a_killed_two_process_run_resumes_with_two_and_ends_as_the_uninterrupted_run(two_runs, tmp_path):
    run = tmp_path / "killed"
    proc = _run(run, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if (run / "metrics.jsonl").exists() and len((run / "metrics.jsonl").read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    _kill_with_ranks(proc)
    proc.communicate()
    done = len(_metrics(run))
    assert 3 <= done < STEPS, f"the run was killed after {done} of {STEPS} steps"
    refused = subprocess.run([sys.executable, "-m", "engine", "resume", str(run), "--nproc", "1"], cwd=ROOT,
                             env=_env(), capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"error: run {str(run)!r} was trained by 2 process(es) and this resume has 1, which would change its "
        "numbers; resume it with --nproc 2 (python -m engine resume RUN starts that many)"]
    resumed = subprocess.run([sys.executable, "-m", "engine", "resume", str(run)], cwd=ROOT, env=_env(),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [m["step"] for m in _metrics(run)] == list(range(1, STEPS + 1))
    _same_snapshot(_snapshot(run, STEPS), _snapshot(two_runs[0], STEPS))
    assert _without_seconds(_metrics(run)) == _without_seconds(_metrics(two_runs[0]))


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_a_bad_nproc_is_one_line(value, tmp_path, capsys):
    assert main(["run", "--dataset", "moons", "--out", str(tmp_path / "r"), "--nproc", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --nproc {value} is not a number of processes; valid: a whole number, at least 1"]
    assert not (tmp_path / "r").exists()


def test_nproc_parses_a_count():
    assert parse_nproc(None) is None and parse_nproc("1") == 1 and parse_nproc(" 3 ") == 3
    with pytest.raises(UserError, match="--nproc 07"):
        parse_nproc("07")


@two_processes
def test_a_one_process_run_refuses_a_resume_with_two(tmp_path, capsys):
    from engine.method.config import RunConfig
    from engine.steps.run import Run

    Run.create(tmp_path / "one", RunConfig(dataset="moons"), threads=1).close()
    assert json.loads((tmp_path / "one" / "runtime.json").read_text())["processes"] == 1
    assert main(["resume", str(tmp_path / "one"), "--nproc", "2"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: run {str(tmp_path / 'one')!r} was trained by 1 process(es) and this resume has 2, which would "
        "change its numbers; resume it with --nproc 1 (python -m engine resume RUN starts that many)"]


@pytest.mark.slow
@two_processes
def test_the_apps_worker_steps_a_two_process_run_through_torchrun(two_runs, tmp_path):
    from app.worker import get_worker, run_processes, shutdown_all
    from engine.cli import build_parser, config_from_args
    from engine.rundir.store import RunStore
    from engine.steps.run import Run

    config = config_from_args(build_parser().parse_args(["run", *SCHEDULE, "--out", "unused"]))
    path = tmp_path / "app-run"
    Run.create(path, config, threads=1, processes=2).close()  # as Setup's create with Processes 2
    assert run_processes(path) == 2
    worker = get_worker(path)
    try:
        assert worker.submit("step")
        assert worker.wait(600)
        assert worker.error is None and worker._run is None  # never stepped in this process
        assert worker.submit("phase")  # the rest of the teacher's phase: one more step
        assert worker.wait(600)
        store = RunStore(path)
        assert [m["step"] for m in store.metrics()] == [1, 2] and store.status()["phase"] == "propagate"
        for step in (1, 2):  # the steps of the CLI's 2-process run, not of one process
            _same_snapshot(_snapshot(path, step), _snapshot(two_runs[0], step))
    finally:
        shutdown_all()


@pytest.mark.slow
@two_processes
def test_a_refusal_under_two_processes_is_one_line_and_leaves_the_run_as_it_was(two_runs):
    before = (two_runs[0] / "metrics.jsonl").read_text()
    proc = _run(two_runs[0])  # it holds a run already, and there is no --force
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 2
    assert stderr.strip().splitlines() == [
        f"error: output directory {str(two_runs[0])!r} already holds a run; choose another --out, resume it, or "
        "pass --force to replace it"]
    assert (two_runs[0] / "metrics.jsonl").read_text() == before
