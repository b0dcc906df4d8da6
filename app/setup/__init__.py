"""The Setup page's widget groups, one module each (the page: app/views/setup.py)."""
