"""Noise sweep: does the method do no harm, and does it know how well it went without the truth?

    .venv/bin/python bench/noise_sweep.py [--datasets digits] [--seeds 0] [--kinds symmetric instance]
        [--rates 0 0.05 0.1 0.2 0.4] [--threads 1] [--results FILE] [--table-only] [--short] [--no-ce]
        [--teachers-from ROOT] [--audit N] [--add-ce]

Per dataset, noise and seed it trains three runs, one after the other: AML-KD
with our calibrated relabel rule (default), AML-KD with the authors' rule
(``--relabel-rule authors``, the same teacher loaded from the first run's
checkpoint), and CE on the noisy labels. Each finished row is appended to
``--results`` (JSON lines), so an interrupted sweep keeps its rows and
``--table-only`` prints them again. cifar10-small needs
``../shared/data/cifar10-small`` (or ``--cifar DIR``); without it its rows
are skipped with one line. ``--short`` trains cifar10-small on a short
schedule (teacher 5 epochs, student 1 + 3 + 1, the rate ramp 1 epoch) for a
busy CPU; ``--no-ce`` leaves out the CE run (its column shows -; ``--add-ce`` later
trains only the CE runs of the rows in ``--results`` that have none, of the
datasets, kinds, rates and seeds asked, and fills their column in);
``--teachers-from ROOT`` loads each row's teacher from the checkpoint of an
earlier sweep's run of the same row under ROOT (the teacher phase does not
depend on the relabel rule, so a rule change is measured without training
the teacher again). ``--audit N``: before our run trains, a reviewer who is
always right (the truth) audits the first N samples of its audit order
(engine.method.audit), as the Review page's audit would; the audit's counts
of the rate and of the final labels' precision are printed in a second table
with the goals judged on them too, beside the true precision of the samples
outside the audit (the gate chose on the audited ones). The authors' run has
no audit.

Columns: given precision; refined precision with our rule and the authors',
after stage 0 and at the end; noise-rate estimate against the true rate;
estimated against true refined precision (ours); student test accuracy of
ours, the authors' and CE, and the lowest student test accuracy after the
warm-up (ours / authors'). Goals, every row:

- no harm: refined (ours, end) >= given;
- at 20-40% noise: refined ours >= authors' - 0.005;
- |noise-rate estimate - true| <= 0.03;
- |estimated - true refined precision| <= 0.03.

An estimate marked ``vague`` could not tell noise from classes the teacher's
features mix (``estimate_informative`` false, engine.method.confident): its
rate is the middle of [0, upper end] and our rule kept the given labels. One
marked ``confusion`` could, but its rate did not rise above the share of
samples whose class the teacher's features leave open
(``estimate_confused``, engine.method.confident.beyond_confusion): no noise
found, the rate again the middle of [0, upper end], the labels kept.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from engine.method.audit import audit_of, audit_order  # noqa: E402
from engine.method.config import RunConfig, defaults_for_teacher  # noqa: E402
from engine.rundir.review import AuditStore  # noqa: E402
from engine.rundir.store import RunStore  # noqa: E402
from engine.steps.run import Run  # noqa: E402

DATASETS = {"digits": "digits", "cifar10-small": "folder:{cifar}"}
CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-small"
SHORT = {"teacher_epochs": 5, "warmup_epochs": 1, "refine_epochs": 3, "mutual_epochs": 1}  # --short, cifar10-small
TOLERANCE = 0.03
MARGIN = 0.005


def train(out: Path, config: RunConfig, audit_size: int = 0) -> dict:
    """Train one run to its end; with ``audit_size``, first audit that many samples (simulated, below)."""
    run = Run.create(out, config, force=True)
    if audit_size:
        simulate_audit(run, audit_size)
    run.run_until(None)
    store = RunStore(out)
    metrics = store.metrics()
    stage0 = next((m for m in metrics if m["phase"] == "propagate"), {})
    after = [m["student_test_accuracy"] for m in metrics if m["phase"] in ("refine", "mutual", "student")
             and m.get("student_test_accuracy") is not None]
    return {**store.summary(), "stage0_precision": stage0.get("refined_label_precision"),
            "lowest_after_warmup": min(after) if after else None, **audit_columns(run, audit_size)}


def simulate_audit(run: Run, size: int) -> None:
    """A reviewer who is always right audits the first ``size`` samples of the run's audit order
    (engine.method.audit.audit_order): the app's audit, with the truth as the reviewer's answer."""
    order = audit_order(len(run.given), run.config.seed)[:size]
    AuditStore(run.store.path, run.dataset.num_classes).record_many(
        [{"sample": int(i), "decision": "relabel", "reviewer": "bench-truth", "label": int(run.true[i])}
         for i in order], once=True)


def audit_columns(run: Run, size: int) -> dict:
    """The audit's count of the rate and of the final labels' precision, and the truth outside the audit."""
    if not size:
        return {}
    labels, left_out = AuditStore(run.store.path).audit_labels(len(run.given))
    audit = audit_of(labels, run.given, left_out)
    rate, precision = audit.rate(), audit.precision(run.state.refined)
    outside = labels == -1
    return {"audit_size": audit.size, "audit_rate": rate.value, "audit_rate_low": rate.low,
            "audit_rate_high": rate.high, "audit_prec": precision.value, "audit_prec_low": precision.low,
            "audit_prec_high": precision.high,
            "prec_true_outside": float((run.state.refined[outside] == run.true[outside]).mean())}


def base_config(dataset: str, noise: str, seed: int, cifar: Path = CIFAR, short: bool = False) -> RunConfig:
    config = RunConfig(dataset=DATASETS[dataset].format(cifar=cifar), noise=noise, seed=seed)
    if dataset == "cifar10-small":
        schedule, train_cfg = defaults_for_teacher("cifar-small-teacher")
        if short:
            schedule, train_cfg = replace(schedule, **SHORT), replace(train_cfg, lr_ramp=1, start_ramp=1)
        config = config.with_changes(teacher="cifar-small-teacher", student="cifar-small-student",
                                     schedule=schedule, train=train_cfg)
    return config


def sweep_row(dataset: str, noise: str, seed: int, root: Path, cifar: Path = CIFAR, short: bool = False,
              with_ce: bool = True, teachers_from: Path | None = None, audit_size: int = 0) -> dict:
    base = base_config(dataset, noise, seed, cifar, short)
    if teachers_from is not None:
        base = base.with_changes(
            teacher_checkpoint=str(teachers_from / f"{dataset}-{noise}-{seed}-ours" / "checkpoint.pt"))
    ours = train(root / f"{dataset}-{noise}-{seed}-ours", base, audit_size)
    authors = train(root / f"{dataset}-{noise}-{seed}-authors", base.with_changes(
        relabel_rule="authors", teacher_checkpoint=str(root / f"{dataset}-{noise}-{seed}-ours" / "checkpoint.pt")))
    ce = train_ce(root, dataset, noise, seed, base) if with_ce else {}
    return {"dataset": dataset, "noise": noise, "seed": seed, "given": ours["given_label_precision"],
            "ours_stage0": ours["stage0_precision"], "ours_end": ours["refined_label_precision"],
            "authors_stage0": authors["stage0_precision"], "authors_end": authors["refined_label_precision"],
            "rate_est": ours["noise_rate_estimate"], "rate_low": ours["noise_rate_low"],
            "rate_high": ours["noise_rate_high"], "rate_true": ours["noise_rate_true"],
            "informative": ours.get("estimate_informative"),
            "confused": ours.get("estimate_confused"),
            "prec_est": ours["refined_precision_estimate"], "prec_low": ours["refined_precision_low"],
            "prec_high": ours["refined_precision_high"], "student_ours": ours["student_test_accuracy"],
            "student_authors": authors["student_test_accuracy"], "student_ce": ce.get("student_test_accuracy"),
            "awe_auroc_ours": ours["awe_auroc"], "lowest_ours": ours["lowest_after_warmup"],
            "lowest_authors": authors["lowest_after_warmup"],
            "seconds": ours["wall_seconds"] + authors["wall_seconds"] + ce.get("wall_seconds", 0.0),
            "schedule": "short" if short and dataset == "cifar10-small" else "default",
            "teacher": "loaded" if teachers_from is not None else "trained",
            **{k: ours[k] for k in ("audit_size", "audit_rate", "audit_rate_low", "audit_rate_high", "audit_prec",
                                    "audit_prec_low", "audit_prec_high", "prec_true_outside") if k in ours}}


def train_ce(root: Path, dataset: str, noise: str, seed: int, base: RunConfig) -> dict:
    """The row's CE run: the student alone on the noisy labels, with the row's schedule."""
    return train(root / f"{dataset}-{noise}-{seed}-ce", base.with_changes(method="ce"))


def add_ce(results: Path, root: Path, wanted, cifar: Path = CIFAR) -> int:
    """Train the CE run of every row in ``results`` without one for which ``wanted(row)`` holds, and write its
    student's test accuracy into the row (the file rewritten after each, so an interruption keeps what is done).
    Returns the number of runs trained."""
    rows, trained = _read(results), 0
    for row in rows:
        if row.get("student_ce") is not None or not wanted(row):
            continue
        config = base_config(row["dataset"], row["noise"], row["seed"], cifar, row.get("schedule") == "short")
        ce = train_ce(root, row["dataset"], row["noise"], row["seed"], config)
        row["student_ce"], row["seconds"] = ce["student_test_accuracy"], row["seconds"] + ce["wall_seconds"]
        results.with_suffix(".tmp").write_text("".join(json.dumps(r) + "\n" for r in rows))
        results.with_suffix(".tmp").replace(results)
        trained += 1
        print(f"  {row['dataset']} {row['noise']} seed {row['seed']}: CE {row['student_ce']:.3f} "
              f"({ce['wall_seconds']:.0f} s)", flush=True)
    return trained


def noise_level(noise: str) -> float:
    return float(noise.partition(":")[2] or 0.0)


def goals(row: dict) -> dict[str, bool]:
    out = {"no harm": row["ours_end"] >= row["given"],
           "r error": abs(row["rate_est"] - row["rate_true"]) <= TOLERANCE,
           "prec error": abs(row["prec_est"] - row["ours_end"]) <= TOLERANCE}
    if row.get("audit_size"):  # the audit's counts, judged by the same goals
        out["r error (audit)"] = abs(row["audit_rate"] - row["rate_true"]) <= TOLERANCE
        out["prec error (audit)"] = abs(row["audit_prec"] - row["ours_end"]) <= TOLERANCE
    if noise_level(row["noise"]) >= 0.2:
        out[">= authors"] = row["ours_end"] >= row["authors_end"] - MARGIN
    return out


HEADER = ("| data | noise | seed | given | ours s0 | ours end | authors s0 | authors end | r est [90%] | r true "
          "| prec est [90%] | prec true | student ours / authors / CE | lowest after warm-up ours / authors "
          "| AWE AUROC ours | goals missed |")


AUDIT_HEADER = ("| data | noise | seed | audited | given | ours end (truth) | ours end, outside the audit (truth) | "
                "authors end | r audit [90%] | r true | prec audit [90%] | student ours / authors | "
                "goals missed (the rate and precision as the audit counts them) |")


def _markdown(header: str, rows: list[dict], cells, skip: tuple[str, ...] = ()) -> str:
    """A Markdown table: ``cells(row)`` gives a row's cells, the goals it misses (but those in ``skip``) end it."""
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in rows:
        missed = [name for name, ok in goals(r).items() if not ok and name not in skip]
        lines.append("| " + " | ".join([*cells(r), ", ".join(missed) or "-"]) + " |")
    return "\n".join(lines)


def audit_table(rows: list[dict]) -> str:
    """The rows trained with a simulated audit (``--audit``): its counts beside the truth."""
    return _markdown(AUDIT_HEADER, rows, lambda r: [
        r["dataset"], r["noise"], str(r["seed"]), str(r["audit_size"]), f"{r['given']:.3f}", f"{r['ours_end']:.3f}",
        f"{r['prec_true_outside']:.3f}", f"{r['authors_end']:.3f}",
        f"{r['audit_rate']:.3f} [{r['audit_rate_low']:.3f}, {r['audit_rate_high']:.3f}]", f"{r['rate_true']:.3f}",
        f"{r['audit_prec']:.3f} [{r['audit_prec_low']:.3f}, {r['audit_prec_high']:.3f}]",
        f"{r['student_ours']:.3f} / {r['student_authors']:.3f}"], skip=("r error", "prec error"))


def table(rows: list[dict]) -> str:
    return _markdown(HEADER, rows, lambda r: [
        r["dataset"], r["noise"], str(r["seed"]), f"{r['given']:.3f}", f"{r['ours_stage0']:.3f}",
        f"{r['ours_end']:.3f}", f"{r['authors_stage0']:.3f}", f"{r['authors_end']:.3f}",
        f"{r['rate_est']:.3f} [{r['rate_low']:.3f}, {r['rate_high']:.3f}]{_vague(r)}", f"{r['rate_true']:.3f}",
        f"{r['prec_est']:.3f} [{r['prec_low']:.3f}, {r['prec_high']:.3f}]", f"{r['ours_end']:.3f}",
        f"{r['student_ours']:.3f} / {r['student_authors']:.3f} / {_number(r['student_ce'])}",
        f"{r['lowest_ours']:.3f} / {r['lowest_authors']:.3f}", _number(r.get("awe_auroc_ours"))])


def _vague(row: dict) -> str:
    if row.get("informative") is False:
        return " vague"
    return " confusion" if row.get("confused") else ""


def _number(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def summary(rows: list[dict]) -> str:
    counts: dict[str, list[int]] = {}
    for r in rows:
        for name, ok in goals(r).items():
            met = counts.setdefault(name, [0, 0])
            met[0] += ok
            met[1] += 1
    lines = [f"- {name}: met in {met} of {total} rows" for name, (met, total) in counts.items()]
    vague = sum(r.get("informative") is False for r in rows)
    if vague:
        lines.append(f"- estimate vague (rate and precision only as intervals; without an audit the labels kept) in "
                     f"{vague} of {len(rows)} rows")
    confused = sum(bool(r.get("confused")) for r in rows)
    if confused:
        lines.append(f"- rate within the teacher's own confusion (no noise found: the rate an interval from 0, the "
                     f"labels kept) in {confused} of {len(rows)} rows")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["digits"], choices=sorted(DATASETS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--kinds", nargs="+", default=["symmetric", "instance"])
    p.add_argument("--rates", nargs="+", type=float, default=[0.0, 0.05, 0.1, 0.2, 0.4])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--root", default="/tmp/noise_sweep", help="where the runs go")
    p.add_argument("--results", default="/tmp/noise_sweep.jsonl", help="rows, one JSON line each (appended)")
    p.add_argument("--table-only", action="store_true", help="print the rows in --results, train nothing")
    p.add_argument("--cifar", default=str(CIFAR), help="cifar10-small's folder (train/ and test/ image folders)")
    p.add_argument("--short", action="store_true", help="cifar10-small on a short schedule (busy CPU)")
    p.add_argument("--no-ce", action="store_true", help="leave out the CE runs")
    p.add_argument("--add-ce", action="store_true",
                   help="train only the missing CE runs of the rows in --results (those --datasets, --kinds, "
                        "--rates and --seeds name) and fill their column in")
    p.add_argument("--audit", type=int, default=0, metavar="N",
                   help="our runs first audit N random samples, the truth as the reviewer (the authors' do not)")
    p.add_argument("--teachers-from", default=None,
                   help="load each row's teacher from ROOT/<dataset>-<noise>-<seed>-ours/checkpoint.pt")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    results = Path(a.results)
    if a.add_ce and not a.table_only:
        add_ce(results, Path(a.root), lambda r: (r["dataset"] in a.datasets and r["seed"] in a.seeds and
                                                 r["noise"].split(":")[0] in a.kinds and
                                                 any(abs(noise_level(r["noise"]) - x) < 1e-9 for x in a.rates)),
               Path(a.cifar))
    elif not a.table_only:
        done = {(r["dataset"], r["noise"], r["seed"]) for r in _read(results)}
        for dataset in a.datasets:
            if dataset == "cifar10-small" and not (Path(a.cifar) / "train").is_dir():
                print(f"  cifar10-small skipped: no {Path(a.cifar) / 'train'} (give --cifar DIR)", flush=True)
                continue
            for kind in a.kinds:
                for rate in a.rates:
                    for seed in a.seeds:
                        noise = f"{kind}:{rate:g}"
                        if (dataset, noise, seed) in done:
                            continue
                        row = sweep_row(dataset, noise, seed, Path(a.root), Path(a.cifar), a.short, not a.no_ce,
                                        Path(a.teachers_from) if a.teachers_from else None, a.audit)
                        with results.open("a") as f:
                            f.write(json.dumps(row) + "\n")
                        print(f"  {dataset} {noise} seed {seed}: given {row['given']:.3f} ours {row['ours_end']:.3f}"
                              f" authors {row['authors_end']:.3f} ({row['seconds']:.0f} s)", flush=True)
    rows = sorted(_read(results), key=lambda r: (r["dataset"], r["noise"].split(":")[0], noise_level(r["noise"]),
                                                 r["seed"]))
    print(table(rows))
    audited = [r for r in rows if r.get("audit_size")]
    if audited:
        print("\nWith a random audit (simulated: the truth as the reviewer):")
        print(audit_table(audited))
    print("\nGoals:")
    print(summary(rows))
    return 0


def _read(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


if __name__ == "__main__":
    sys.exit(main())
