"""engine.steps.checkpoint and engine.steps.state: a run's state out and back in, and the files that are not one."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from engine.errors import UserError
from engine.steps import checkpoint, state
from engine.steps.phases import Phase
from engine.steps.run import Run


def test_state_round_trips_through_a_checkpoint_file(fresh_tiny_run, tmp_path):
    run = Run.open(fresh_tiny_run)
    run.step()
    run.step()
    path = tmp_path / "c.pt"
    checkpoint.save(path, run.state_dict())
    data = checkpoint.read(path)
    assert data["version"] == checkpoint.VERSION and data["step"] == 2 and data["phase"] == "propagate"
    other = Run.open(fresh_tiny_run)  # from the directory's own checkpoint: the same place
    fresh_state = state.unpack(data, run.config.to_json(), len(run.given), other.nets.modules(), other.rng,
                               other.generator, "test")
    assert fresh_state.step == 2 and fresh_state.phase == Phase.PROPAGATE and fresh_state.teacher_epoch == 2
    np.testing.assert_array_equal(fresh_state.refined, run.state.refined)
    for a, b in zip(other.teacher.parameters(), run.teacher.parameters()):
        assert torch.equal(a, b)
    assert other.rng.integers(1 << 30) == run.rng.integers(1 << 30)  # the RNG continues where it was
    run.close()
    other.close()


def test_a_checkpoint_of_another_run_is_refused(fresh_tiny_run):
    run = Run.open(fresh_tiny_run)
    data = run.state_dict()
    with pytest.raises(UserError, match="x belongs to a different run"):
        state.unpack(data, run.config.to_json().replace('"seed": 0', '"seed": 5'), len(run.given),
                     run.nets.modules(), run.rng, run.generator, "x")
    with pytest.raises(UserError, match="x belongs to a different run"):
        state.unpack(data, run.config.to_json(), len(run.given) + 1, run.nets.modules(), run.rng, run.generator, "x")
    broken = {**data, "student": {"nope": torch.zeros(1)}}
    with pytest.raises(UserError, match="x does not match this run"):
        state.unpack(broken, run.config.to_json(), len(run.given), run.nets.modules(), run.rng, run.generator, "x")
    run.close()


class Payload:
    pass


@pytest.mark.parametrize("content, words", [(b"", "corrupt"), (b"garbage" * 10, "corrupt"),
                                            (pickle.dumps(Payload()), "corrupt"), (None, "does not exist")])
def test_files_that_are_not_checkpoints_are_one_line(tmp_path, content, words):
    path = tmp_path / "c.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(UserError, match=words):
        checkpoint.read(path)


def test_a_pickled_object_inside_is_refused_not_run(tmp_path):
    path = tmp_path / "c.pt"
    torch.save({"teacher": Payload()}, path)  # weights_only=True refuses arbitrary classes
    with pytest.raises(UserError, match="corrupt or not a checkpoint"):
        checkpoint.read(path)


def test_load_teacher_takes_a_bare_state_dict_or_a_runs_checkpoint(fresh_tiny_run, tmp_path):
    run = Run.open(fresh_tiny_run)
    bare = tmp_path / "bare.pt"
    torch.save({k: v * 0 + 0.5 for k, v in run.teacher.state_dict().items()}, bare)
    checkpoint.load_teacher(run.teacher, bare)
    assert all(torch.all(p == 0.5) for p in run.teacher.parameters())
    whole = tmp_path / "whole.pt"
    checkpoint.save(whole, {"teacher": {k: v * 0 + 0.25 for k, v in run.teacher.state_dict().items()}})
    checkpoint.load_teacher(run.teacher, whole)
    assert all(torch.all(p == 0.25) for p in run.teacher.parameters())
    torch.save({"layer.weight": torch.zeros(3, 3)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="does not fit the teacher architecture or class count"):
        checkpoint.load_teacher(run.teacher, tmp_path / "other.pt")
    run.close()
