"""Readers of finished or live runs, for the app and the CLI.

``explain`` (losses, neighbourhoods, replays, why-text, what-if), ``triage``
(review queue, impact, ripple), ``embed`` (UMAP, aligned across steps),
``compare`` (runs on the same data side by side), ``audit`` (a run's random audit: counted rate and
precisions), ``export`` (samples,
decisions, clean labels, weights), ``exportdir`` (an export folder replaced
whole or not at all), ``report`` (Markdown report with charts).

Each module is a public face of its own: the app imports them by name.
"""
