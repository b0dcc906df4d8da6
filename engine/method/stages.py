"""The names of a run's phases and the sets of them that rules share.

One copy for every layer: the method's rules (:mod:`engine.method.refinery`),
the snapshot format (:mod:`engine.rundir.snapshot`), the step machine
(:mod:`engine.steps.phases`, which orders them per method and says what each
step does), the readers and the app all import these names from here. They
live in the method layer because the lowest of those users is a rule.
"""

from __future__ import annotations

from enum import Enum


class Phase(str, Enum):
    TEACHER = "teacher"
    PROPAGATE = "propagate"
    WARMUP = "warmup"
    REFINE = "refine"
    MUTUAL = "mutual"
    STUDENT = "student"  # the baselines' (CE, KD) one plain student phase
    DONE = "done"


#: Phases whose step writes a snapshot (every one but ``done``), in the order AML-KD runs them.
WORKING_PHASES = ("teacher", "propagate", "warmup", "refine", "mutual", "student")
#: Phases whose step runs a label propagation.
LP_PHASES = ("propagate", "refine", "mutual")
#: Stages 1 and 2: small-loss selection, AWE and a propagation seeded by the working labels.
REFINE_PHASES = ("refine", "mutual")
#: Phases whose step trains the student (one student epoch each).
STUDENT_PHASES = ("warmup", "refine", "mutual", "student")
#: Phases whose snapshot features are the teacher's (the student has not trained yet).
TEACHER_PHASES = ("teacher", "propagate")
#: Phases after the teacher's: the review decisions clamp their labels.
CLAMPED_PHASES = ("propagate", "warmup", "refine", "mutual", "student")
