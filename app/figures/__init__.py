"""Pure figure builders: arrays (or per-step metric dicts) in, a plotly
``Figure`` out. No Streamlit and no file access here, so every figure is
unit-tested on hand-made inputs. One module per page: ``train`` (charts over
steps), and the modules of the other pages.
"""
