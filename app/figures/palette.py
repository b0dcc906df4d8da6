"""Every colour the app's figures draw with, in one place, safe for colour-blind viewers.

The base is the Okabe-Ito palette (Okabe & Ito, "Color Universal Design",
2008; Wong, Nature Methods 8:441, 2011): eight colours that stay distinct under
protanopia, deuteranopia and tritanopia. Classes beyond its seven chromatic
colours continue with Paul Tol's "muted" scheme (Tol, SRON/EPS/TN/09-002).

Colour is never the only cue of a two-valued field: each value also has its
own marker shape (:data:`FLAG_STYLES`), so correct/wrong, easy/not easy and
kept/relabelled read the same in grey print. Highlights (the selected
samples, the samples a what-if would change) are rings with a dark outline
(:data:`HIGHLIGHT_MARKER`) that shows on white and on every class colour.

A test checks that the figure modules use no colour literal outside this one.
"""

from __future__ import annotations

from collections.abc import Mapping

# ---------------------------------------------------------------- Okabe-Ito
BLACK = "#000000"
ORANGE = "#E69F00"
SKY_BLUE = "#56B4E9"
BLUISH_GREEN = "#009E73"
YELLOW = "#F0E442"
BLUE = "#0072B2"
VERMILLION = "#D55E00"
REDDISH_PURPLE = "#CC79A7"
# ---------------------------------------------------------------- Tol muted (more classes)
INDIGO = "#332288"
TEAL = "#44AA99"
OLIVE = "#999933"
WINE = "#882255"
SAND = "#DDCC77"
ROSE = "#CC6677"
CYAN = "#88CCEE"
PURPLE = "#AA4499"
GREEN = "#117733"
# ---------------------------------------------------------------- greys and text
DARK = "#222222"  # outlines, text on light backgrounds
MID_GREY = "#666666"  # secondary text
GREY = "#999999"  # the given labels, "other" series
LIGHT_GREY = "#C7C7C7"  # unknown values
DENSITY_LOW = "#F2F2F2"  # the fewest samples of a density heatmap: just off white
DENSITY_HIGH = "#8C8C8C"  # the most: mid grey, darker than unknown values, under every class colour
WHITE = "#FFFFFF"
TRANSPARENT = "rgba(0,0,0,0)"

#: One colour per class, in order; cycled beyond 16 classes.
CLASS_COLORS = (BLUE, ORANGE, BLUISH_GREEN, VERMILLION, SKY_BLUE, REDDISH_PURPLE, YELLOW, INDIGO, TEAL, WINE,
                OLIVE, ROSE, CYAN, PURPLE, GREEN, SAND)
UNKNOWN_COLOR = LIGHT_GREY

#: A two-valued field (False, True), each with a colour and a marker symbol.
#: "Good" values (correct, easy, kept) are blue circles; the others are
#: vermillion crosses or orange diamonds, so that shape alone tells them apart.
FLAG_COLORS = (VERMILLION, BLUE)
FLAG_SYMBOLS = ("x", "circle")
#: Per flag field, (False style, True style) as (colour, symbol); fields not named here use the default.
FLAG_STYLES = {
    "correct": ((VERMILLION, "x"), (BLUE, "circle")),  # False = wrong
    "easy": ((ORANGE, "diamond"), (BLUE, "circle")),  # False = not easy
    "relabelled": ((BLUE, "circle"), (VERMILLION, "x")),  # False = kept, True = relabelled
}

#: Highlight rings: no fill, a dark outline; the hover and legend show the ring.
HIGHLIGHT_LINE = {"width": 2.5, "color": BLACK}
HIGHLIGHT_MARKER = {"symbol": "circle", "size": 15, "color": TRANSPARENT, "line": HIGHLIGHT_LINE}
#: The centre of a neighbourhood / the sample under review: a star with a dark outline.
FOCUS_LINE = {"width": 2, "color": BLACK}

#: Colour scale of continuous fields (perceptually uniform and colour-blind safe).
CONTINUOUS_SCALE = "Viridis"

#: The run's phases: strong colour (bars) and a light shade (chart backgrounds).
PHASE_COLORS = {"teacher": ORANGE, "propagate": REDDISH_PURPLE, "warmup": SKY_BLUE, "refine": BLUISH_GREEN,
                "mutual": BLUE, "student": SKY_BLUE}
PHASE_SHADES = {"teacher": "rgba(230,159,0,0.12)", "propagate": "rgba(204,121,167,0.18)",
                "warmup": "rgba(86,180,233,0.12)", "refine": "rgba(0,158,115,0.10)",
                "mutual": "rgba(0,114,178,0.09)", "student": "rgba(86,180,233,0.12)"}
OTHER_SHADE = "rgba(0,0,0,0.04)"

#: Lines of the Train page's charts, by metric key (``metrics.jsonl``).
SERIES_COLORS = {
    "given_label_precision": GREY, "refined_label_precision": BLUE, "refined_precision_estimate": SKY_BLUE,
    "audit_precision": BLUISH_GREEN,
    "detection_precision": BLUE, "detection_recall": ORANGE,
    "teacher_test_accuracy": ORANGE, "student_test_accuracy": BLUE,
    "wrong_to_right": BLUISH_GREEN, "right_to_wrong": VERMILLION,
    "teacher_loss": GREY, "loss_ce": BLUE, "loss_mixup": REDDISH_PURPLE, "loss_kd": ORANGE,
    "loss_rel": BLUISH_GREEN, "loss_kd_clean": VERMILLION,
    "awe_auroc": REDDISH_PURPLE, "selection_precision": BLUISH_GREEN,
}

#: Faint context: samples behind a neighbourhood, graph edges by weight bin.
BACKGROUND_POINTS = "rgba(153,153,153,0.25)"
EDGE_COLORS = ("rgba(102,102,102,0.20)", "rgba(68,68,68,0.35)", "rgba(34,34,34,0.55)")
NEIGHBOUR_LINKS = "rgba(0,0,0,0.35)"
HISTOGRAM = SKY_BLUE


def class_color(label: int) -> str:
    """Colour of class ``label`` (grey for -1, unknown)."""
    return UNKNOWN_COLOR if label < 0 else CLASS_COLORS[int(label) % len(CLASS_COLORS)]


def class_name(code: int, names=None) -> str:
    """How class ``code`` is named in a legend: ``unknown`` for -1, its entry of ``names`` (a sequence or a
    mapping) when it has one, else the number."""
    if code < 0:
        return "unknown"
    if names is not None and (code in names if isinstance(names, Mapping) else code < len(names)):
        return str(names[code]).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # text, not tags
    return str(code)


def flag_style(field: str | None, value: bool) -> tuple[str, str]:
    """``(colour, marker symbol)`` of one value of a two-valued field."""
    styles = FLAG_STYLES.get(field or "")
    if styles is None:
        return FLAG_COLORS[int(value)], FLAG_SYMBOLS[int(value)]
    return styles[int(value)]


def text_on(color: str) -> str:
    """Black or white, whichever reads better on the hex colour ``color`` (WCAG relative luminance)."""
    rgb = [int(color.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
    luminance = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    return BLACK if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) else WHITE
