"""Accounts: the users file and its CLI, the sign-in form, roles against every action, the launcher's refusal
without accounts on a shared binding, and the Host check answered over real HTTP."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app.hosting import allowed_hosts, host_name, is_loopback, launch_problem
from engine.cli import main as cli_main
from engine.errors import UserError
from engine.rundir.users import ACTIONS, PERMISSIONS, add_user, allowed, read_users, verify_password

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app" / "streamlit_app.py")
PASSWORDS = {"ada": "admin-pass-1", "rita": "reviewer-pass-1", "vic": "viewer-pass-1"}
ROLES = {"ada": "admin", "rita": "reviewer", "vic": "viewer"}


@pytest.fixture
def users(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "users.json"
    monkeypatch.setenv("AMLKD_USERS", str(path))
    for name, role in ROLES.items():
        add_user(name, role, PASSWORDS[name], path)
    return path


# ---------------------------------------------------------------- the users file and the CLI
def test_the_cli_adds_users_with_a_hashed_password_from_stdin(tmp_path, monkeypatch, capsys):
    path = tmp_path / "users.json"
    monkeypatch.setenv("AMLKD_USERS", str(path))
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("correct horse\n"))
    assert cli_main(["users", "add", "alice", "--role", "reviewer"]) == 0
    assert "added alice (reviewer)" in capsys.readouterr().out
    text = path.read_text()
    assert "correct horse" not in text and json.loads(text)["users"]["alice"]["hash"].startswith("$argon2id$")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert verify_password("alice", "correct horse", path) == "reviewer"
    assert verify_password("alice", "correct horsE", path) is None and verify_password("bob", "x", path) is None
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("short\n"))
    assert cli_main(["users", "add", "bob", "--role", "admin"]) == 2
    assert "8 to 1024 characters" in capsys.readouterr().err and set(read_users(path)) == {"alice"}
    with pytest.raises(SystemExit) as exit_info:  # not a role: argparse's one line, status 2
        cli_main(["users", "add", "bob", "--role", "owner"])
    assert exit_info.value.code == 2
    monkeypatch.delenv("AMLKD_USERS")
    assert cli_main(["users", "add", "bob", "--role", "admin"]) == 2
    assert "set AMLKD_USERS" in capsys.readouterr().err


def test_a_damaged_users_file_is_one_clear_error(tmp_path):
    path = tmp_path / "users.json"
    path.write_text('{"format": 1, "users": {"eve": {"role": "admin", "hash": "plain"}}}')
    with pytest.raises(UserError, match="cannot be read .* no Argon2 hash"):
        read_users(path)


def test_roles_allow_exactly_their_actions():
    assert ACTIONS == {"look", "review", "export", "manage", "train"}
    assert [a for a in sorted(ACTIONS) if allowed("viewer", a)] == ["look"]
    assert [a for a in sorted(ACTIONS) if allowed("reviewer", a)] == ["export", "look", "review"]
    assert all(allowed("admin", a) for a in ACTIONS) and not any(allowed(None, a) for a in ACTIONS)
    assert PERMISSIONS["viewer"] < PERMISSIONS["reviewer"] < PERMISSIONS["admin"]


# ---------------------------------------------------------------- the app with accounts
def open_app(runs: Path, run: Path | None = None, **query) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in query.items():
        at.query_params[key] = value
    if run is not None:
        at.session_state["run_dir"] = str(run)
    at.run()
    assert not at.exception, at.exception
    return at


def sign_in(at: AppTest, name: str, password: str | None = None) -> AppTest:
    at.text_input(key="sign_in_user").input(name)
    at.text_input(key="sign_in_password").input(password or PASSWORDS[name])
    at.button[0].click().run()  # the form's "Sign in"
    assert not at.exception, at.exception
    return at


@pytest.fixture
def shared_run(runs_dir, tiny_moons_run) -> Path:
    path = runs_dir / "moons"
    shutil.copytree(tiny_moons_run, path)
    return path


def test_anonymous_sees_only_the_sign_in_form(users, runs_dir, shared_run):
    at = open_app(runs_dir, shared_run, reviewer="alice")
    assert [t.label for t in at.text_input] == ["User", "Password"]
    assert [b.label for b in at.button] == ["Sign in"]
    assert not [t.value for t in at.title if t.value in ("Setup", "Train")]
    sign_in(at, "rita", "wrong password")
    assert [e.value for e in at.error] == ["Wrong user or password."]
    assert [t.label for t in at.text_input] == ["User", "Password"]


def test_a_viewer_looks_and_can_do_nothing_else(users, runs_dir, shared_run):
    at = sign_in(open_app(runs_dir, shared_run), "vic")
    assert at.title[0].value.startswith("Train")  # the start page opens the open run
    at.switch_page("views/setup.py").run()
    assert at.title[0].value == "Setup"
    keys = {b.key for b in at.button}
    assert "setup-create" not in keys and "setup-delete" not in keys and "setup-rename" not in keys
    assert not any(k.startswith("preset-create") for k in keys if k)
    assert any("Your role (viewer) may not create" in c.value for c in at.caption)
    at.switch_page("views/train.py").run()
    assert next(b for b in at.button if b.key == "train-step").disabled
    at.switch_page("views/review.py").run()
    data = json.loads(at.get("bidi_component")[0].proto.json or at.get("bidi_component")[0].proto.mixed.json)
    assert data["can_decide"] is False and data["why_not"] == "Your role may not record review decisions."


def test_a_reviewer_reviews_as_themself_and_exports_but_manages_nothing(users, runs_dir, shared_run):
    at = sign_in(open_app(runs_dir, shared_run, reviewer="mallory"), "rita")
    assert "reviewer" not in at.query_params  # the address names nobody: the reviewer is the signed-in user
    assert "setup-delete" not in {b.key for b in at.button}
    at.switch_page("views/review.py").run()
    assert "review_reviewer" not in {t.key for t in at.sidebar.text_input}
    data = json.loads(at.get("bidi_component")[0].proto.json or at.get("bidi_component")[0].proto.mixed.json)
    assert data["can_decide"] is True and any("reviewing as rita" in c.value for c in at.caption)
    from app.review.live_card import process_outbox

    acks = process_outbox(str(shared_run), 8, 2, {"outbox": [{"cid": "r1", "kind": "decide", "sample": 0,
                                                              "decision": "unsure", "seen": 0}],
                                                  "reviewer": "rita", "allowed": True})
    assert acks["r1"]["status"] == "saved"
    at.session_state["review_export_section"] = True
    at.run()
    assert [b.label for b in at.get("download_button")][:1] == ["samples.csv"]
    at.switch_page("views/train.py").run()
    assert next(b for b in at.button if b.key == "train-step").disabled


def test_an_admin_may_do_everything(users, runs_dir, shared_run):
    at = sign_in(open_app(runs_dir, shared_run), "ada")
    at.switch_page("views/setup.py").run()
    keys = {b.key for b in at.button}
    assert {"setup-create", "setup-rename", "setup-delete"} <= keys
    at.switch_page("views/train.py").run()
    assert not next(b for b in at.button if b.key == "train-reset").disabled
    at.switch_page("views/review.py").run()
    data = json.loads(at.get("bidi_component")[0].proto.json or at.get("bidi_component")[0].proto.mixed.json)
    assert data["can_decide"] is True
    assert [b.label for b in at.sidebar.button] == ["Sign out"]
    at.sidebar.button[0].click().run()
    assert [t.label for t in at.text_input] == ["User", "Password"]  # signed out: the form again


def test_local_mode_needs_no_account(runs_dir, shared_run, monkeypatch):
    monkeypatch.delenv("AMLKD_USERS", raising=False)
    at = open_app(runs_dir, shared_run)
    assert not [t for t in at.text_input if t.label in ("User", "Password")]  # no sign-in form
    at.switch_page("views/setup.py").run()
    assert at.title[0].value == "Setup" and "setup-delete" in {b.key for b in at.button}


def test_openid_connect_offers_its_button_when_configured(runs_dir, monkeypatch):
    monkeypatch.delenv("AMLKD_USERS", raising=False)
    at = AppTest.from_file(APP, default_timeout=120)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "x" * 32,
                          "client_id": "id", "client_secret": "secret",
                          "server_metadata_url": "https://login.example/.well-known/openid-configuration"}
    at.run()
    assert [b.label for b in at.button] == ["Sign in with your organisation"]
    assert not at.text_input  # no users file: no password form


# ---------------------------------------------------------------- launching and hosts
def test_where_the_server_may_listen():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("192.168.1.5")
    assert launch_problem("127.0.0.1", accounts=False) is None
    assert launch_problem("0.0.0.0", accounts=True) is None
    problem = launch_problem("0.0.0.0", accounts=False)
    assert "refusing to start on 0.0.0.0 without accounts" in problem and "users add" in problem
    assert "\n" not in problem
    assert "XSRF" in launch_problem("127.0.0.1", accounts=False, xsrf=False)
    assert allowed_hosts("127.0.0.1", {}) == ("127.0.0.1", "localhost", "::1")
    assert allowed_hosts("0.0.0.0", {"AMLKD_ALLOWED_HOSTS": "App.Example.org, x.test"})[-2:] == ("app.example.org",
                                                                                             "x.test")
    assert host_name("[::1]:8501") == "::1" and host_name("Evil.example:80") == "evil.example"
    assert host_name("a@b") is None and host_name("x:notaport") is None and host_name("") is None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(address: str, env: dict, tmp_path: Path) -> subprocess.Popen:
    port = _free_port()
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "launch.py"), "--server.address",
               address, "--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats",
               "false"]
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "AMLKD_RUNS_DIR": str(tmp_path / "runs"), **env},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    process.port = port
    return process


def _get(port: int, host: str, path: str = "/") -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_the_launcher_refuses_a_shared_binding_without_accounts(tmp_path, monkeypatch):
    monkeypatch.delenv("AMLKD_USERS", raising=False)
    process = _launch("0.0.0.0", {"AMLKD_USERS": ""}, tmp_path)
    try:
        _, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 2
    assert err.strip().splitlines()[-1].startswith("refusing to start on 0.0.0.0 without accounts")


@pytest.mark.slow
def test_the_server_answers_only_its_own_host(tmp_path, monkeypatch):
    monkeypatch.delenv("AMLKD_USERS", raising=False)
    process = _launch("127.0.0.1", {"AMLKD_USERS": ""}, tmp_path)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if _get(process.port, f"127.0.0.1:{process.port}", "/_stcore/health") == 200:
                    break
            except OSError:
                pass
            time.sleep(0.3)
        assert _get(process.port, f"127.0.0.1:{process.port}") == 200
        assert _get(process.port, f"localhost:{process.port}") == 200
        assert _get(process.port, "evil.example") == 400  # a DNS-rebinding page's Host
        assert _get(process.port, f"evil.example:{process.port}", "/_stcore/health") == 400
        request = urllib.request.Request(f"http://127.0.0.1:{process.port}/", headers={"Host": "localhost"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        xsrf = subprocess.run([sys.executable, "-c", "from streamlit import config; "
                               "print(config.get_option('server.enableXsrfProtection'))"], cwd=ROOT,
                              capture_output=True, text=True, timeout=60).stdout.split()[-1]
        assert xsrf == "True"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
