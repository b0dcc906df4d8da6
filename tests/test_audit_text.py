"""The audit's numbers in words (app.audit_text): intervals, counts, and "within chance" where the change's
interval holds 0."""

from app import audit_text as at

SHARE = {"count": 87, "total": 211, "value": 87 / 211, "low": 0.3621, "high": 0.4634, "half_width": 0.05}


def change(value, low, high, verdict, fixed=30, broken=4):
    return {"fixed": fixed, "broken": broken, "total": 211, "value": value, "low": low, "high": high,
            "verdict": verdict}


def report(**over):
    base = {"audited": 211, "left_out": 2, "target": 752, "half_width_goal": 0.03, "rate": SHARE,
            "given_precision": {**SHARE, "count": 124, "value": 124 / 211, "low": 0.53, "high": 0.64},
            "step": 12, "refined_precision": {**SHARE, "count": 190, "value": 190 / 211, "low": 0.87, "high": 0.93},
            "change": change(0.123, 0.08, 0.166, "better"), "truth": None, "audit_of": "run", "reviewers": ["ann"]}
    return {**base, **over}


def test_share_and_change_texts():
    assert at.share_text(SHARE) == "0.412 (90% interval 0.362–0.463, 87 of 211)"
    assert at.change_text(change(0.123, 0.08, 0.166, "better")) == \
        "+0.123 (90% interval +0.080 to +0.166; fixed 30, broken 4): better"
    assert at.share_text(None) == "–" and at.change_text(None) == "–"


def test_progress_line():
    assert at.progress_line(report(), 120) == "Audited 211 of about 752 for ±0.03 (2 left out: unsure or tied) · you: 120"
    done = {**report(), "audited": 760}
    assert at.progress_line(done) == "Audited 760: enough for ±0.03 (about 752 needed) (2 left out: unsure or tied)"
    assert at.progress_line(None, None) == "Nothing audited yet."


def test_train_line_says_within_chance_when_the_interval_holds_zero():
    line = at.train_line(report(change=change(0.01, -0.02, 0.04, "within chance", 5, 3)))
    assert line.startswith("Counted on 211 audited samples, 90% intervals: noise rate 0.412 (0.362–0.463)")
    assert "refined labels 0.900 (0.870–0.930) at step 12" in line
    assert line.endswith("change +0.010 (-0.020 to +0.040): within chance.")
    assert at.train_line(None) is None


def test_audit_lines_with_truth_and_without_a_step():
    lines = at.audit_lines(report(truth={"rate": 0.4, "given_precision": 0.6, "refined_precision": 0.95,
                                         "audit_with_truth": {**SHARE, "count": 200, "value": 200 / 211}}))
    assert lines[2].startswith("Refined labels right at step 12: 0.900")
    assert lines[4] == "True (every sample): noise rate 0.400, given labels 0.600, refined labels 0.950"
    assert at.audit_lines(report(refined_precision=None, change=None, step=None)) == lines[:2]


def test_compare_rows():
    own = at.compare_row({"run": "a", "audit_of": "a", "report": report()})
    assert own == {"run": "a", "audit of": "a (own)", "audited": "211", "noise rate": "0.412 (0.362–0.463)",
                   "refined prec": "0.900 (0.870–0.930)", "change": "+0.123 (+0.080 to +0.166)", "verdict": "better"}
    assert at.compare_row({"run": "b", "audit_of": "a", "report": report()})["audit of"] == "a"
    assert at.compare_row({"run": "c", "audit_of": None, "report": None})["verdict"] == "no audit"
