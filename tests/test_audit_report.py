"""The audit read for a run (engine.readers.audit): counts and interval ends by hand, on run directories
written by hand; the next samples to audit; audits shared by runs of the same samples."""

from __future__ import annotations

import numpy as np
import pytest

from engine.method import RunConfig
from engine.method.audit import audit_order
from engine.readers import audit as ra
from engine.rundir import snapshot
from engine.rundir.review import AuditStore
from engine.rundir.store import RunStore

N = 20
Z90 = 1.6448536269514722  # the normal quantile of a 90% interval
GIVEN = np.arange(N) % 3
#: The fixture's audit, by hand: samples 0-5 keep (right), 6-8 another class (wrong), 9 an outlier (wrong),
#: 10 unsure (left out). Rate 4/10, given precision 6/10.
WRONG = {6: 1, 7: 2, 8: 0}  # sample -> its audited class (given 0, 1, 2: each differs)


def refined_at(step: int) -> np.ndarray:
    refined = GIVEN.copy()
    if step == 1:
        refined[12] = (GIVEN[12] + 1) % 3  # not audited: the audit cannot see it
        return refined
    for sample, cls in WRONG.items():
        refined[sample] = cls  # fixes 3
    refined[0] = (GIVEN[0] + 1) % 3  # breaks 1
    refined[9] = 1  # an outlier: every label of it is wrong
    refined[15] = 0  # not audited
    return refined


def make_run(path, given=GIVEN, truth: bool = True, seed: int = 7) -> RunStore:
    store = RunStore(path)
    store.create(RunConfig(dataset="moons?n=40", seed=seed))
    true = given.copy()
    for sample, cls in WRONG.items():
        true[sample] = cls
    true[16] = (given[16] + 1) % 3  # a wrong label nobody audited
    store.write_dataset(given=given, true=true if truth else np.full(N, -1),
                        keys=np.array([f"s{i}" for i in range(N)]), holdout=np.zeros(N, bool),
                        class_names=np.array(["a", "b", "c"]))
    for step in (1, 2):
        refined = refined_at(step)
        store.write_step(step, {"refined": refined.astype(np.int64)},
                         {"step": step, "phase": "refine",
                          "given_label_precision": float(np.mean(given == true)) if truth else None,
                          "refined_label_precision": float(np.mean(refined == true)) if truth else None})
    return store


def audit_by_hand(store: RunStore, reviewer: str = "ann") -> None:
    log = AuditStore(store.path, num_classes=3)
    for sample in range(6):
        log.record(sample, "keep", reviewer)
    for sample, cls in WRONG.items():
        log.record(sample, "relabel", reviewer, cls)
    log.record(9, "outlier", reviewer)
    log.record(10, "unsure", reviewer)


def wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    p, z2 = k / n, Z90 ** 2
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z90 / (1 + z2 / n) * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return centre - half, centre + half


@pytest.fixture
def run(tmp_path):
    store = make_run(tmp_path / "run")
    audit_by_hand(store)
    return store


def test_no_log_no_report_and_reading_creates_none(tmp_path):
    store = make_run(tmp_path / "bare")
    assert ra.audit_report(store.path) is None
    assert not store.audit_path.exists()
    AuditStore(store.path, num_classes=3).record(3, "unsure", "ann")  # a log with nothing placed
    assert ra.audit_report(store.path) is None


def test_rate_and_given_precision_by_hand(run):
    report = ra.audit_report(run.path)
    assert (report["audited"], report["left_out"], report["reviewers"]) == (10, 1, ["ann"])
    assert (report["rate"]["count"], report["rate"]["total"]) == (4, 10)  # 6, 7, 8 relabelled, 9 an outlier
    assert report["rate"]["value"] == pytest.approx(0.4)
    # 4 of 10 at 90%: centre 0.42129, half-width 0.22707
    assert (report["rate"]["low"], report["rate"]["high"]) == pytest.approx((0.19422, 0.64836), abs=1e-4)
    assert (report["rate"]["low"], report["rate"]["high"]) == pytest.approx(wilson_by_hand(4, 10))
    assert report["given_precision"]["count"] == 6
    assert (report["given_precision"]["low"], report["given_precision"]["high"]) == \
        pytest.approx(wilson_by_hand(6, 10))


def test_refined_precision_and_change_at_the_newest_step(run):
    report = ra.audit_report(run.path)
    assert report["step"] == 2
    assert (report["refined_precision"]["count"], report["refined_precision"]["total"]) == (8, 10)  # 6 - 1 + 3
    change = report["change"]
    assert (change["fixed"], change["broken"]) == (3, 1)
    assert change["value"] == pytest.approx(0.2)
    # Newcombe's paired interval (engine.method.stats) of 5 right both times, 3 fixed, 1 broken, 1 wrong both times
    from engine.method.stats import paired_difference
    reference = paired_difference(np.array([1] * 5 + [1] * 3 + [0, 0], bool), np.array([1] * 5 + [0] * 3 + [1, 0], bool),
                                  level=0.9)
    assert (change["low"], change["high"]) == pytest.approx((reference.low, reference.high))
    assert change["low"] == pytest.approx(-0.1141, abs=1e-4) and change["high"] == pytest.approx(0.4689, abs=1e-4)
    assert change["verdict"] == "within chance"  # -0.114 to 0.469 holds 0


def test_an_earlier_step_reads_its_own_refined_labels(run):
    report = ra.audit_report(run.path, step=1)
    assert report["step"] == 1 and report["refined_precision"]["count"] == 6  # sample 12 is not audited
    assert (report["change"]["fixed"], report["change"]["broken"]) == (0, 0)


def test_truth_beside_the_counts(run, tmp_path):
    truth = ra.audit_report(run.path)["truth"]
    assert truth["given_precision"] == pytest.approx(16 / 20)  # 6, 7, 8 and 16 wrong
    assert truth["rate"] == pytest.approx(4 / 20)
    assert truth["refined_precision"] == pytest.approx(np.mean(refined_at(2) == make_true()))
    assert (truth["audit_with_truth"]["count"], truth["audit_with_truth"]["total"]) == (9, 10)  # the outlier
    blind = make_run(tmp_path / "no-truth", truth=False)
    audit_by_hand(blind)
    assert ra.audit_report(blind.path)["truth"] is None


def make_true() -> np.ndarray:
    true = GIVEN.copy()
    for sample, cls in WRONG.items():
        true[sample] = cls
    true[16] = (GIVEN[16] + 1) % 3
    return true


def test_reads_only_the_audited_rows(run):
    with snapshot.recording() as log:
        ra.audit_report(run.path)
    assert log.touched[(2, "refined")] == 10  # the audited samples' rows of the step's refined labels
    assert (1, "refined") not in log.touched
    assert not any(name not in ("refined",) for step, name in log.touched if step != snapshot.DATASET_STEP)
    assert log.touched[(snapshot.DATASET_STEP, "given")] == 10


def test_consensus_of_two_reviewers_counts_once(run):
    AuditStore(run.path, num_classes=3).record(0, "keep", "bob")
    AuditStore(run.path, num_classes=3).record(6, "keep", "bob")  # 1 for 0 and 1 for given: a tie, left out
    report = ra.audit_report(run.path)
    assert (report["audited"], report["left_out"], report["reviewers"]) == (9, 2, ["ann", "bob"])
    assert report["rate"]["count"] == 3


def test_target_size_follows_the_interval(run):
    report = ra.audit_report(run.path)
    # the rate's interval (0.19, 0.65) holds 0.5: the largest variance, 1.645^2 * 0.25 / 0.03^2
    assert report["target"] == int(np.ceil(Z90 ** 2 * 0.25 / 0.03 ** 2)) == 752
    from engine.method.audit import audit_of

    labels = np.zeros(400, np.int64)
    low = ra.target_size(audit_of(labels, np.where(np.arange(400) < 40, 1, 0)))  # 40 of 400 wrong: 0.1
    share_high = wilson_by_hand(40, 400)[1]
    assert low == int(np.ceil(Z90 ** 2 * share_high * (1 - share_high) / 0.03 ** 2))
    assert low < 752


def test_next_to_audit_walks_the_seeded_order(run):
    order = audit_order(N, seed=7)
    done = set(range(11))  # ann decided 0-10 (unsure counts: she looked at it)
    assert ra.next_to_audit(run.path, "ann", 5).tolist() == [s for s in order if s not in done][:5]
    assert ra.next_to_audit(run.path, "bob", 4).tolist() == order[:4].tolist()
    assert ra.next_to_audit(run.path, "ann", 100).tolist() == [s for s in order if s not in done]
    AuditStore(run.path).undo("ann", sample=10)
    assert 10 in ra.next_to_audit(run.path, "ann", 100).tolist()


def test_shared_audits_by_samples_digest(tmp_path, run):
    twin = make_run(tmp_path / "twin")  # the same samples and given labels, no audit of its own
    other = make_run(tmp_path / "other", given=(GIVEN + 1) % 3)  # other given labels
    assert ra.shared_audits([twin.path, other.path, run.path]) == {"twin": "run", "other": None, "run": "run"}
    rows = {r["run"]: r for r in ra.audit_rows([twin.path, other.path, run.path])}
    assert rows["twin"]["audit_of"] == "run" and rows["other"]["report"] is None
    assert rows["twin"]["report"]["refined_precision"]["count"] == 8  # its own refined labels, the run's audit


def test_export_columns(run):
    table = ra.audit_labels_table(run.path, ("a", "b", "c"))
    assert table["audited"] == [1] * 10 + [0] * 10  # the unsure sample 10 is not audited
    assert table["audited_class"][:10] == ["a", "b", "c", "a", "b", "c", "b", "c", "a", "outlier"]
    assert table["audited_class"][10:] == [""] * 10


def test_export_and_report_carry_the_audit(run, tmp_path):
    import json

    import pandas as pd

    from engine.readers.export import export_run

    written = export_run(run, tmp_path / "out", report=True)
    assert "audit.json" in written
    numbers = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert (numbers["audited"], numbers["rate"]["count"], numbers["refined_precision"]["count"]) == (10, 4, 8)
    assert numbers["change"]["verdict"] == "within chance"
    samples = pd.read_csv(tmp_path / "out" / "samples.csv", dtype=str, keep_default_na=False)
    assert samples["audited"].tolist() == ["1"] * 10 + ["0"] * 10
    assert samples.loc[6, "audited_class"] == "b" and samples.loc[9, "audited_class"] == "outlier"
    report = (tmp_path / "out" / "report.md").read_text()
    section = report[report.index("## Audit"):]
    assert "10 randomly drawn samples audited by 1 reviewer(s) (1 left out" in section
    assert "| noise rate | 0.400 (0.194-0.648; 4 of 10) |" in section
    assert "| refined labels right (step 2) | 0.800" in section
    assert "fixed 3, broken 1): within chance |" in section


def test_export_without_an_audit_is_as_before(tmp_path):
    import pandas as pd

    from engine.readers.export import export_run

    store = make_run(tmp_path / "plain")
    written = export_run(store, tmp_path / "out", report=True)
    assert "audit.json" not in written and not store.audit_path.exists()
    assert "audited" not in pd.read_csv(tmp_path / "out" / "samples.csv").columns
    assert "## Audit" not in (tmp_path / "out" / "report.md").read_text()
