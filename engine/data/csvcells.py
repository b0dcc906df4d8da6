"""CSV cells a spreadsheet will not run as formulas (OWASP's CSV injection rule), and back.

A spreadsheet treats a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return as a formula; a class name, a file name or a reviewer
name (which anyone reviewing chooses) that starts so would run when an export
is opened. OWASP's rule (https://owasp.org/www-community/attacks/CSV_Injection):
prefix such a cell with a single quote, and quote every field that holds a
separator or a quote (pandas' writer does the quoting). Numbers stay numbers:
only text cells are touched, so ``-0.25`` in a numeric column is written as is.

:func:`restore` undoes the prefix, so a file we wrote reads back to the same
names (``clean_labels.csv`` as ``--labels``, ``decisions.csv`` for
``import-decisions``).
"""

from __future__ import annotations

import pandas as pd

#: First characters that make a spreadsheet evaluate a cell.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


def neutralise(cell):
    """``cell`` with a ``'`` in front when it is text a spreadsheet would evaluate; anything else unchanged."""
    if isinstance(cell, str) and cell.lstrip(QUOTE).startswith(FORMULA_START):
        return QUOTE + cell  # a name that itself starts with quotes before a formula start gets one more
    return cell


def restore(cell):
    """The text :func:`neutralise` was given (a ``'`` in front of a formula start is dropped)."""
    if isinstance(cell, str) and cell.startswith(QUOTE) and cell.lstrip(QUOTE).startswith(FORMULA_START):
        return cell[1:]
    return cell


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells (and column names) are neutralised; numeric columns as they are."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object or pd.api.types.is_string_dtype(out[column].dtype):
            out[column] = out[column].map(neutralise)
    out.columns = [neutralise(str(c)) for c in out.columns]
    return out


def safe_csv(frame: pd.DataFrame, **kwargs) -> str:
    """``frame.to_csv(index=False)`` with every text cell neutralised (see the module docstring)."""
    return safe_frame(frame).to_csv(index=False, **kwargs)


def restore_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of a table of strings read from a CSV, with :func:`restore` applied to every cell and column name."""
    out = frame.copy()
    out.columns = [restore(str(c)) for c in out.columns]
    for column in out.columns:
        out[column] = out[column].map(restore)
    return out
