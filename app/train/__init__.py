"""The Train page's parts, one module each (the page: app/views/train.py)."""
