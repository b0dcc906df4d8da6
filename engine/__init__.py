"""AML-KD engine: knowledge distillation with noisy labels by ambiguity-guided
mutual label refinery (Jiang et al., IEEE TNNLS 2023), one step at a time.

No Streamlit or plotly import anywhere in this package. The layers, lowest
first; a module imports only from its own layer or below (``tests/test_layers.py``
keeps it so, lazy imports included):

base        errors (UserError, the errors a user can cause), device (CUDA when present, else CPU)
method/     the method's pure rules and solvers, no files:
              config (every run setting, declared once; check_runnable), presets (assets/presets.json),
              stages (phase names and sets), noise (noise models, the known noise rate, rate estimate),
              confident (noise rate, posterior and precision estimated without the truth),
              transition (anchor-point, HOC and trusted-set rate estimators, compared in bench/),
              audit (the noise rate and precisions counted on a random sample people reviewed),
              graph (faiss kNN), search (exact or approximate kNN by size), propagate (block CG),
              select (small loss), ambiguity (AWE),
              refinery (the label rules), losses, training (one epoch), augment, metrics, stats (chance)
data/       datasets: digits, 2-D toys, image folders, zips, torchvision sets, label files, features from elsewhere,
              image files decoded on demand (stream)
models/     teacher/student networks (logits + features), torchvision backbones and weights (zoo), features
rundir/     the run directory and its formats (no torch, no faiss):
              store (every file name, its reader and writer, atomic writes), lock (one trainer per run),
              fields (summary.json and
              metrics.jsonl field lists), snapshot (the snapshot format), npzmap (an .npz's arrays mapped),
              digest (the samples' digests), review (the SQLite review log), health (warnings), users (accounts)
steps/      the step machine, sequencing only: phases (order, lengths, next-step text), run (Run.step()),
              handlers (what one step of each phase does), networks (models, optimisers, forward passes),
              state (progress in and out of a checkpoint), lifecycle (create, open, resume),
              checkpoint (state in, state out), timing (a teacher epoch's cost per teacher mode),
              distributed (several processes under torchrun: DDP epochs, rank 0 writes)
readers/    for the app and the CLI: explain, triage, embed, compare, audit (a run's random audit read), export,
              exportdir, report
cli         python -m engine run|resume|compare|what-if|export|import-decisions|features|fetch-weights

The app imports only the faces ``engine.errors``, ``engine.method`` (settings),
``engine.data``, ``engine.models``, ``engine.rundir``, ``engine.steps`` and the
reader modules ``engine.readers.*``.
"""

__version__ = "0.1.0"
