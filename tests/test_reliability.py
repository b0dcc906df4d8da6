"""Reliability: damaged run files, bad inputs and killed exports.

Every refusal is checked the same way (:func:`refused`): exit status 2, exactly
one line on stderr, no traceback, the input named; and the run directory's
files are the same bytes afterwards (:func:`digest`), with no temporary file
left beside them. Most cases call ``engine.cli.main`` in-process; a few go
through ``python -m engine`` (``compare``: it imports no torch, so it starts in
half a second) and real processes killed with SIGKILL mid-export prove the
real exit paths.

Runs: a copy of the shared tiny moons run (``tests/conftest.py``), damaged per test.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from engine.readers import exportdir
from engine.cli import build_parser, config_from_args, main
from engine.data import load_dataset
from engine.data.archive import extract_zip
from engine.data.labels import label_table_preview
from engine.errors import UserError, shown
from engine.readers.export import export_run
from engine.readers.exportdir import recover, verify_export
from engine.rundir.review import ReviewStore
from engine.rundir.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--teacher-epochs", "1", "--warmup-epochs", "1", "--refine-epochs", "1", "--mutual-epochs", "1"]
SECRET = "root:x:0:0:secret-password-hash:/root:/bin/bash"


# ---------------------------------------------------------------- helpers
def digest(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``folder`` (hidden ones included)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(*folders: Path) -> list[str]:
    """Temporary files and staging folders under or beside ``folders``."""
    found = []
    for folder in folders:
        for base in (folder, folder.parent):
            if base.is_dir():
                found += [str(p) for p in base.rglob("*") if p.name.endswith(".tmp") or ".export-" in p.name
                          or p.name.startswith(".unzip-")]
    return sorted(set(found))


def refused(capsys, *argv, names: str | list[str]) -> str:
    """Run the CLI in-process; assert exit 2, one line, no traceback, naming ``names``; return the line."""
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err
    for name in [names] if isinstance(names, str) else names:
        assert name in err, (name, err)
    return err.strip()


@pytest.fixture
def run(tiny_moons_run, tmp_path) -> Path:
    """A private copy of the finished tiny moons run, with one review decision (so every chart is drawn)."""
    path = tmp_path / "run"
    shutil.copytree(tiny_moons_run, path)
    ReviewStore(path, num_classes=2).record(3, "relabel", "ann", 1, step=1)
    return path


def python_m_engine(*argv, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *map(str, argv)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def one_line_exit_2(done: subprocess.CompletedProcess, name: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr and name in lines[0], done.stderr


# ---------------------------------------------------------------- exports: atomic as a folder
EXPORT_FILES = ["samples.csv", "samples.json", "decisions.csv", "review_history.csv", "clean_labels.csv",
                "student.pt", "labels.png", "accuracy.png", "weights.png", "decisions.png", "report.md",
                "manifest.json"]


def test_an_export_lists_every_file_in_its_manifest(run, tmp_path):
    written = export_run(RunStore(run), tmp_path / "out")
    out = tmp_path / "out"
    assert sorted(written) == sorted(EXPORT_FILES) == sorted(p.name for p in out.iterdir())
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) == set(EXPORT_FILES) - {"manifest.json"} and manifest["step"] == 8
    samples = out / "samples.csv"
    assert listed["samples.csv"] == {"name": "samples.csv", "bytes": samples.stat().st_size,
                                     "sha256": hashlib.sha256(samples.read_bytes()).hexdigest()}
    assert verify_export(out) == [] and leftovers(out) == []
    samples.write_text("edited")
    assert verify_export(out) == ["samples.csv differs from the manifest"]


def test_a_re_export_replaces_the_old_folder_whole(run, tmp_path, capsys):
    out = tmp_path / "out"
    export_run(RunStore(run), out)
    assert main(["export", str(run), "--out", str(out), "--no-report", "--step", "4"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["clean_labels.csv", "decisions.csv", "manifest.json", "review_history.csv", "samples.csv",
                     "samples.json", "student.pt"]  # the old report and charts are gone with the old folder
    assert json.loads((out / "manifest.json").read_text())["step"] == 4
    assert verify_export(out) == [] and leftovers(out) == []


def count_writes(monkeypatch, fail_at: int | None = None) -> list[str]:
    """Count (and optionally fail) the export's file writes; returns the names written.

    The charts are not drawn (matplotlib takes seconds here), but each is still
    written through the same writer, so every write point stays.
    """
    import matplotlib.pyplot as plt

    from engine.readers import report

    monkeypatch.setattr(report, "_save", lambda fig, path: (plt.close(fig), exportdir.write_file(path, b"png")))
    names, real = [], exportdir.write_file

    def write(path, data):
        if len(names) == fail_at:
            raise OSError(28, "No space left on device", str(path))
        names.append(Path(path).name)
        real(path, data)

    monkeypatch.setattr(exportdir, "write_file", write)
    return names


def test_an_export_writes_twelve_files_each_through_one_writer(run, tmp_path, monkeypatch):
    names = count_writes(monkeypatch)
    export_run(RunStore(run), tmp_path / "out")
    assert sorted(names) == sorted(EXPORT_FILES) and names[-1] == "manifest.json"
    assert verify_export(tmp_path / "out") == []


@pytest.mark.parametrize("fail_at", range(len(EXPORT_FILES)))
def test_a_failed_write_leaves_the_previous_export_whole(run, tmp_path, monkeypatch, capsys, fail_at):
    out = tmp_path / "out"
    export_run(RunStore(run), out, step=4, report=False)
    before, run_before = digest(out), digest(run)
    count_writes(monkeypatch, fail_at)
    err = refused(capsys, "export", run, "--out", out, names=[str(out), "No space left on device"])
    assert "as it was before" in err
    assert digest(out) == before and digest(run) == run_before and verify_export(out) == []
    assert leftovers(out) == []


def test_a_failed_swap_leaves_the_previous_export_whole(run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    export_run(RunStore(run), out, step=4, report=False)
    before = digest(out)

    def broken(a, b):
        raise OSError(5, "Input/output error", str(b))

    monkeypatch.setattr(exportdir, "_exchange", broken)
    refused(capsys, "export", run, "--out", out, "--no-report", names=["Input/output error", str(out)])
    assert digest(out) == before and leftovers(out) == []


def test_without_an_atomic_swap_two_renames_replace_the_folder(run, tmp_path, monkeypatch):
    monkeypatch.setattr(exportdir, "_exchange", lambda a, b: False)
    out = tmp_path / "out"
    export_run(RunStore(run), out, step=4, report=False)
    (out / "report.md").write_text("an older export's report")  # a file of an export, but not of this one
    export_run(RunStore(run), out, report=False, force=True)  # an edited export is replaced only when forced
    assert json.loads((out / "manifest.json").read_text())["step"] == 8 and not (out / "report.md").exists()
    assert verify_export(out) == [] and leftovers(out) == []


def test_a_failed_second_rename_puts_the_previous_export_back(run, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(exportdir, "_exchange", lambda a, b: False)
    out = tmp_path / "out"
    export_run(RunStore(run), out, step=4, report=False)
    before, real = digest(out), os.rename

    def rename(source, target):
        if Path(target) == out and not str(source).endswith(".old"):
            raise OSError(5, "Input/output error", str(target))
        real(source, target)

    monkeypatch.setattr(os, "rename", rename)
    refused(capsys, "export", run, "--out", out, "--no-report", names=["Input/output error", "as it was before"])
    assert digest(out) == before and leftovers(out) == []


def test_a_kill_between_the_two_renames_is_undone_by_the_next_export(run, tmp_path):
    out = tmp_path / "out"
    export_run(RunStore(run), out, step=4, report=False)
    before = digest(out)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # a process id that is gone
    aside = tmp_path / f".out.export-{dead}-abcd.old"
    os.rename(out, aside)  # the old export set aside, the new one not yet in place
    (tmp_path / f".out.export-{dead}-efgh").mkdir()  # and the killed export's half-written staging folder
    recover(out)
    assert digest(out) == before and leftovers(out) == []


@pytest.mark.parametrize("kill_at", [4, 7])  # halfway through the tables; at the manifest, just before the swap
def test_a_sigkilled_export_leaves_the_previous_one_and_the_next_export_cleans_up(run, tmp_path, kill_at):
    out = tmp_path / "out"
    export_run(RunStore(run), out, step=4, report=False)
    before = digest(out)
    script = textwrap.dedent(f"""
        import os, signal, sys
        from engine.readers import exportdir
        from engine.readers.export import export_run
        from engine.rundir.store import RunStore
        real, count = exportdir.write_file, [0]
        def write(path, data):
            count[0] += 1
            if count[0] == {kill_at}:
                print(os.path.basename(path), file=sys.stderr, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
            real(path, data)
        exportdir.write_file = write
        export_run(RunStore({str(run)!r}), {str(out)!r}, report=False)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stderr.split() == [{4: "review_history.csv", 7: "manifest.json"}[kill_at]]
    assert digest(out) == before and verify_export(out) == []
    assert len(leftovers(out)) >= 1  # the killed export's hidden staging folder, beside the export
    export_run(RunStore(run), out, report=False)
    assert verify_export(out) == [] and leftovers(out) == []
    assert json.loads((out / "manifest.json").read_text())["step"] == 8


def test_an_export_through_a_link_replaces_the_folder_it_points_to(run, tmp_path):
    real, link = tmp_path / "real", tmp_path / "link"
    export_run(RunStore(run), real, step=4, report=False)
    link.symlink_to(real, target_is_directory=True)
    export_run(RunStore(run), link, report=False)
    assert link.is_symlink() and json.loads((real / "manifest.json").read_text())["step"] == 8
    assert verify_export(real) == [] and leftovers(real) == []


def test_an_export_never_replaces_a_folder_of_other_files(run, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    refused(capsys, "export", run, "--out", out, names=[str(out), "'thesis.tex'", "new or empty folder"])
    assert digest(out) == {"thesis.tex": hashlib.sha256(b"years of work").hexdigest()} and leftovers(out) == []


def test_an_export_onto_a_file_is_one_line(run, tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("x")
    refused(capsys, "export", run, "--out", target, names=[str(target), "not a folder"])
    assert target.read_text() == "x"


# ---------------------------------------------------------------- damaged run files: export, compare, import
def garbage(path: Path) -> None:
    path.write_bytes(b"\x00garbage, not what this file should hold" * 10)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def without_keys(path: Path) -> None:
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k != "keys"}
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


@pytest.mark.parametrize("damage", [garbage, truncate, empty])
def test_export_of_a_damaged_last_snapshot_names_it_and_what_to_do(run, tmp_path, capsys, damage):
    damage(run / "snapshots" / "step_00008" / "refined.npy")  # one field of the step (engine.rundir.snapshot)
    before = digest(run)
    refused(capsys, "export", run, "--out", tmp_path / "out", names=["step_00008", "is damaged", "step"])
    assert digest(run) == before and not (tmp_path / "out").exists() and leftovers(tmp_path / "out") == []


@pytest.mark.parametrize("damage", [garbage, truncate, empty, without_keys])
def test_export_of_a_damaged_dataset_names_it(run, tmp_path, capsys, damage):
    damage(run / "dataset.npz")
    before = digest(run)
    refused(capsys, "export", run, "--out", tmp_path / "out", names=["dataset.npz", "is damaged", "create"])
    assert digest(run) == before and not (tmp_path / "out").exists()


def test_export_without_a_dataset_file_says_it_is_missing(run, tmp_path, capsys):
    (run / "dataset.npz").unlink()
    refused(capsys, "export", run, "--out", tmp_path / "out", names=["dataset.npz"])


@pytest.mark.parametrize("name, fragments", [
    ("checkpoint.pt", ["checkpoint.pt", "corrupt"]),
    ("summary.json", ["summary.json", "is damaged", "resume"]),
])
def test_export_of_a_damaged_checkpoint_or_summary_names_it(run, tmp_path, capsys, name, fragments):
    garbage(run / name)
    before = digest(run)
    refused(capsys, "export", run, "--out", tmp_path / "out", names=fragments)
    assert digest(run) == before and not (tmp_path / "out").exists() and leftovers(tmp_path / "out") == []


def test_a_damaged_snapshot_keeps_the_previous_export(run, tmp_path, capsys):
    out = tmp_path / "out"
    export_run(RunStore(run), out, step=4, report=False)
    before = digest(out)
    garbage(run / "snapshots" / "step_00008" / "weight.npy")
    refused(capsys, "export", run, "--out", out, names="step_00008")
    assert digest(out) == before and leftovers(out) == []


@pytest.mark.parametrize("content, fragment", [
    ("{\"method\": \"aml-kd\", \"seed\"", "is damaged"),
    ("", "is damaged"),
    ("[1, 2]", "not a summary"),
    ("{\"student_test_accuracy\": \"abc\"}", "field 'student_test_accuracy' is \"abc\", not a number"),
    ("\xff\xfe garbage", "is damaged"),
])
def test_compare_of_a_damaged_summary_names_it_and_how_to_rewrite_it(run, tiny_moons_run, capsys, content,
                                                                     fragment):
    (run / "summary.json").write_bytes(content.encode("latin-1"))
    before = digest(run)
    refused(capsys, "compare", tiny_moons_run, run, names=["summary.json", fragment, f"resume {run}"])
    assert digest(run) == before


@pytest.mark.parametrize("command", ["compare", "export"])
@pytest.mark.parametrize("content, fragment", [
    ("null", "not a valid run config"),
    ('{"graph": "abc"}', "'graph' must be an object"),
    ("{bad", "is unreadable"),
])
def test_a_damaged_config_is_one_line_for_compare_and_export(run, tmp_path, capsys, command, content, fragment):
    (run / "summary.json").unlink()  # an unfinished run: compare reads its config
    (run / "config.json").write_text(content)
    before = digest(run)
    extra = ["--out", tmp_path / "out"] if command == "export" else []
    refused(capsys, command, run, *extra, names=["config.json", fragment])
    assert digest(run) == before and not (tmp_path / "out").exists() and leftovers(tmp_path / "out") == []


def test_compare_of_an_unfinished_run_skips_metrics_lines_that_are_not_objects(run, capsys):
    (run / "summary.json").unlink()
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write("5\n")
    capsys.readouterr()
    assert main(["compare", str(run), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["runs"]
    assert row["method"] == "AML-KD (unfinished)" and row["refined_label_precision"] is not None


def test_import_into_a_run_with_a_damaged_dataset_writes_nothing(run, tmp_path, capsys):
    (run / "reviews.sqlite").unlink()
    for extra in ("reviews.sqlite-wal", "reviews.sqlite-shm"):
        (run / extra).unlink(missing_ok=True)
    garbage(run / "dataset.npz")
    before = digest(run)
    path = tmp_path / "d.csv"
    path.write_text("index,decision,label,reviewer\n1,relabel,class 1,ann\n")
    refused(capsys, "import-decisions", run, path, names=["dataset.npz", "is damaged"])
    assert digest(run) == before and not (run / "reviews.sqlite").exists()


# ---------------------------------------------------------------- decision imports: values checked first
@pytest.mark.parametrize("column, value, fragment", [
    ("step", "1e400", "step '1e400' is not a finite number"),
    ("step", "nan", "step 'nan' is not a finite number"),
    ("step", "-1", "step '-1' is not a whole number"),
    ("step", "2.5", "step '2.5' is not a whole number"),
    ("step", "seven", "step 'seven' is not a number"),
    ("time", "nan", "time 'nan' is not a finite number"),
    ("time", "inf", "time 'inf' is not a finite number"),
    ("time", "-5", "time '-5' is not seconds since 1970"),
    ("time", "1e12", "time '1e12' is not seconds since 1970"),
    ("blind", "maybe", "blind 'maybe' is not a yes/no flag"),
    ("index", "\u00b2", "unknown sample index '\u00b2'"),
    ("label", "\u00b9", "unknown class '\u00b9'"),
    ("reviewer", "r" * 5000, "longer than 200 characters"),
])
def test_bad_import_values_are_refused_before_anything_is_written(run, tmp_path, capsys, column, value, fragment):
    for name in ("reviews.sqlite", "reviews.sqlite-wal", "reviews.sqlite-shm"):
        (run / name).unlink(missing_ok=True)
    row = {"index": "1", "decision": "relabel", "label": "class 1", "reviewer": "ann", "step": "2",
           "time": "1700000000", "blind": "0", column: value}
    path = tmp_path / "decisions.csv"
    pd.DataFrame([row]).to_csv(path, index=False)
    before = digest(run)
    err = refused(capsys, "import-decisions", run, path, names=["decisions.csv", "row 1", "nothing imported",
                                                                fragment])
    assert len(err) < 600
    assert digest(run) == before and not (run / "reviews.sqlite").exists()  # no empty database left


def test_an_import_naming_a_5_mb_key_repeats_200_characters_of_it(run, tmp_path, capsys):
    path = tmp_path / "huge.csv"
    path.write_text("sample,decision,reviewer\n" + "k" * 5_000_000 + ",outlier,ann\n")
    before = digest(run)
    err = refused(capsys, "import-decisions", run, path, names=["unknown sample", "(5,000,000 characters)"])
    assert len(err) < 800 and digest(run) == before


# ---------------------------------------------------------------- inputs: datasets, label files, noise
@pytest.mark.parametrize("spec, fragments", [
    ("digits?foo=1", ["dataset 'digits' takes no options", "'foo'", "valid: digits"]),
    ("moons?nn=5", ["unknown option 'nn' for dataset 'moons'", "valid: n, spread"]),
    ("moons?classes=3", ["unknown option 'classes'", "valid: n, spread"]),
    ("blobs?n=100&sigma=2", ["unknown option 'sigma'", "valid: n, spread, classes"]),
    ("moons?n=100&n=200", ["option 'n' is given twice"]),
    ("digits:/data/x", ["dataset 'digits' takes no path", "'digits:/data/x'"]),
    ("nosuchset" + "x" * 5000, ["unknown dataset", "(5,009 characters)"]),
])
def test_unknown_dataset_options_are_refused_naming_the_valid_ones(tmp_path, capsys, spec, fragments):
    err = refused(capsys, "run", "--dataset", spec, "--out", tmp_path / "r", *TINY, names=fragments)
    assert len(err) < 600 and not (tmp_path / "r").exists()


def moons_labels(tmp_path: Path, keys=None) -> Path:
    dataset = load_dataset("moons")
    path = tmp_path / "labels.csv"
    keys = list(dataset.keys()) if keys is None else keys
    pd.DataFrame({"path": keys, "label": ["class 0"] * len(keys)}).to_csv(path, index=False)
    return path


def test_labels_with_synthetic_noise_are_refused(tmp_path, capsys):
    labels = moons_labels(tmp_path)
    refused(capsys, "run", "--dataset", "moons", "--labels", labels, "--noise", "symmetric:0.4", "--out",
            tmp_path / "r", *TINY, names=[str(labels), "--noise 'symmetric:0.4'", "never added on top"])
    assert not (tmp_path / "r").exists()


def test_labels_without_noise_make_a_run_whose_noise_is_none(tmp_path):
    labels = moons_labels(tmp_path)
    args = build_parser().parse_args(["run", "--dataset", "moons", "--labels", str(labels), "--out", "x"])
    assert config_from_args(args).noise == "none"
    args = build_parser().parse_args(["run", "--dataset", "moons", "--out", "x"])
    assert config_from_args(args).noise == "symmetric:0.4"


# --noise-rate known with a label file: tests/test_cli.py (the one rule, on every noise kind)


def test_a_5_mb_unmatched_label_key_is_cut_short(tmp_path, capsys):
    keys = [str(i) for i in range(600)]
    keys[7] = "z" * 5_000_000
    labels = moons_labels(tmp_path, keys)
    err = refused(capsys, "run", "--dataset", "moons", "--labels", labels, "--out", tmp_path / "r", *TINY,
                  names=["match no image", "(5,000,000 characters)", "labels.csv"])
    assert len(err) < 1000


def test_a_label_file_that_is_not_utf8_is_named(tmp_path, capsys):
    path = tmp_path / "latin.csv"
    path.write_bytes("path,label\n0,caf\u00e9\n".encode("latin-1"))
    refused(capsys, "run", "--dataset", "moons", "--labels", path, "--out", tmp_path / "r", *TINY,
            names=["latin.csv", "is not UTF-8 text", "byte 0xe9"])


def image_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (root / "train" / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8)).save(root / "train" / name / f"{i}.png")
    return root


@pytest.mark.parametrize("old, new, shown_name", [
    (b"train/cat/0.png", b"train/cat/caf\xe9.png", "train/cat/caf\\udce9.png"),
    (b"train/dog", b"train/d\xf6g", "train/d\\udcf6g/"),
])
def test_file_and_class_names_that_are_not_utf8_are_refused_at_load(tmp_path, capsys, old, new, shown_name):
    root = image_folder(tmp_path / "pets")
    os.rename(os.fsencode(root) + b"/" + old, os.fsencode(root) + b"/" + new)
    refused(capsys, "run", "--dataset", f"folder:{root}", "--out", tmp_path / "r", *TINY,
            names=["are not UTF-8", shown_name, "rename them"])
    assert not (tmp_path / "r").exists()


def test_a_long_noise_spec_is_cut_short(tmp_path, capsys):
    err = refused(capsys, "run", "--noise", "symmetric:" + "x" * 10_000, "--out", tmp_path / "r", *TINY,
                  names=["needs a rate", "(10,010 characters)"])
    assert len(err) < 600


# ---------------------------------------------------------------- zip uploads whose entries collide
def zip_of(entries: list[tuple[str, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries:
            if data is None:
                archive.writestr(zipfile.ZipInfo(name), b"")  # a folder entry
            else:
                archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.filterwarnings("ignore:Duplicate name")
@pytest.mark.parametrize("entries, fragment", [
    ([("x", b"file"), ("x/", None)], "'x' (a file) and 'x/' (needing a folder 'x/') collide"),
    ([("x/", None), ("x", b"file")], "'x' (a file) and 'x/' (needing a folder 'x/') collide"),
    ([("a/x", b"1"), ("a/x/y.png", b"2")], "'a/x' (a file) and 'a/x/y.png' (needing a folder 'a/x/')"),
    ([("a.png", b"1"), ("a.png", b"2")], "'a.png' and 'a.png' unpack to the same file"),
    ([("./a.png", b"1"), ("a.png", b"2")], "'./a.png' and 'a.png' unpack to the same file"),
])
def test_colliding_zip_entries_are_refused_and_nothing_is_unpacked(tmp_path, entries, fragment):
    from app.byod import unpack_upload

    with pytest.raises(UserError, match="collide|same file") as refusal:
        extract_zip(io.BytesIO(zip_of(entries)), tmp_path / "target")
    assert fragment in str(refusal.value) and "\n" not in str(refusal.value)
    assert list(tmp_path.iterdir()) == []
    runs = tmp_path / "runs"
    runs.mkdir()
    with pytest.raises(UserError, match="'c.zip' was refused and nothing was unpacked"):
        unpack_upload("c.zip", zip_of(entries), runs)
    assert list(runs.rglob("*")) == []  # no upload folder, no staging folder


# ---------------------------------------------------------------- Setup: no file contents through the preview
def test_the_label_preview_shows_nothing_of_a_file_that_is_not_a_label_table(tmp_path):
    dataset = load_dataset("moons")
    secret = tmp_path / "passwd"
    secret.write_text("".join(f"{SECRET}{i}\n" for i in range(5)))
    preview = label_table_preview(dataset, secret)
    assert not preview["ok"] and preview["head"] is None and preview["columns"] is None
    assert "secret-password" not in preview["error"] and "bin/bash" not in preview["error"]
    assert "is not a label table of 'moons'" in preview["error"] and "contents are not shown" in preview["error"]
    binary = tmp_path / "binary"
    binary.write_bytes(b"\x7fELF\x02\x01" + bytes(range(256)))
    preview = label_table_preview(dataset, binary)
    assert not preview["ok"] and preview["head"] is None and "ELF" not in preview["error"]
    good = moons_labels(tmp_path)
    preview = label_table_preview(dataset, good)
    assert preview["ok"] and preview["key_columns"] == ["path"] and len(preview["head"]) == 8


def test_the_setup_page_shows_one_line_and_no_rows_for_a_file_that_is_not_a_label_table(app, tmp_path):
    secret = tmp_path / "notes.csv"
    secret.write_text("user,password\n" + "".join(f"{SECRET}{i},hunter{i}\n" for i in range(5)))
    app.radio(key="setup-digits-symmetric-40-labels_source").set_value("path").run()
    app.text_input(key="setup-digits-symmetric-40-labels_path").set_value(str(secret)).run()
    assert not app.exception
    (message,) = [e.value for e in app.error]
    assert "is not a label table" in message and "hunter" not in message and "password" not in message
    assert not app.dataframe
    page = " ".join(str(getattr(e, "value", "")) for e in app.main)
    assert "hunter" not in page and "secret-password" not in page
    assert app.button(key="setup-create").disabled


# ---------------------------------------------------------------- the real exit path: python -m engine
def test_the_real_cli_exits_2_in_one_line_for_a_damaged_summary(run):
    (run / "summary.json").write_text("{not json")
    before = digest(run)
    one_line_exit_2(python_m_engine("compare", run), "summary.json")
    assert digest(run) == before
