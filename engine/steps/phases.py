"""The phases of a run: their order per method, their lengths, and what the
next step of each does, in one sentence a student can follow.

=========  ==============================================================
phase      one step is
=========  ==============================================================
teacher    one teacher epoch on the given labels (early-stopped on a held-out
           part of them), or loading a teacher checkpoint
propagate  stage 0: teacher-guided label propagation, once
warmup     one student epoch: CE + mixup CE + KD
refine     stage 1: small-loss selection, AWE, teacher-graph LP, student epoch
mutual     stage 2: LP on the student / teacher graph alternately, epoch
student    (baselines ``ce`` and ``kd``) one plain student epoch
done       evaluation and summary
=========  ==============================================================

The step machine (:mod:`engine.steps.run`), the checkpoint, the CLI and the app all
read this table; nothing else knows a phase's length.
"""

from __future__ import annotations

from ..method.config import RunConfig
from ..method.stages import LP_PHASES, STUDENT_PHASES, TEACHER_PHASES, Phase  # noqa: F401 - re-exported


#: Phases of each method, in order.
PHASES = {
    "aml-kd": (Phase.TEACHER, Phase.PROPAGATE, Phase.WARMUP, Phase.REFINE, Phase.MUTUAL, Phase.DONE),
    "kd": (Phase.TEACHER, Phase.STUDENT, Phase.DONE),
    "ce": (Phase.STUDENT, Phase.DONE),
}
# The names and the sets of phases (LP_PHASES, ...) are engine.method.stages'.

NEXT_STEP_TEXT = {
    Phase.TEACHER: "Train the teacher for one epoch on the given (noisy) labels.",
    Phase.PROPAGATE: "Spread the teacher's predictions over its kNN graph and relabel every sample (stage 0).",
    Phase.WARMUP: "Warm up the student for one epoch on the propagated labels, learning from the teacher too.",
    Phase.REFINE: "Pick the small-loss samples, weigh every label by its ambiguity, propagate on the teacher's "
                  "graph, and train the student one epoch on the refined labels.",
    Phase.MUTUAL: "Refine labels on the {graph}'s graph this time, then train the student one epoch.",
    Phase.STUDENT: "Train the student for one epoch on the given labels{kd}.",
    Phase.DONE: "The run is finished: nothing left to do.",
}


def phases_of(config: RunConfig) -> tuple[Phase, ...]:
    """The phases of ``config.method``, in order, ``done`` last."""
    return PHASES[config.method]


def phase_length(config: RunConfig, phase: Phase | str) -> int:
    """Steps the schedule gives ``phase`` (the teacher's is an upper bound: it may stop early)."""
    s = config.schedule
    no_mutual = "mutual" in config.without  # ablation: refine takes the mutual stage's epochs
    return {Phase.TEACHER: 1 if config.teacher_checkpoint else s.teacher_epochs,
            Phase.PROPAGATE: 0 if "stage0" in config.without else 1, Phase.WARMUP: s.warmup_epochs,
            Phase.REFINE: s.refine_epochs + (s.mutual_epochs if no_mutual else 0),
            Phase.MUTUAL: 0 if no_mutual else s.mutual_epochs, Phase.STUDENT: s.student_epochs,
            Phase.DONE: 0}[Phase(phase)]


def first_phase(config: RunConfig) -> Phase:
    """Where a new run starts: the method's first phase that has steps."""
    return following_phase(config, None)


def following_phase(config: RunConfig, phase: Phase | None) -> Phase:
    """The phase after ``phase`` (``None``: before the first) that has at least one step, else ``done``."""
    order = phases_of(config)
    i = 0 if phase is None else order.index(Phase(phase)) + 1
    while order[i] != Phase.DONE and phase_length(config, order[i]) == 0:
        i += 1
    return order[i]


def describe_next(config: RunConfig, phase: Phase | str, phase_epoch: int) -> str:
    """One sentence: what the next step (``phase_epoch`` steps into ``phase``) will do."""
    phase = Phase(phase)
    if phase == Phase.TEACHER and config.teacher_checkpoint:
        return "Load the teacher from its checkpoint."
    text = NEXT_STEP_TEXT[phase]
    if phase == Phase.MUTUAL:
        text = text.format(graph=mutual_graph_turn(phase_epoch))
    if phase == Phase.STUDENT:
        text = text.format(kd=", distilling from the teacher" if config.method == "kd" else "")
    return text


def mutual_graph_turn(phase_epoch: int) -> str:
    """Whose graph stage 2 tries at its ``phase_epoch``-th step: the student's on even steps."""
    return "student" if phase_epoch % 2 == 0 else "teacher"


def total_steps(config: RunConfig, phase: Phase | str, phase_epoch: int, steps_done: int) -> int:
    """Steps done plus steps left (the teacher's count is an upper bound until
    early stopping ends its phase)."""
    order = phases_of(config)
    current = order.index(Phase(phase))
    left = phase_length(config, order[current]) - phase_epoch
    left += sum(phase_length(config, p) for p in order[current + 1:])
    return steps_done + max(left, 0)


def phase_plan(config: RunConfig, metrics: list[dict], current_phase: str | None) -> list[dict]:
    """Every phase of the run's method with its planned and its done steps.

    Parameters
    ----------
    config : RunConfig
    metrics : list of dict
        The run's per-step metrics (each has ``phase``).
    current_phase : str or None
        The phase the run is in now (``status["phase"]``); phases before it
        have ended.

    Returns
    -------
    list of dict
        ``{"phase", "planned", "done"}`` in order, the ``done`` phase left out.
        ``planned`` is the schedule's length, or the steps done when a phase
        ended early (the teacher's early stop).
    """
    order = [p.value for p in phases_of(config) if p != Phase.DONE]
    done_counts = {name: 0 for name in order}
    for m in metrics:
        if m.get("phase") in done_counts:
            done_counts[m["phase"]] += 1
    if current_phase == Phase.DONE.value:
        ended = set(order)
    elif current_phase in order:
        ended = set(order[: order.index(current_phase)])
    else:
        ended = set()
    plan = []
    for name in order:
        done = done_counts[name]
        planned = done if name in ended else max(phase_length(config, name), done)
        plan.append({"phase": name, "planned": planned, "done": done})
    return plan
