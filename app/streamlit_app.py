"""AML-KD Explorer: the entry script (``streamlit run app/streamlit_app.py``).

It sets up the page, starts the embedding warm-up once per process, shows
the open run in the sidebar and hands over to the chosen page. Training never
happens here or in a page: it runs in ``app.worker``.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run` puts app/ on the path, not the repository
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app import access, present  # noqa: E402
from app.text import md  # noqa: E402
from app.common import current_store, sync_run_with_url  # noqa: E402
from app.worker import get_worker, is_live  # noqa: E402
from engine.rundir import RunStore  # noqa: E402

log = logging.getLogger("app")

#: (script under app/, title, url path).
PAGES = (
    ("views/setup.py", "Setup", "setup"),
    ("views/train.py", "Train", "train"),
    ("views/embeddings.py", "Embeddings", "embeddings"),
    ("views/graph.py", "Propagation graph", "graph"),
    ("views/losses.py", "Losses", "losses"),
    ("views/review.py", "Review", "review"),
    ("views/compare.py", "Compare", "compare"),
)


@st.cache_resource(show_spinner=False)
def start_embedding_warm_up() -> threading.Thread | None:
    """Warm up the 2-D projection code (numba compiles UMAP) once per process, in the background."""
    try:
        from engine.readers.embed import warm_up
    except (ImportError, AttributeError):
        return None

    def _warm() -> None:
        try:
            warm_up()
        except Exception:  # noqa: BLE001 - a failed warm-up only costs time later
            log.exception("embedding warm-up failed")

    thread = threading.Thread(target=_warm, name="amlkd-embed-warm-up", daemon=True)
    thread.start()
    return thread


def build_pages() -> list:
    """Every page at its own address (``/setup`` included); the start page ``/`` is a hidden page that opens
    Train or Setup (:func:`start_page`)."""
    return [st.Page(start_page, title="AML-KD Explorer", url_path="start", default=True, visibility="hidden")] + \
        [st.Page(script, title=title, url_path=url) for script, title, url in PAGES]


def start_page() -> None:
    """``/``: the open run's Train page, ready to press Step (a new session opens the most recent run);
    Setup while no run exists."""
    st.switch_page("views/train.py" if current_store() is not None else "views/setup.py", query_params=page_query())


def page_query() -> dict[str, str]:
    """The address parameters every page keeps: the open run, the reviewer, presentation mode."""
    return {k: v for k, v in st.query_params.to_dict().items() if k in ("run", "reviewer", "present")}


def normalise_address(known: set[str]) -> None:
    """Page addresses in any case: ``/Setup`` or ``/TRAIN`` open their page. Streamlit matches a page's
    address exactly, so the requested name is lowered before the navigation resolves it (where this
    Streamlit keeps it; elsewhere the address must be typed in lower case)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    manager = getattr(get_script_run_ctx(), "pages_manager", None)
    name = getattr(manager, "intended_page_name", None)
    if isinstance(name, str) and name not in known and name.lower() in known \
            and not getattr(manager, "intended_page_script_hash", None):
        manager.set_script_intent("", name.lower())


def sidebar_status() -> None:
    """The open run: name, state, phase, step (refreshes itself while it trains)."""
    store = current_store()
    if store is None:
        st.caption("No run open: create or open one on the Setup page.")
        return
    # Two fragments drawing the same elements (see the Train page): a late refresh tick of the live one
    # finds no fragment once the run is idle.
    if is_live(store.path):
        st.fragment(_sidebar_live, run_every=2.0, key="sidebar-live")(store.path)
    else:
        st.fragment(_sidebar_idle, key="sidebar-idle")(store.path)


def _sidebar_body(path) -> None:
    store = RunStore(path)
    status = store.status()
    state = "training" if get_worker(path).busy else store.live_state(status)  # a dead process's run: stopped
    st.markdown(f"**Open run** {md(store.path.name)}")
    st.caption(f"{state} · phase **{status.get('phase', '?')}** · step "
               f"{status.get('step', 0)}/{status.get('total_steps', '?')}")
    if status.get("state") == "error":
        st.caption(":red[Last step failed: see the Train page.]")


def _sidebar_live(path) -> None:
    _sidebar_body(path)


def _sidebar_idle(path) -> None:
    _sidebar_body(path)


def main() -> None:
    presenting = present.init()
    st.set_page_config(page_title="AML-KD Explorer", layout="wide",
                       initial_sidebar_state="collapsed" if presenting else "auto")
    start_embedding_warm_up()
    access.sign_in_gate()  # with accounts: nothing but the sign-in form until this session signs in
    normalise_address({url for _, _, url in PAGES})
    page = st.navigation(build_pages())
    sync_run_with_url()
    with st.sidebar:
        access.sidebar_user()
        sidebar_status()
        present.sidebar_toggle()
    present.sync_url()
    present.apply_css()
    page.run()


main()
