"""Exports (samples, decisions, clean labels, student, report) and the import of decisions."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from engine.cli import main as cli_main
from engine.errors import UserError
from engine.readers.export import export_run, import_decisions, samples_table
from engine.readers.exportdir import verify_export
from engine.rundir.review import ReviewStore
from engine.rundir.store import RunStore
from test_review import make_run  # the hand-written run directory (tests/ is on sys.path under pytest)


@pytest.fixture
def run(tmp_path):
    """12 samples of 2 classes ('class 0', 'class 1'); sample 3's refined label differs from its given one."""
    refined = np.repeat([0, 1], 6)
    refined[3] = 1
    store = make_run(tmp_path / "run", refined=refined)
    torch.save({"student": {"layer.weight": torch.arange(6.0).reshape(2, 3)}}, store.checkpoint_path)
    return store


def review(store: RunStore) -> ReviewStore:
    reviews = ReviewStore(store.path, num_classes=2)
    reviews.record(3, "accept", "ann", proposal=1, step=1)
    reviews.record(0, "relabel", "ann", 1, step=1, proposal=0, blind=True)
    reviews.record(7, "keep", "bob", step=1)
    reviews.record(9, "outlier", "bob", step=1)
    reviews.record(10, "unsure", "ann", step=1)
    reviews.record(11, "relabel", "ann", 0, step=1)
    reviews.undo("ann", 11)
    return reviews


def effective(reviews: ReviewStore) -> list[tuple]:
    return sorted((d.sample, d.decision, d.label, d.reviewer, d.step, d.proposal, d.blind)
                  for d in reviews.latest().values())


def test_samples_table(run):
    review(run)
    table = samples_table(run)
    assert list(table.columns) == ["sample", "index", "given", "refined", "final", "decision", "reviewer",
                                   "weight", "confidence", "true"]
    rows = table.set_index("index")
    assert rows.loc[3, ["given", "refined", "final", "decision", "reviewer"]].tolist() == \
        ["class 0", "class 1", "class 1", "accept", "ann"]
    assert rows.loc[0, ["final", "decision"]].tolist() == ["class 1", "relabel"]
    assert rows.loc[9, ["final", "decision"]].tolist() == ["", "outlier"]  # excluded
    assert rows.loc[10, ["final", "decision"]].tolist() == ["class 1", "unsure"]  # unsure: the refined label
    assert rows.loc[11, ["final", "decision"]].tolist() == ["class 1", ""]  # undone
    assert rows.loc[1, "sample"] == "s1" and rows.loc[1, "confidence"] == pytest.approx(0.2 + 0.7 / 11, abs=1e-5)


def test_export_writes_every_file(run, tmp_path):
    review(run)
    out = tmp_path / "out"
    written = export_run(run, out)
    assert set(written) == {"samples.csv", "samples.json", "decisions.csv", "review_history.csv",
                            "clean_labels.csv", "student.pt", "report.md", "weights.png", "decisions.png",
                            "manifest.json"}
    assert sorted(p.name for p in out.iterdir()) == sorted(written)  # nothing else, no temporary file
    assert verify_export(out) == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["step"] == 1 and {f["name"] for f in manifest["files"]} == set(written) - {"manifest.json"}
    samples = pd.read_csv(out / "samples.csv", dtype=str, keep_default_na=False)
    assert len(samples) == 12 and samples.loc[3, "final"] == "class 1"
    clean = pd.read_csv(out / "clean_labels.csv", dtype=str)
    assert list(clean.columns) == ["path", "label"]
    assert len(clean) == 11 and "s9" not in set(clean["path"])  # the outlier is left out
    assert clean.set_index("path").loc["s0", "label"] == "class 1"
    history = pd.read_csv(out / "review_history.csv")
    assert len(history) == 7 and history["decision"].tolist()[-1] == "undo"
    assert history["undoes"].tolist()[-1] == 6
    data = json.loads((out / "samples.json").read_text())
    assert data["class_names"] == ["class 0", "class 1"] and len(data["samples"]) == 12
    state = torch.load(out / "student.pt", weights_only=True)
    torch.testing.assert_close(state["layer.weight"], torch.arange(6.0).reshape(2, 3))
    report = (out / "report.md").read_text()
    assert "| accept | 1 |" in report and "| outlier | 1 |" in report
    for name in ("weights.png", "decisions.png"):
        assert f"({name})" in report and (out / name).stat().st_size > 1000
    assert "labels.png" not in report and not (out / "labels.png").exists()  # no precision metrics in this run


@pytest.mark.parametrize("exported", ["decisions.csv", "samples.csv", "samples.json"])
def test_decisions_round_trip(run, tmp_path, exported):
    original = review(run)
    export_run(run, tmp_path / "out", report=False)
    copy = RunStore(tmp_path / "copy")
    shutil.copytree(run.path, copy.path)
    (copy.path / "reviews.sqlite").unlink()
    for extra in ("reviews.sqlite-wal", "reviews.sqlite-shm"):
        (copy.path / extra).unlink(missing_ok=True)
    imported = import_decisions(copy, tmp_path / "out" / exported)
    assert len(imported) == 5
    expected = effective(original)
    if exported != "decisions.csv":  # sample tables hold no step, proposal or blind flag
        expected = [(s, dec, lab, who, None, None, False) for s, dec, lab, who, *_ in expected]
        got = [(s, dec, lab, who, None, None, False) for s, dec, lab, who, *_ in effective(ReviewStore(copy.path))]
        assert got == expected
    else:
        assert effective(ReviewStore(copy.path)) == expected
    np.testing.assert_array_equal(ReviewStore(copy.path).clamps(12)[0], original.clamps(12)[0])


@pytest.mark.parametrize("content, message", [
    ("sample,decision,label,reviewer\ns1,keep,class 0,ann\nnope,keep,class 0,ann\n", "row 2: unknown sample 'nope'"),
    ("sample,decision,label,reviewer\ns1,relabel,class 7,ann\n", "unknown class 'class 7'"),
    ("sample,decision,label,reviewer\ns1,delete,,ann\n", "unknown decision 'delete'"),
    ("sample,decision,label\ns1,keep,class 0\n", "no reviewer"),
    ("name,verdict\ns1,keep\n", "needs a 'decision' column"),
    ("sample,decision,label,reviewer\ns1,relabel,,ann\n", "needs a label"),
])
def test_bad_import_imports_nothing(run, tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        import_decisions(run, path)
    assert ReviewStore(run.path).history() == []


def test_import_json_and_reviewer_default(run, tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"decisions": [{"sample": "s2", "decision": "relabel", "label": "1"},
                                              {"index": 4, "decision": "outlier"}]}))
    events = import_decisions(run, path, reviewer="carol")
    assert [(e.sample, e.label, e.reviewer) for e in events] == [(2, 1, "carol"), (4, None, "carol")]
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid CSV or JSON"):
        import_decisions(run, tmp_path / "broken.json")


def test_cli_export_and_import(run, tmp_path, capsys):
    review(run)
    assert cli_main(["export", str(run.path), "--out", str(tmp_path / "cli"), "--no-report"]) == 0
    samples = pd.read_csv(tmp_path / "cli" / "samples.csv", dtype=str, keep_default_na=False)
    assert list(samples.columns)[:9] == ["sample", "index", "given", "refined", "final", "decision", "reviewer",
                                         "weight", "confidence"]
    assert samples.loc[samples["decision"] != "", "sample"].tolist() == ["s0", "s3", "s7", "s9", "s10"]
    bad = tmp_path / "bad.csv"
    bad.write_text("sample,decision,reviewer\nghost,keep,ann\n")
    capsys.readouterr()
    assert cli_main(["import-decisions", str(run.path), str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: decisions file") and "unknown sample 'ghost'" in err and err.count("\n") == 1
    assert cli_main(["export", str(run.path), "--out", str(tmp_path / "x"), "--step", "5"]) == 2
    good = tmp_path / "good.csv"
    good.write_text("sample,decision,label,reviewer\ns5,relabel,class 0,dan\n")
    assert cli_main(["import-decisions", str(run.path), str(good)]) == 0
    assert ReviewStore(run.path).latest()[5].reviewer == "dan"


def test_export_text_keeps_names_that_were_not_utf8_as_their_bytes():
    from engine.readers.exportdir import text_bytes

    assert text_bytes("folder:/data/caf\udce9,ok") == b"folder:/data/caf\xe9,ok"  # os.fsdecode's escape, undone
    assert text_bytes("lone \ud800") == b"lone \\ud800"  # not from a file system: escaped, never a crash
    assert text_bytes("ünïcode") == "ünïcode".encode()
