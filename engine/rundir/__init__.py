"""The run directory and its formats: the contract between the engine and the app.

``store`` (``RunStore``: every file name of a run directory, atomic writes,
the lock), ``fields`` (the field lists of ``summary.json`` and
``metrics.jsonl``), ``snapshot`` (the snapshot format), ``review`` (the SQLite review log and the audit log),
``health`` (the warnings a run's numbers call for), ``users`` (accounts of a shared app: hashed passwords
and roles).

No module here imports torch or faiss at import time: the app reads runs
cheaply. This face is what the app uses.
"""

from .health import run_warnings
from .review import (AuditStore, Consensus, Decision, ReviewStore, agreement, consensus_of, current_decisions, label_history,
                     reviewer_agreement, run_class_names)
from .snapshot import disk_per_step, step_seeds
from .store import RunStore, atomic_write_bytes, list_runs, uploads_dir
from .users import accounts_enabled, allowed, read_users, verify_password

__all__ = ["AuditStore", "Consensus", "Decision", "ReviewStore", "RunStore", "agreement", "atomic_write_bytes", "consensus_of",
           "current_decisions", "disk_per_step", "label_history", "list_runs", "reviewer_agreement", "run_class_names",
           "run_warnings", "step_seeds", "uploads_dir", "accounts_enabled", "allowed", "read_users",
           "verify_password"]
