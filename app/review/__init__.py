"""The Review page's parts: what the page shows, one module per section.

``context``  the open run's facts for one redraw (a typed :class:`ReviewContext`), cached reads
``queue``    the sidebar controls and the queue (order, size, filters) and its table
``card``     the sample on screen: image or points, labels, votes of every reviewer, history, neighbours
``actions``  decision buttons and keys, bound to the card they were shown for; undo; navigation
``bulk``     bulk accept with a thumbnail preview (one action, one undo)
``agreement`` per-reviewer numbers and blind-mode agreement
``ripple``   re-propagation with the reviewers' consensus clamped
``exports``  downloads and the import of decisions

Pure helpers (no Streamlit call) sit beside the drawing code and are unit-tested in
``tests/test_app_review.py``.
"""
