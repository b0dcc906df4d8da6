"""A run report: Markdown with the key charts as PNG (matplotlib, Agg backend).

``write_report(store, out_dir)`` writes ``report.md`` and, where the run has
the data for them:

- ``labels.png``: given vs refined label precision, noise detection
  precision and recall per step (needs the truth);
- ``accuracy.png``: teacher and student test accuracy per step;
- ``weights.png``: AWE weights of clean vs noisy given labels at the last
  step with weights (needs the truth);
- ``decisions.png``: review decisions by kind.

With an audit log (the Review page's audit mode), an "Audit" section gives the counted noise rate, the given
and the final step's refined labels' precision and the change between them, each with its 90% interval
(:mod:`engine.readers.audit`).
"""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path

import numpy as np

from . import exportdir
from ..errors import UserError, reading
from ..rundir.review import DECISIONS, ReviewStore, agreement, run_class_names
from ..rundir.fields import SUMMARY_ROWS
from ..rundir.snapshot import read
from ..rundir.store import RunStore


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    exportdir.write_file(path, buffer.getvalue())


def _series(metrics: list[dict], key: str) -> tuple[list, list]:
    pairs = [(m["step"], m[key]) for m in metrics if m.get(key) is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _line_chart(metrics: list[dict], keys: dict[str, str], title: str, path: Path) -> bool:
    """One line per metric over steps; False (nothing written) when none has values."""
    series = {label: _series(metrics, key) for key, label in keys.items()}
    series = {label: xy for label, xy in series.items() if xy[0]}
    if not series:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for label, (x, y) in series.items():
        ax.plot(x, y, marker="o", markersize=3, label=label)
    ax.set(xlabel="step", title=title, ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)
    return True


def _weights_chart(store: RunStore, path: Path) -> bool:
    data = store.dataset_arrays()
    given, true = data["given"], data["true"]
    known = true >= 0
    for step in reversed(store.steps()):
        with reading(store.snapshot_path(step), "export with --no-report, or restore the file from a backup"):
            weights = np.asarray(read(store, step, ("weight_given",)).get("weight_given", np.zeros(0)))
            weights = weights if weights.size else None
        if weights is not None and np.isfinite(weights).any() and known.any():
            break
    else:
        return False
    clean, noisy = known & (given == true), known & (given != true)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    bins = np.linspace(0, 1, 26)
    ax.hist(weights[clean], bins=bins, alpha=0.6, label=f"clean given label ({clean.sum()})")
    ax.hist(weights[noisy], bins=bins, alpha=0.6, label=f"noisy given label ({noisy.sum()})")
    ax.set(xlabel="AWE weight of the given label", ylabel="samples", title=f"Ambiguity-aware weights, step {step}")
    ax.legend(fontsize=8)
    _save(fig, path)
    return True


def _decisions_chart(counts: dict[str, int], path: Path) -> bool:
    if not any(counts.values()):
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.0, 2.6))
    ax.bar(list(counts), list(counts.values()), color="#4c78a8")
    ax.set(ylabel="samples", title="Review decisions (effective)")
    _save(fig, path)
    return True


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def comparison_runs(store: RunStore) -> list[RunStore]:
    """The run and every run beside it (same runs folder) on the same data: the comparison set."""
    from .compare import same_data
    from ..rundir.store import list_runs

    others = []
    for path in list_runs(store.path.parent):
        if path.resolve() == store.path.resolve():
            continue
        try:
            if not same_data([store, RunStore(path)]):
                others.append(RunStore(path))
        except UserError:
            continue  # a damaged neighbour is no comparison
    return [store] + sorted(others, key=lambda s: s.path.name)


#: Characters that make Markdown (and Streamlit's flavour of it: $math$, :colour[...] and :shortcodes:) more
#: than text; each is written with a backslash in front.
MARKDOWN_SPECIAL = "\\`*_[]{}!$~#|<>&"


#: What GitHub-flavoured Markdown turns into a link even when its characters are escaped: addresses and e-mails.
AUTOLINK = re.compile(r"(?:[a-z][a-z0-9+.-]*://|www\.)\S+|[\w.+-]+@[\w-]+\.[\w.-]+", re.IGNORECASE)


def _code_span(text: str) -> str:
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}" if text.startswith("`") or text.endswith("`") else f"{fence}{text}{fence}"


def markdown_text(value) -> str:
    """A name from data (a run, a dataset path, a class, a reviewer) as Markdown text: shown as written, never
    markup (no link, image, emphasis, HTML, math, colour or shortcode; one line).

    Quotes, dots, dashes and parentheses stay as they are (they make nothing without a ``[`` or ``!``), so the
    text reads the same in the file; a ``:`` before anything but a space (a shortcode) gets a backslash too, and
    an address or an e-mail (which Markdown links even when escaped) is written as code."""
    text = " ".join(str(value).splitlines())
    out, last = [], 0
    for found in AUTOLINK.finditer(text):
        out.append(_escape(text[last:found.start()]))
        out.append(_code_span(found.group(0)))
        last = found.end()
    out.append(_escape(text[last:]))
    return "".join(out)


def _escape(text: str) -> str:
    out = []
    for n, ch in enumerate(text):
        nxt = text[n + 1] if n + 1 < len(text) else " "
        heading = ch == "#" and n == 0 and nxt in " #"  # '#' makes a heading only at the start, before a space
        if (ch in MARKDOWN_SPECIAL and ch != "#") or heading or (ch == ":" and not nxt.isspace()):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _comparison_lines(store: RunStore) -> list[str]:
    """The Compare page's table (engine.readers.compare) over the comparison set, as Markdown."""
    from .compare import comparison_table, table_text

    runs = comparison_runs(store)
    if len(runs) < 2:
        return []
    try:
        rows = comparison_table(runs)
    except UserError:
        return []
    cells = table_text(rows)
    lines = ["", "## Comparison", "", f"Runs on the same data in {markdown_text(store.path.parent.name)}/ (as the Compare page "
             "and `python -m engine compare` show them):", "",
             "| " + " | ".join(map(markdown_text, cells[0])) + " |", "|" + "---|" * len(cells[0])]
    lines += ["| " + " | ".join(map(markdown_text, c)) + " |" for c in cells[1:]]
    return lines


def _setup_lines(store: RunStore, summary: dict) -> list[str]:
    """The report's title, its settings table and its results table (names escaped)."""
    config = store.config()
    lines = [f"# Run report: {markdown_text(store.path.name)}", "",
             f"Written {dt.datetime.now().isoformat(timespec='seconds')}.", "",
             "## Set-up", "", "| setting | value |", "|---|---|"]
    for key in ("dataset", "noise", "method", "seed"):
        lines.append(f"| {key} | {markdown_text(getattr(config, key))} |")
    lines += [f"| classes | {len(run_class_names(store))} |", f"| steps done | {len(store.steps())} |", "",
              "## Results", "", "| metric | value |", "|---|---|"]
    return lines + [f"| {label} | {_fmt(summary.get(key))} |" for key, label in SUMMARY_ROWS if key in summary]


def _review_lines(store: RunStore, reviews: ReviewStore, samples) -> tuple[list[str], dict[str, int]]:
    """The report's review section, and the count of each decision (for its chart)."""
    latest = reviews.latest()
    counts = {d: sum(1 for x in latest.values() if x.decision == d) for d in DECISIONS}
    true = store.dataset_arrays()["true"]
    agree = agreement(latest.values(), true, blind_only=False)
    blind = agreement(latest.values(), true, blind_only=True)
    lines = ["", "## Review", "", f"{len(latest)} samples reviewed by "
             f"{len({d.reviewer for d in latest.values()})} reviewer(s); {len(reviews.history())} events in the log.",
             "", "| decision | samples |", "|---|---|"] + [f"| {d} | {c} |" for d, c in counts.items()]
    if samples is not None:
        changed = int(((samples["final"] != samples["given"]) & (samples["final"] != "")).sum())
        lines += ["", f"Final labels differing from the given ones: {changed} of {len(samples)}."]
    lines += ["", f"Reviewer labels agreeing with the method: {_fmt(agree['with_method'])}; "
              f"with the truth: {_fmt(agree['with_truth'])} (over {agree['labelled']} labelled decisions).",
              f"Blind decisions only: {blind['labelled']}, agreeing with the method {_fmt(blind['with_method'])}, "
              f"with the truth {_fmt(blind['with_truth'])}."]
    return lines, counts


def _share_cell(share: dict | None) -> str:
    if share is None:
        return "-"
    return f"{share['value']:.3f} ({share['low']:.3f}-{share['high']:.3f}; {share['count']} of {share['total']})"


def _audit_lines(store: RunStore) -> list[str]:
    """The report's audit section (empty without an audit): counted on a random sample, with 90% intervals."""
    from .audit import audit_report

    report = audit_report(store)
    if report is None:
        return []
    change = report["change"]
    lines = ["", "## Audit", "",
             f"{report['audited']} randomly drawn samples audited by {len(report['reviewers'])} reviewer(s) "
             f"({report['left_out']} left out: unsure or tied; about {report['target']} give +-0.03). "
             "Audit decisions measure the labels; none becomes a training label (from 50 audited samples on, the "
             "calibrated rule uses the audit as evidence for which changes to take).", "",
             "| counted on the audit | value (90% interval; count) |", "|---|---|",
             f"| noise rate | {_share_cell(report['rate'])} |",
             f"| given labels right | {_share_cell(report['given_precision'])} |",
             f"| refined labels right (step {report['step']}) | {_share_cell(report['refined_precision'])} |"]
    if change is not None:
        lines.append(f"| change given -> refined | {change['value']:+.3f} ({change['low']:+.3f} to "
                     f"{change['high']:+.3f}; fixed {change['fixed']}, broken {change['broken']}): "
                     f"{change['verdict']} |")
    truth = report["truth"]
    if truth and truth.get("given_precision") is not None:
        lines += ["", f"True, over every sample: noise rate {_fmt(truth['rate'])}, given labels "
                      f"{_fmt(truth['given_precision'])}, refined labels {_fmt(truth['refined_precision'])}."]
    return lines


def write_report(store: RunStore, out_dir, samples=None, reviews: ReviewStore | None = None) -> Path:
    """Write ``report.md`` and its charts into ``out_dir``; returns the report's path.

    Files are written plainly (through :func:`engine.readers.exportdir.write_file`):
    ``out_dir`` is meant to be a fresh folder, as :func:`engine.readers.export.export_run`'s
    staging folder or a temporary one. A damaged summary, dataset or snapshot
    is one :class:`UserError` naming the file.

    ``samples`` (from :func:`engine.readers.export.samples_table`) adds the count of
    final labels that differ from the given ones.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics = store.metrics()
    summary = store.summary() or (metrics[-1] if metrics else {})
    reviews = reviews or ReviewStore(store.path)
    lines = _setup_lines(store, summary)
    charts = [
        ("labels.png", "Label quality", _line_chart(metrics, {
            "given_label_precision": "given labels", "refined_label_precision": "refined labels",
            "detection_precision": "noise detection precision", "detection_recall": "noise detection recall"},
            "Label precision per step", out / "labels.png")),
        ("accuracy.png", "Test accuracy", _line_chart(metrics, {
            "teacher_test_accuracy": "teacher", "student_test_accuracy": "student"},
            "Test accuracy per step", out / "accuracy.png")),
        ("weights.png", "Ambiguity-aware weights", _weights_chart(store, out / "weights.png")),
    ]
    lines += _comparison_lines(store)
    warnings = summary.get("warnings") or []
    if warnings:
        lines += ["", "## Warnings", ""] + [f"- **{markdown_text(w.get('code'))}**: {markdown_text(w.get('message'))}"
                                                   for w in warnings]
    review_lines, counts = _review_lines(store, reviews, samples)
    lines += review_lines
    lines += _audit_lines(store)
    charts.append(("decisions.png", "Review decisions", _decisions_chart(counts, out / "decisions.png")))
    lines += ["", "## Charts", ""]
    for name, title, written in charts:
        if written:
            lines += [f"### {title}", "", f"![{title}]({name})", ""]
        else:
            (out / name).unlink(missing_ok=True)
    report = out / "report.md"
    exportdir.write_file(report, exportdir.text_bytes("\n".join(lines) + "\n"))
    return report
