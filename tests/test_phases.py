"""engine.steps.phases: the order, lengths and sentences of a run's phases."""

from __future__ import annotations

from dataclasses import replace

from engine.method.config import RunConfig, ScheduleConfig
from engine.steps import phases
from engine.steps.phases import Phase

SCHEDULE = ScheduleConfig(teacher_epochs=3, warmup_epochs=2, refine_epochs=4, mutual_epochs=5)  # student: 11


def config(**changes) -> RunConfig:
    return replace(RunConfig(schedule=SCHEDULE), **changes)


def test_lengths_follow_the_schedule_and_the_ablations():
    c = config()
    assert [phases.phase_length(c, p) for p in phases.phases_of(c)] == [3, 1, 2, 4, 5, 0]
    no_mutual = config(without=("mutual",))
    assert phases.phase_length(no_mutual, "refine") == 9 and phases.phase_length(no_mutual, "mutual") == 0
    assert phases.phase_length(config(without=("stage0",)), "propagate") == 0
    assert phases.phase_length(config(teacher_checkpoint="t.pt"), "teacher") == 1
    assert phases.phase_length(config(method="ce"), "student") == 11


def test_following_phase_skips_phases_without_steps():
    c = config(schedule=replace(SCHEDULE, warmup_epochs=0))
    assert phases.following_phase(c, Phase.PROPAGATE) == Phase.REFINE
    assert phases.following_phase(c, Phase.TEACHER) == Phase.PROPAGATE
    empty_end = config(without=("mutual",))
    assert phases.following_phase(empty_end, Phase.REFINE) == Phase.DONE
    assert phases.first_phase(config(method="ce")) == Phase.STUDENT
    assert phases.first_phase(config(schedule=replace(SCHEDULE, teacher_epochs=0))) == Phase.PROPAGATE


def test_total_steps_counts_what_is_left_of_the_current_phase_and_all_later():
    c = config()
    assert phases.total_steps(c, "teacher", 0, 0) == 3 + 1 + 2 + 4 + 5
    assert phases.total_steps(c, "refine", 1, 7) == 7 + 3 + 5
    assert phases.total_steps(c, "done", 0, 15) == 15


def test_the_mutual_stage_alternates_whose_graph_it_tries_first_the_students():
    c = config()
    texts = [phases.describe_next(c, "mutual", e) for e in range(3)]
    assert "student's graph" in texts[0] and "teacher's graph" in texts[1] and "student's graph" in texts[2]
    assert phases.describe_next(config(method="kd"), "student", 0).endswith("distilling from the teacher.")
    assert phases.describe_next(config(method="ce"), "student", 0).endswith("on the given labels.")


def test_phase_plan_shows_an_early_stopped_teacher_with_the_steps_it_took():
    c = config()
    metrics = [{"phase": "teacher"}] * 2 + [{"phase": "propagate"}, {"phase": "warmup"}]
    plan = phases.phase_plan(c, metrics, "warmup")
    assert plan == [{"phase": "teacher", "planned": 2, "done": 2}, {"phase": "propagate", "planned": 1, "done": 1},
                    {"phase": "warmup", "planned": 2, "done": 1}, {"phase": "refine", "planned": 4, "done": 0},
                    {"phase": "mutual", "planned": 5, "done": 0}]
    assert [p["planned"] for p in phases.phase_plan(c, metrics, "done")] == [2, 1, 1, 0, 0]
