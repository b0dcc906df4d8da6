"""bench/noise_sweep.py's bookkeeping: --add-ce trains only the missing CE runs asked for and keeps every row."""

import importlib.util
import json
from pathlib import Path

import pytest


@pytest.fixture
def sweep():
    spec = importlib.util.spec_from_file_location("noise_sweep", Path(__file__).resolve().parents[1] / "bench" /
                                                  "noise_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(noise: str, seed: int, ce=None) -> dict:
    numbers = ("given", "ours_stage0", "ours_end", "authors_stage0", "authors_end", "rate_est", "rate_low",
               "rate_high", "rate_true", "prec_est", "prec_low", "prec_high", "student_ours", "student_authors",
               "lowest_ours", "lowest_authors")
    return {"dataset": "digits", "noise": noise, "seed": seed, **dict.fromkeys(numbers, 0.9), "student_ce": ce,
            "seconds": 10.0}


def test_add_ce_fills_in_only_the_missing_ce_runs_asked_for(sweep, tmp_path, monkeypatch, capsys):
    rows = [_row("symmetric:0.2", 0), _row("symmetric:0.4", 0, 0.91), _row("instance:0.4", 1),
            _row("symmetric:0.4", 2)]
    results = tmp_path / "rows.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    trained = []

    def fake_train(out, config, audit_size=0):
        trained.append((out.name, config.method, config.noise, config.seed))
        return {"student_test_accuracy": 0.5 + config.seed / 10, "wall_seconds": 2.0}

    monkeypatch.setattr(sweep, "train", fake_train)
    assert sweep.main(["--add-ce", "--results", str(results), "--root", str(tmp_path), "--kinds", "symmetric",
                       "--seeds", "0", "2", "--rates", "0.2", "0.4"]) == 0
    assert trained == [("digits-symmetric:0.2-0-ce", "ce", "symmetric:0.2", 0),
                       ("digits-symmetric:0.4-2-ce", "ce", "symmetric:0.4", 2)]
    after = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["student_ce"] for r in after] == [0.5, 0.91, None, 0.7]  # instance seed 1 was not asked for
    assert [r["seconds"] for r in after] == [12.0, 10.0, 10.0, 12.0]
    printed = capsys.readouterr().out.splitlines()
    row = next(line for line in printed if line.startswith("| digits | symmetric:0.4 | 2 |"))
    assert "| 0.900 / 0.900 / 0.700 |" in row  # students ours / authors' / CE
    assert sweep.add_ce(results, tmp_path, lambda r: True) == 1 and trained[-1][0] == "digits-instance:0.4-1-ce"
