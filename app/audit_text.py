"""The random audit's numbers in words (pure: no Streamlit), for the Review page's audit mode, Train and Compare.

Every number comes from :func:`engine.readers.audit.audit_report`; each share is said with its 90% interval and
the count behind it, a change with its verdict: "within chance" while its interval holds 0.
"""

from __future__ import annotations

NOT_TRAINING = ("Audit decisions measure the labels: none becomes a training label (nothing here is clamped). "
                "From 50 audited samples on, the calibrated rule's next steps use the audit as evidence: its noise "
                "rate, and only the label changes it shows fixing more than they break. To correct labels, use "
                "the review queue (Queue: worth reviewing).")


def share_text(share: dict | None) -> str:
    """``"0.412 (90% interval 0.362–0.463, 87 of 211)"``; ``"–"`` for None."""
    if share is None:
        return "–"
    return (f"{share['value']:.3f} (90% interval {share['low']:.3f}–{share['high']:.3f}, "
            f"{share['count']} of {share['total']})")


def change_text(change: dict | None) -> str:
    """``"+0.123 (90% interval +0.080 to +0.166; fixed 30, broken 4): better"``; a change whose interval holds 0
    says "within chance" rather than better or worse."""
    if change is None:
        return "–"
    return (f"{change['value']:+.3f} (90% interval {change['low']:+.3f} to {change['high']:+.3f}; fixed "
            f"{change['fixed']}, broken {change['broken']}): {change['verdict']}")


def progress_line(report: dict | None, mine: int | None = None) -> str:
    """``"Audited 212 of about 752 for ±0.03 (2 left out: unsure or tied) · you: 120"``."""
    if report is None:
        return "Nothing audited yet." + (f" · you: {mine}" if mine else "")
    left = f" ({report['left_out']} left out: unsure or tied)" if report["left_out"] else ""
    you = f" · you: {mine}" if mine is not None else ""
    if report["audited"] >= report["target"]:
        return (f"Audited {report['audited']}: enough for ±{report['half_width_goal']:.2f} (about "
                f"{report['target']} needed){left}{you}")
    return (f"Audited {report['audited']} of about {report['target']} for "
            f"±{report['half_width_goal']:.2f}{left}{you}")


def audit_lines(report: dict) -> list[str]:
    """The audit's numbers, one per line: the rate, the given and the refined labels' precision, the change,
    and the truth beside them where known."""
    step = report.get("step")
    lines = [f"Noise rate: {share_text(report['rate'])}",
             f"Given labels right: {share_text(report['given_precision'])}"]
    if report.get("refined_precision") is not None:
        lines.append(f"Refined labels right at step {step}: {share_text(report['refined_precision'])}")
        lines.append(f"Change given → refined: {change_text(report['change'])}")
    truth = report.get("truth")
    if truth:
        known = [f"{name} {truth[key]:.3f}" for key, name in (("rate", "noise rate"),
                                                              ("given_precision", "given labels"),
                                                              ("refined_precision", "refined labels"))
                 if truth.get(key) is not None]
        agree = truth.get("audit_with_truth")
        if known:
            lines.append("True (every sample): " + ", ".join(known))
        if agree and agree["total"]:
            lines.append(f"Audited classes equal to the truth: {share_text(agree)}")
    return lines


def train_line(report: dict | None) -> str | None:
    """One caption line for the Train page: the counted numbers with intervals and the sample count."""
    if report is None:
        return None
    parts = [f"noise rate {_short(report['rate'])}", f"given labels {_short(report['given_precision'])}"]
    if report.get("refined_precision") is not None:
        change = report["change"]
        verdict = change["verdict"]
        parts.append(f"refined labels {_short(report['refined_precision'])} at step {report['step']}")
        parts.append(f"change {change['value']:+.3f} ({change['low']:+.3f} to {change['high']:+.3f}): {verdict}")
    return f"Counted on {report['audited']} audited samples, 90% intervals: " + "; ".join(parts) + "."


def _short(share: dict) -> str:
    return f"{share['value']:.3f} ({share['low']:.3f}–{share['high']:.3f})"


def compare_row(row: dict) -> dict:
    """One row of the Compare page's audit table from :func:`engine.readers.audit.audit_rows`."""
    report = row["report"]
    if report is None:
        return {"run": row["run"], "audit of": "", "audited": "", "noise rate": "", "refined prec": "",
                "change": "", "verdict": "no audit"}
    change = report["change"]
    return {"run": row["run"], "audit of": row["audit_of"] + (" (own)" if row["audit_of"] == row["run"] else ""),
            "audited": str(report["audited"]), "noise rate": _short(report["rate"]),
            "refined prec": _short(report["refined_precision"]) if report["refined_precision"] else "–",
            "change": "–" if change is None else f"{change['value']:+.3f} ({change['low']:+.3f} to "
                                                 f"{change['high']:+.3f})",
            "verdict": "–" if change is None else change["verdict"]}
