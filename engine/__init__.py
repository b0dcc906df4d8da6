"""AML-KD engine: knowledge distillation with noisy labels by ambiguity-guided
mutual label refinery (Jiang et al., IEEE TNNLS 2023), one step at a time.

No Streamlit or plotly import anywhere in this package; the app reads runs
through :mod:`engine.store`. The layers, lowest first (a module imports only
from its own layer or below):

Method (pure functions and networks; no files, no run):
    config      frozen settings per concept; ``check_runnable`` (one set of rules for CLI, run, app)
    noise       synthetic noise models, noise-rate estimation
    graph       kNN graph (faiss), edge weights, normalisation
    propagate   label propagation, all classes at once (block CG)
    select      small-loss selection
    ambiguity   class centres, ambiguity-aware weights (AWE)
    refinery    the label rules: stage-0 labels, seeds, relabelling, review clamps
    losses      KD, mixup CE, relational similarity loss
    training    one epoch of a network, evaluation passes
    augment     crop-and-flip on a batch
    metrics     label precision, noise detection, AUROC
    models      teacher/student networks (logits + features)
    data        datasets: digits, 2-D toys, image folders, torchvision sets, label files
    device      CUDA when present, else CPU
    errors      UserError: the errors a user can cause
Step machine:
    phases      phase order, lengths, next-step sentences
    run         ``Run.step()``: one unit of work, one snapshot; resume
    checkpoint  reads and writes ``Run.state_dict()`` files
    cli         ``python -m engine run|resume|compare|what-if|export|import-decisions``
Run-directory contract (no torch, no faiss):
    store       every path of a run directory; atomic writes; status, metrics, summary
    snapshot    the snapshot format: field list, builder, validation, readers
    runfiles    checked readers of a run's files for export, compare and import (one line when damaged)
Readers for the app and the CLI:
    explain     losses, neighbourhoods, replays, why-text, what-if
    triage      review queue, impact, the ripple of reviewed labels
    review      the review log (SQLite)
    embed       2-D projections (UMAP), aligned across steps
    export      samples, decisions, clean labels, student weights
    exportdir   an export folder replaced whole or not at all, with its manifest
    features    features from elsewhere (--teacher-features) and their linear head
    health      the checks that say when a run went wrong
    report      Markdown report with charts
"""

__version__ = "0.1.0"
