"""The server's entry point: ``streamlit run app/launch.py`` (``make run``, the Dockerfile, the browser tests).

Before anything is served it refuses a binding other than loopback without
accounts, and then serves the app (``app/streamlit_app.py``) behind a Host
check (:mod:`app.hosting`).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run` puts app/ on the path, not the repository
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402
from streamlit import config  # noqa: E402

from app.hosting import HostCheck, allowed_hosts, launch_problem  # noqa: E402
from engine.rundir import accounts_enabled  # noqa: E402


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file: no OpenID Connect
        return False


ADDRESS = config.get_option("server.address")
PROBLEM = launch_problem(ADDRESS, accounts_enabled() or _oidc_configured(),
                         bool(config.get_option("server.enableXsrfProtection")))
if PROBLEM:
    print(PROBLEM, file=sys.stderr)
    sys.exit(2)

app = st.App("streamlit_app.py", middleware=[Middleware(HostCheck, hosts=allowed_hosts(ADDRESS))])
