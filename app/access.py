"""Who is using the app, and what they may do.

Two modes:

- **local** (no users file, no OpenID Connect): a single-user tool on
  127.0.0.1, as before; everyone may do everything and the reviewer is the
  name in the sidebar and the address (``?reviewer=NAME``);
- **accounts** (the users file named by ``$AMLKD_USERS`` exists, or
  ``[auth]`` is configured in ``.streamlit/secrets.toml``): every session
  signs in first (:func:`sign_in_gate`), the reviewer is the signed-in user,
  and every action checks the user's role (:func:`can`, :func:`require`;
  roles in :mod:`engine.rundir.users`).

OpenID Connect goes through Streamlit's own ``st.login`` (``[auth]`` with
``redirect_uri``, ``cookie_secret``, ``client_id``, ``client_secret`` and
``server_metadata_url`` in ``secrets.toml``). Such a user's role is the role
of the users-file entry named by their e-mail address, otherwise ``viewer``.
"""

from __future__ import annotations

import streamlit as st

from engine.errors import UserError
from engine.rundir import accounts_enabled, allowed, read_users, verify_password

USER_KEY = "_amlkd_user"  # (name, role) of the signed-in user in this session
DENIED = "Your role ({role}) may not {what}; ask an admin."
WHAT = {"manage": "create, rename, reset or delete runs", "train": "start trainings",
        "review": "record review decisions", "export": "export or import decisions", "look": "look"}


def oidc_configured() -> bool:
    """Whether ``[auth]`` is configured for ``st.login`` (Streamlit's secrets)."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file, or an unreadable one: no OpenID Connect
        return False


def shared() -> bool:
    """Whether the app runs with accounts (see the module docstring)."""
    return accounts_enabled() or oidc_configured()


def _oidc_user() -> tuple[str, str] | None:
    try:
        if not st.user.is_logged_in:
            return None
    except (AttributeError, KeyError):
        return None
    name = str(st.user.get("email") or st.user.get("name") or st.user.get("sub") or "").strip()
    if not name:
        return None
    try:
        entry = read_users().get(name)
    except UserError:
        entry = None
    return name, entry["role"] if entry else "viewer"


def signed_in() -> tuple[str, str] | None:
    """(name, role) of this session's user; ``None`` in accounts mode before signing in."""
    if not shared():
        return None
    user = st.session_state.get(USER_KEY)
    if user is None and oidc_configured():
        user = _oidc_user()
    return tuple(user) if user else None


def role() -> str | None:
    """This session's role: ``admin`` in local mode, the user's role with accounts, ``None`` when signed out."""
    if not shared():
        return "admin"
    user = signed_in()
    return user[1] if user else None


def can(action: str) -> bool:
    """Whether this session may do ``action`` (``look``, ``review``, ``export``, ``manage``, ``train``)."""
    return allowed(role(), action)


def require(action: str) -> bool:
    """:func:`can`, saying why not in a toast when not (callbacks call it before they act)."""
    if can(action):
        return True
    st.toast(DENIED.format(role=role() or "signed out", what=WHAT[action]), icon=":material/lock:")
    return False


def denied_note(action: str) -> None:
    """One line where a page leaves out what this role may not do."""
    st.caption(DENIED.format(role=role() or "signed out", what=WHAT[action]))


def _sign_in(name: str, password: str) -> None:
    try:
        found = verify_password(name, password)
    except UserError as exc:
        st.session_state["_amlkd_sign_in_error"] = str(exc)
        return
    if found is None:
        st.session_state["_amlkd_sign_in_error"] = "Wrong user or password."
        return
    st.session_state.pop("_amlkd_sign_in_error", None)
    st.session_state[USER_KEY] = (name.strip(), found)


def sign_out() -> None:
    st.session_state.pop(USER_KEY, None)
    if oidc_configured():
        st.logout()


def sign_in_gate() -> None:
    """In accounts mode: the sign-in form until this session has signed in (then nothing), and ``st.stop()``."""
    if not shared() or signed_in():
        return
    st.title("AML-KD Explorer: sign in")
    if accounts_enabled():
        with st.form("sign-in"):
            name = st.text_input("User", key="sign_in_user")
            password = st.text_input("Password", type="password", key="sign_in_password")
            if st.form_submit_button("Sign in", type="primary"):
                _sign_in(name, password)
                if signed_in():
                    st.rerun()
        error = st.session_state.get("_amlkd_sign_in_error")
        if error:
            st.error(error, icon=":material/lock:")
    if oidc_configured():
        st.button("Sign in with your organisation", key="sign_in_oidc", on_click=st.login)
    st.stop()


def sidebar_user() -> None:
    """Who is signed in, their role and a Sign out button (accounts mode only)."""
    user = signed_in()
    if user is None:
        return
    st.text(f"Signed in as {user[0]} · {user[1]}")  # a name is text, never markdown
    st.button("Sign out", key="sign_out", on_click=sign_out)
