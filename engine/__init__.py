"""AML-KD engine: knowledge distillation with noisy labels by ambiguity-guided
mutual label refinery (Jiang et al., IEEE TNNLS 2023), one step at a time.

No Streamlit or plotly import anywhere in this package; the app reads runs
through :mod:`engine.store`.
"""

__version__ = "0.1.0"
