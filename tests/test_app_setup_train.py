"""The Setup and Train pages in Streamlit's AppTest (no browser), and the pure
helpers behind them (``app.settings``).

The worker trains in a background thread of this process; the tests wait
for it (``Worker.wait``) and then rerun the script, as the page's refresh does.
"""

import base64
import json
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.settings import (SetupValues, default_preset, load_presets, phase_plan, run_rows, settings_problems,
                          suggest_run_name, validate_run_name)
from app.worker import FAIL_ENV, get_worker
from engine.method.config import RunConfig, ScheduleConfig
from engine.errors import UserError
from engine.steps.run import Run
from engine.rundir.store import RunStore

APP = str(Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py")
WAIT = 120
DEFAULT_KEY = "setup-digits-symmetric-40-"  # widget keys of the custom form started from the default preset


def _length(values) -> int:
    """Length of a plotly JSON array: a list, or a typed array ``{"dtype", "bdata"}`` (plotly >= 6)."""
    if values is None:
        return 0
    if isinstance(values, dict):
        return len(np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"])))
    return len(values)


def _chart_points(at) -> dict[str, dict[str, int]]:
    """Points per trace of every plotly chart on the page, keyed by chart title."""
    charts = {}
    for element in at.get("plotly_chart"):
        spec = json.loads(element.proto.spec)
        title = (spec["layout"].get("title") or {}).get("text", "timeline")
        charts[title] = {trace["name"]: _length(trace.get("x")) for trace in spec["data"]}
    return charts


def _press(at, key: str):
    """Click a Train button, wait for the worker, rerun like the page's refresh."""
    at.button(key=key).click().run()
    assert not at.exception
    assert get_worker(at.session_state["run_dir"]).wait(WAIT)
    return at.run()


def _errors(at) -> list[str]:
    return [e.value for e in at.error]


# ---------------------------------------------------------------- pages
def test_default_preset_creates_the_run_and_two_steps_draw_the_charts(app, runs_dir):
    app.button(key="preset-create-digits-symmetric-40").click().run()
    assert not app.exception
    run_dir = Path(app.session_state["run_dir"])
    assert run_dir.parent == runs_dir and run_dir.name == "digits-symmetric40-aml-kd-s0"
    assert RunStore(run_dir).config() == default_preset().config == RunConfig()
    assert app.title[0].value == f"Train · {run_dir.name}"
    assert not app.button(key="train-step").disabled
    assert "Train the teacher for one epoch" in " ".join(m.value for m in app.markdown)

    _press(app, "train-step")
    _press(app, "train-step")
    status = RunStore(run_dir).status()
    assert (status["step"], status["phase"], status["state"]) == (2, "teacher", "idle")
    charts = _chart_points(app)
    assert charts["Label precision"] == {"refined labels": 2, "given labels": 2, "refined, estimated": 0}  # teacher steps: no estimate yet
    assert charts["Test accuracy"] == {"teacher": 2, "student": 0}
    assert charts["Training losses"]["teacher CE"] == 2
    (settings,) = [e for e in app.expander if e.label == "All settings of this run"]
    assert json.loads(settings.json[0].value) == json.loads(RunStore(run_dir).config().to_json())
    assert charts["Relabels"] == {"wrong → right": 2, "right → wrong": 2}
    assert charts["Noise detection"] == {"precision": 0, "recall": 2}
    assert charts["Clean vs noisy"] == {"AWE weight AUROC": 0, "easy-set precision": 0}
    timeline = charts["timeline"]
    assert len(timeline) == 10  # five phases, done and to do
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Step"] == f"2 / {status['total_steps']}" and metrics["Phase"] == "teacher"
    assert not _errors(app)


def test_while_a_step_trains_the_page_shows_progress_and_keeps_its_charts(app, runs_dir, monkeypatch):
    release, started = threading.Event(), threading.Event()
    original = Run.step

    def held_step(self):
        started.set()
        assert release.wait(WAIT)
        return original(self)

    monkeypatch.setattr(Run, "step", held_step)
    app.button(key="preset-create-moons").click().run()
    worker = get_worker(app.session_state["run_dir"])
    try:
        app.button(key="train-step").click().run()
        assert started.wait(WAIT) and worker.busy
        app.run()  # the page as the next refresh draws it, mid-step
        assert not app.exception
        assert app.button(key="train-step").disabled and not app.button(key="train-pause").disabled
        assert "Training one step: step 1 (teacher)" in app.get("progress")[0].proto.text
        assert {m.label: m.value for m in app.metric}["Step"].startswith("0 / ")
        assert len(_chart_points(app)) == 7  # the timeline and the six charts stay on the page while live
    finally:
        release.set()
    assert worker.wait(WAIT)
    app.run()
    assert not app.button(key="train-step").disabled and app.button(key="train-pause").disabled
    assert not app.get("progress")
    assert {m.label: m.value for m in app.metric}["Step"].startswith("1 / ")
    assert _chart_points(app)["Test accuracy"] == {"teacher": 1, "student": 0}


def test_run_to_end_of_phase_then_reset(app, runs_dir):
    app.button(key="preset-create-moons").click().run()
    run_dir = Path(app.session_state["run_dir"])
    store = RunStore(run_dir)
    _press(app, "train-phase")
    status = store.status()
    assert status["phase"] == "propagate"
    teacher_steps = status["step"]
    assert 1 <= teacher_steps <= 60 and [m["phase"] for m in store.metrics()] == ["teacher"] * teacher_steps
    assert _chart_points(app)["Test accuracy"]["teacher"] == teacher_steps
    _press(app, "train-reset")
    assert store.status()["step"] == 0 and store.steps() == []
    assert _chart_points(app)["Test accuracy"] == {"teacher": 0, "student": 0}


def test_a_failing_step_shows_what_to_do_and_keeps_the_last_good_step(app, runs_dir, monkeypatch):
    app.button(key="preset-create-moons").click().run()
    run_dir = Path(app.session_state["run_dir"])
    monkeypatch.setenv(FAIL_ENV, "2")
    _press(app, "train-step")
    assert not _errors(app)
    _press(app, "train-step")
    assert not app.exception, "the app must stay up"
    (message,) = _errors(app)
    assert message.startswith("**Step 2 (teacher) failed: InjectedFault")
    assert "kept at step 1" in message and "Press **Step**" in message
    store = RunStore(run_dir)
    assert store.status()["state"] == "error" and store.steps() == [1]
    assert _chart_points(app)["Test accuracy"]["teacher"] == 1
    assert not app.button(key="train-step").disabled

    monkeypatch.delenv(FAIL_ENV)
    _press(app, "train-step")
    assert not _errors(app)
    assert store.status()["step"] == 2 and store.status()["state"] == "idle"


def test_impossible_settings_are_explained_inline_and_block_create(app, runs_dir):
    app.number_input(key=DEFAULT_KEY + "teacher_epochs").set_value(0).run()
    # each setting named by its label on the form, as the user gave it (the CLI names it by its flag)
    assert any(e.startswith("Teacher (upper bound, early-stopped) = 0 leaves no teacher") and
               "Teacher checkpoint (optional)" in e and "Method = ce" in e for e in _errors(app))
    assert app.button(key="setup-create").disabled

    app.number_input(key=DEFAULT_KEY + "teacher_epochs").set_value(2).run()
    app.number_input(key=DEFAULT_KEY + "k").set_value(1437).run()
    (message,) = _errors(app)
    assert message.startswith("k neighbours in the graph = 1437 needs more") and "has 1437" in message
    assert "valid k neighbours in the graph is 1..1436" in message and "k=" not in message and "--" not in message
    assert app.button(key="setup-create").disabled

    app.number_input(key=DEFAULT_KEY + "k").set_value(20).run()
    for name in ("warmup_epochs", "refine_epochs", "mutual_epochs"):
        app.number_input(key=DEFAULT_KEY + name).set_value(0).run()
    assert any(e.startswith("Warm-up, Refine (stage 1) and Mutual (stage 2) are all 0, so the student never trains")
               for e in _errors(app))
    assert not app.exception and list(runs_dir.glob("*")) == []


def test_custom_run_with_a_tiny_schedule(app, runs_dir):
    app.selectbox(key="setup-base").set_value("moons").run()
    key = "setup-moons-"
    for name, value in (("teacher_epochs", 1), ("warmup_epochs", 1), ("refine_epochs", 1), ("mutual_epochs", 0)):
        app.number_input(key=key + name).set_value(value).run()
    app.radio(key=key + "method").set_value("kd").run()
    assert [app.slider(key=key + n).disabled for n in ("kd_weight", "clean_kd_weight", "relational_weight")] \
        == [False, True, True]  # KD has one weight; the others are AML-KD's
    app.slider(key=key + "kd_weight").set_value(0.6).run()
    assert not _errors(app)
    app.button(key="setup-create").click().run()
    assert not app.exception
    config = RunStore(app.session_state["run_dir"]).config()
    assert config.method == "kd" and config.dataset == "moons?n=600&spread=0.15"
    assert config.train == replace(RunConfig().train, kd_weight=0.6, teacher_lr=0.1)  # the preset's teacher lr
    assert config.schedule.teacher_epochs == 1 and config.schedule.student_epochs == 2
    timeline = _chart_points(app)["timeline"]
    assert set(timeline) == {"teacher", "teacher (to do)", "student", "student (to do)"}


def test_a_name_already_taken_is_refused_inline(app, runs_dir):
    Run.create(runs_dir / "taken", replace(RunConfig(dataset="moons"), schedule=ScheduleConfig(1, 1, 0.1, 1, 1, 1)))
    app.run()
    name_input = next(t for t in app.text_input if t.label == "Run name")
    name_input.set_value("taken").run()
    assert any("already exists" in e for e in _errors(app))
    assert app.button(key="setup-create").disabled


def test_train_page_offers_the_default_run_when_none_is_open(app, runs_dir):
    app.switch_page("views/train.py").run()
    assert not app.exception
    app.button(key="train-create-default").click().run()
    assert not app.exception
    assert RunStore(app.session_state["run_dir"]).config() == RunConfig()
    assert not app.button(key="train-step").disabled


def test_open_rename_and_delete_a_run_made_by_the_cli(app, runs_dir, tiny_moons_run):
    import shutil

    shutil.copytree(tiny_moons_run, runs_dir / "from-cli")
    app.run()
    app.button(key="setup-open").click().run()
    assert app.session_state["run_dir"] == str(runs_dir / "from-cli")
    assert _chart_points(app)["Test accuracy"] == {"teacher": 8, "student": 5}
    assert app.button(key="train-step").disabled  # the run is done

    app.switch_page("views/setup.py").run()
    app.text_input(key="setup-rename-name-from-cli").set_value("renamed").run()
    app.button(key="setup-rename").click().run()
    assert not app.exception
    assert (runs_dir / "renamed").is_dir() and not (runs_dir / "from-cli").exists()
    assert app.session_state["run_dir"] == str(runs_dir / "renamed")

    assert app.button(key="setup-delete").disabled  # not before the checkbox
    app.checkbox(key="setup-delete-sure-renamed").check().run()
    app.button(key="setup-delete").click().run()
    assert not app.exception
    assert not (runs_dir / "renamed").exists()
    assert "run_dir" not in app.session_state


def test_the_address_names_the_open_run_and_reopens_it(runs_dir, make_tiny_run):
    import shutil

    shutil.copytree(make_tiny_run("moons-3-steps", steps=3), runs_dir / "half-done")
    first = AppTest.from_file(APP, default_timeout=60)
    first.run()  # no ?run=: the most recent run is open, on Train
    assert first.session_state["run_dir"] == str(runs_dir / "half-done") and first.query_params["run"] == "half-done"
    assert first.title[0].value == "Train · half-done"
    first.switch_page("views/setup.py").run()
    first.button(key="setup-open").click().run()
    assert first.session_state["run_dir"] == str(runs_dir / "half-done")

    reopened = AppTest.from_file(APP, default_timeout=60)  # a new browser session on the same address
    reopened.query_params["run"] = "half-done"
    reopened.run()
    assert reopened.session_state["run_dir"] == str(runs_dir / "half-done")
    reopened.switch_page("views/train.py").run()
    assert not reopened.exception
    assert {m.label: m.value for m in reopened.metric}["Step"] == "3 / 8"

    unknown = AppTest.from_file(APP, default_timeout=60)
    unknown.query_params["run"] = "../etc"
    unknown.run()
    assert "run_dir" not in unknown.session_state and "run" not in unknown.query_params


def test_the_train_page_says_when_stage_0_found_no_evidence_of_noise(runs_dir, make_tiny_run):
    import shutil

    run_dir = runs_dir / "no-noise"
    shutil.copytree(make_tiny_run("moons"), run_dir)
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    stage0 = next(m for m in lines if m["phase"] == "propagate")
    rate = (f"Noise rate estimated at stage 0: {stage0['noise_rate_estimate']:.3f} (90% interval "
            f"{stage0['noise_rate_low']:.3f}–{stage0['noise_rate_high']:.3f}); "
            f"true {1 - stage0['given_label_precision']:.3f}")

    def captions() -> str:
        at = AppTest.from_file(APP, default_timeout=60)
        at.query_params["run"] = "no-noise"
        at.run()
        assert not at.exception and at.title[0].value == "Train · no-noise"
        return "\n".join(c.value for c in at.caption)

    assert stage0["noise_found"] is True  # 30% symmetric noise: found
    assert f"{rate}." in captions() and "no evidence of noise" not in captions()
    stage0["noise_found"] = False  # as stage 0 of a run on clean labels records it
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in lines))
    assert f"{rate} · **no evidence of noise: labels kept**." in captions()


# ---------------------------------------------------------------- app.settings
def test_presets_round_trip_through_the_form():
    presets, default_id = load_presets()
    assert default_id == "digits-symmetric-40"
    assert {p.name for p in presets} == {"Digits, 40% symmetric", "Teaching: digits, 50% noise, short schedule",
                                         "2-D moons, 40% noise"}
    for preset in presets:
        assert SetupValues.from_config(preset.config).to_config(preset.config) == replace(
            preset.config, teacher=preset.config.teacher or SetupValues.from_config(preset.config).teacher,
            student=preset.config.student or SetupValues.from_config(preset.config).student)


def test_form_values_become_a_config():
    values = SetupValues(dataset="blobs", toy_size=300, toy_spread=1.0, blob_classes=5, noise_kind="pairflip",
                         noise_rate=0.2, method="ce", teacher="mlp-large", student="mlp-small", k=7,
                         noise_rate_mode="known", seed=3)
    config = values.to_config()
    assert config.dataset == "blobs?n=300&spread=1&classes=5" and config.noise == "pairflip:0.2"
    assert (config.method, config.graph.k, config.noise_rate, config.seed) == ("ce", 7, 0.2, 3)
    assert replace(values, noise_rate_mode="estimate").to_config().noise_rate is None
    assert replace(values, noise_rate_mode="custom", noise_rate_value=0.33).to_config().noise_rate == 0.33
    assert replace(values, noise_kind="none").to_config().noise == "none"
    with pytest.raises(UserError, match="alpha"):
        replace(values, alpha=1.5).to_config()


def test_settings_problems_name_the_setting_and_the_valid_range():
    assert settings_problems(RunConfig(), 1437) == []
    (k_problem,) = settings_problems(RunConfig(), 20)
    assert k_problem == ("k neighbours in the graph = 20 needs more training samples than neighbours; dataset "
                         "'digits' has 20: valid k neighbours in the graph is 1..19")
    no_teacher = replace(RunConfig(), schedule=ScheduleConfig(teacher_epochs=0))
    assert settings_problems(no_teacher, 1437)[0].startswith("Teacher (upper bound, early-stopped) = 0 leaves no "
                                                             "teacher")
    assert settings_problems(replace(no_teacher, method="ce"), 1437) == []
    no_refinery = replace(RunConfig(), schedule=ScheduleConfig(refine_epochs=0, mutual_epochs=0))
    assert settings_problems(no_refinery, 1437)[0].startswith(
        "Refine (stage 1) = 0 and Mutual (stage 2) = 0: AML-KD would never refine a label")
    no_student = replace(RunConfig(), schedule=ScheduleConfig(warmup_epochs=0, refine_epochs=0, mutual_epochs=0))
    assert "the student never trains" in settings_problems(no_student, 1437)[0]


def test_run_names_are_suggested_free_and_validated(tmp_path):
    assert suggest_run_name(RunConfig(), tmp_path) == "digits-symmetric40-aml-kd-s0"
    (tmp_path / "digits-symmetric40-aml-kd-s0").mkdir()
    assert suggest_run_name(RunConfig(), tmp_path) == "digits-symmetric40-aml-kd-s0-2"
    assert validate_run_name("ok-name_1.x", tmp_path) == tmp_path / "ok-name_1.x"
    for bad in ("", "../escape", "a/b", ".hidden", "x" * 81, "digits-symmetric40-aml-kd-s0"):
        with pytest.raises(UserError):
            validate_run_name(bad, tmp_path)


def test_run_rows_read_status_and_results(tiny_moons_run, make_tiny_run):
    rows = {r["name"]: r for r in run_rows(tiny_moons_run.parent)}
    row = rows[tiny_moons_run.name]
    assert (row["state"], row["phase"], row["step"], row["total_steps"]) == ("done", "done", 8, 8)
    assert row["method"] == "aml-kd" and 0 <= row["student_test_accuracy"] <= 1
    unfinished = make_tiny_run("moons-5-steps", steps=5)  # teacher x2, propagate, warm-up, refine
    row = {r["name"]: r for r in run_rows(unfinished.parent)}[unfinished.name]
    last = RunStore(unfinished).metrics()[-1]
    assert (row["state"], row["phase"], row["step"]) == ("idle", "refine", 5)
    assert row["student_test_accuracy"] == last["student_test_accuracy"] is not None


def test_phase_plan_uses_steps_done_once_a_phase_ended_early():
    config = RunConfig()  # teacher 30 (early-stopped), propagate 1, warmup 4, refine 32, mutual 12
    metrics = [{"step": i, "phase": "teacher"} for i in range(1, 8)] + [{"step": 8, "phase": "propagate"}]
    plan = phase_plan(config, metrics, "warmup")
    assert plan == [{"phase": "teacher", "planned": 7, "done": 7}, {"phase": "propagate", "planned": 1, "done": 1},
                    {"phase": "warmup", "planned": 4, "done": 0}, {"phase": "refine", "planned": 32, "done": 0},
                    {"phase": "mutual", "planned": 12, "done": 0}]
    assert phase_plan(config, metrics[:3], "teacher")[0] == {"phase": "teacher", "planned": 30, "done": 3}
    assert [p["phase"] for p in phase_plan(replace(config, method="ce"), [], "student")] == ["student"]


def test_start_from_a_run_prefills_the_form_and_a_second_method_is_two_clicks(runs_dir):
    schedule = ScheduleConfig(teacher_epochs=3, teacher_patience=2, warmup_epochs=1, refine_epochs=2, mutual_epochs=1)
    first = RunConfig(dataset="moons?n=300&spread=0.2", noise="pairflip:0.2", seed=4, schedule=schedule,
                      graph=replace(RunConfig().graph, k=7, knn="hnsw"))
    Run.create(runs_dir / "my-moons", first)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("views/setup.py").run()  # a run exists: the app opened it on Train
    at.selectbox(key="setup-base").set_value("run-my-moons").run()
    key = "setup-run-my-moons-"
    assert at.number_input(key=key + "k").value == 7 and at.number_input(key=key + "refine_epochs").value == 2
    assert at.selectbox(key=key + "knn").value == "hnsw"
    at.radio(key=key + "method").set_value("ce").run()  # click 1
    assert at.number_input(key=key + "k").disabled and at.slider(key=key + "alpha").disabled
    assert any("CE trains the student alone" in c.value for c in at.caption)
    at.button(key="setup-create").click().run()  # click 2
    assert not at.exception and not _errors(at)
    made = RunStore(at.session_state["run_dir"]).config()
    # every other setting as the run had it (the form names the data's default networks)
    assert replace(made, teacher=None, student=None) == replace(first, method="ce")
    assert (made.dataset, made.noise, made.seed, made.schedule) == (first.dataset, first.noise, 4, schedule)


def test_the_knn_search_is_chosen_on_the_form_from_the_declared_choices(app, runs_dir):
    from engine.method import declared

    knn = declared()["knn"].setting
    box = app.selectbox(key=DEFAULT_KEY + "knn")
    assert box.label == "kNN search" and box.options == list(knn.choices) == ["exact", "ivf", "hnsw", "auto"]
    assert box.value == "auto" and box.help == knn.help and knn.help.startswith("kNN search: exact (every pair)") and "20,000" in box.help
    box.set_value("exact").run()
    app.button(key="setup-create").click().run()
    assert not app.exception and not _errors(app)
    assert RunStore(app.session_state["run_dir"]).config().graph == replace(RunConfig().graph, knn="exact")


def test_kd_keeps_only_the_temperature_among_the_method_knobs(app):
    app.radio(key=DEFAULT_KEY + "method").set_value("kd").run()
    assert app.number_input(key=DEFAULT_KEY + "k").disabled and app.selectbox(key=DEFAULT_KEY + "knn").disabled
    assert not app.slider(key=DEFAULT_KEY + "temperature").disabled
    assert any("only the temperature applies" in c.value for c in app.caption)


def test_reset_asks_whether_to_keep_the_review_decisions(app, runs_dir):
    from engine.rundir.review import ReviewStore

    app.button(key="preset-create-moons").click().run()
    run_dir = Path(app.session_state["run_dir"])
    _press(app, "train-step")
    ReviewStore(run_dir, num_classes=2).record(4, "relabel", "ann", 1)
    app.run()
    _press(app, "train-reset-keep")  # keep: the same samples, so the log stays
    assert (run_dir / "reviews.sqlite").exists() and not (run_dir / "reviews-old-1.sqlite").exists()
    assert RunStore(run_dir).status()["step"] == 0
    _press(app, "train-reset")  # start clean: the decisions are set aside, never applied to the new run
    assert not (run_dir / "reviews.sqlite").exists() and (run_dir / "reviews-old-1.sqlite").exists()
    assert app.button(key="train-reset") is not None and not any(
        b.key == "train-reset-keep" for b in app.button)  # nothing left to keep: one Reset button
