"""The machinery every explorer shares: a live ipywidgets panel and its offline HTML twin.

An explorer (chapters 2–7) draws one state of a figure with a function of
its sliders. Live, :func:`live_panel` wraps that function in
``ipywidgets.interactive`` (Jupyter, Colab). For readers of the static HTML
book, :func:`frames_twin` draws the same function at precomputed states behind
a JavaScript slider (matplotlib's ``Animation.to_jshtml``), which needs no
kernel. Both draw on a :func:`fixed_layout_figure`, so the frames line up.
The science modules never import this one.
"""
from __future__ import annotations

import io
import json
from typing import Any, Callable, Sequence

from matplotlib.animation import FuncAnimation
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

#: What an explorer's HTML twin may vary over (chapters 2 and 4).
VARY_CHOICES: tuple[str, ...] = ("density", "width")


#: Button glyphs of the JavaScript player, replacing matplotlib's Font Awesome icons (a CDN stylesheet).
_PLAYER_GLYPHS = {
    "minus": "\u2212", "fast-backward": "\u21e4", "step-backward": "\u2039", "play fa-flip-horizontal": "\u25c0",
    "pause": "||", "play": "\u25b6", "step-forward": "\u203a", "fast-forward": "\u21e5", "plus": "+",
}


def offline_jshtml(anim: FuncAnimation, *, dpi: float | None = None) -> str:
    """``anim.to_jshtml()`` that works offline: the HTML twin of every explorer (chapters 2–7).

    matplotlib's player loads its button icons from a CDN stylesheet (Font
    Awesome); offline the buttons are blank and the browser logs an error. This
    removes the stylesheet and writes the buttons as plain Unicode glyphs.
    ``dpi`` renders the frames at that resolution (default: ``savefig.dpi``).
    """
    import re

    import matplotlib as mpl

    with mpl.rc_context({"savefig.dpi": dpi} if dpi is not None else {}):
        html = anim.to_jshtml(default_mode="once")
    html = re.sub(r'<link rel="stylesheet"\s+href="https://maxcdn\.bootstrapcdn\.com/[^"]*">', "", html)

    def glyph(match: "re.Match[str]") -> str:
        return _PLAYER_GLYPHS.get(match.group(1), "\u00b7")

    return re.sub(r'<i class="fa fa-([\w -]+?)"></i>', glyph, html)


def figure_png(figure: Figure) -> bytes:
    """``figure`` as PNG bytes: what every live explorer shows after a slider moves (chapters 2–7)."""
    buf = io.BytesIO()
    figure.savefig(buf, format="png")
    return buf.getvalue()


#: Layout of every HTML twin: the frame scales to the column on wide screens; on a phone it keeps a readable
#: size inside its own horizontal scroller (the page never gets wider than the screen), and the controls wrap.
_TWIN_STYLE = """<style>
.rpbook-twin { max-width: 100%; }
.rpbook-twin .animation { display: block; max-width: 100%; }
.rpbook-twin .rpbook-twin-frame { max-width: 100%; overflow-x: auto; }
.rpbook-twin .rpbook-twin-frame img { max-width: 100%; height: auto; }
.rpbook-twin input[type=range].anim-slider { width: min(374px, 100%); }
.rpbook-twin .anim-buttons { display: flex; flex-wrap: wrap; justify-content: center; gap: 2px; }
.rpbook-twin .rpbook-twin-label { display: block; font-weight: 600; margin: 4px 0; }
@media (max-width: 720px) {
  #_rpbook_twinUID .rpbook-twin-frame img { max-width: none; width: PHONE_PXpx; }
}
</style>"""


def frames_twin(figure: Figure, draw_frame: Callable[[int], object], n_frames: int, *, interval_ms: int = 800,
                dpi: float | None = None, labels: Sequence[str] | None = None):
    """The HTML twin of an explorer: ``draw_frame(i)`` for ``i < n_frames`` behind a JavaScript slider.

    Every explorer of chapters 2–7 builds its static version with this, so the
    HTML reader drags through the same frames the live sliders would show.
    ``labels[i]`` (default "frame i of n") is shown above the slider for the
    frame on screen, like a live slider's value. On a phone the frame keeps a
    readable size in its own horizontal scroller. Returns an ``IPython.display.HTML``.
    """
    import re

    from IPython.display import HTML

    if n_frames < 1:
        raise ValueError(f"need at least one frame, got {n_frames}")
    labels = [f"frame {i + 1} of {n_frames}" for i in range(n_frames)] if labels is None else [str(x) for x in labels]
    if len(labels) != n_frames:
        raise ValueError(f"labels: need one per frame ({n_frames}), got {len(labels)}")
    draw_frame(0)

    def frame(i: int) -> list:
        draw_frame(i)
        return []

    anim = FuncAnimation(figure, frame, frames=n_frames, interval=interval_ms, repeat=False)
    html = offline_jshtml(anim, dpi=dpi)
    uid = re.search(r'id="_anim_img(\w+)"', html).group(1)
    html = html.replace(f'<img id="_anim_img{uid}">', f'<div class="rpbook-twin-frame"><img id="_anim_img{uid}"></div>', 1)
    label = (f'<output class="rpbook-twin-label" id="_rpbook_label{uid}" aria-live="polite">'
             f'{_html_escape(labels[0])}</output>')
    html = html.replace('<div class="anim-controls">', '<div class="anim-controls">\n    ' + label, 1)
    # The player sets the image's src for every frame (slider, buttons, play): follow it with the label.
    labels_js = json.dumps(labels).replace("</", "<\\/")  # a label can never close the script
    follow = (f'<script>(function() {{ var labels = {labels_js};'
              f' var img = document.getElementById("_anim_img{uid}");'
              f' var out = document.getElementById("_rpbook_label{uid}");'
              f' new MutationObserver(function() {{ var a = window["anim{uid}"];'
              f' if (a) {{ out.textContent = labels[a.current_frame]; }} }})'
              f'.observe(img, {{attributes: true, attributeFilter: ["src"]}}); }})();</script>')
    width_px = int(round(figure.get_figwidth() * (dpi if dpi is not None else _savefig_dpi(figure))))
    style = _TWIN_STYLE.replace("PHONE_PX", str(max(320, min(width_px, 900)))).replace("UID", uid)
    return HTML(f'{style}<div class="rpbook-twin" id="_rpbook_twin{uid}">{html}{follow}</div>')


def _savefig_dpi(figure: Figure) -> float:
    import matplotlib as mpl

    dpi = mpl.rcParams["savefig.dpi"]
    return figure.dpi if dpi == "figure" else float(dpi)


def _html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def live_panel(figure: Figure, update: Callable[..., Any], controls: dict, *,
               after: Callable[[Any], None] | None = None, explorer: Any = None):
    """The live version of an explorer: ``ipywidgets.interactive`` over ``controls`` (chapters 2–7).

    Every move of a control calls ``update(**values)``, which redraws
    ``figure``, and shows the figure; ``after`` gets what ``update`` returned
    (e.g. to print statistics). ``explorer`` is kept as the panel's attribute
    of that name, so code and tests can drive it.
    """
    import ipywidgets as widgets
    from IPython.display import Image, display

    def show(**state) -> None:
        out = update(**state)
        display(Image(data=figure_png(figure)))
        if after is not None:
            after(out)

    panel = widgets.interactive(show, **controls)
    panel.explorer = explorer
    return panel


def stored_value(values: Sequence[float], x: float, what: str) -> float:
    """Explorers over stored results (chapters 3, 5, 7): The stored value equal to ``x``; ``ValueError`` listing the stored values otherwise."""
    for v in values:
        if abs(v - float(x)) <= 1e-9 * max(1.0, abs(v)):
            return v
    raise ValueError(f"{what} {x!r} is not in the stored sweep; stored: {', '.join(f'{v:g}' for v in values)}")


def stored_view(draw: Callable[..., Any], states: Sequence[dict], controls: dict | None,
                figsize: tuple[float, float], dpi: int):
    """Chapters 3, 5, 7: Live ``interactive`` over ``controls``, or (``controls=None``) the HTML twin over ``states``.

    ``draw(figure, **state)`` draws one state of a stored result; nothing is computed here.
    """
    figure = fixed_layout_figure(figsize, dpi)
    if controls is None:
        labels = [", ".join(f"{k} = {v:g}" if isinstance(v, float) else f"{k} = {v}" for k, v in state.items()
                            if v is not None) for state in states]
        return frames_twin(figure, lambda i: draw(figure, **states[i]), len(states), labels=labels)
    return live_panel(figure, lambda **state: draw(figure, **state), controls)


def fixed_layout_figure(figsize: tuple[float, float], dpi: int) -> Figure:
    """A figure whose axes keep the rectangles they are given, also after ``savefig`` under the book style.

    Every explorer of chapters 2–7 draws on one, so the frames of an HTML twin line up.

    (``savefig`` restores a figure without layout engine through
    ``set_layout_engine(None)``, which switches on constrained layout when the
    book style is active; an explicit do-nothing engine survives that.)
    """
    from matplotlib.layout_engine import PlaceHolderLayoutEngine

    figure = Figure(figsize=figsize, dpi=dpi, layout="none")
    figure.set_layout_engine(PlaceHolderLayoutEngine(adjust_compatible=True, colorbar_gridspec=True))
    FigureCanvasAgg(figure)
    return figure




__all__ = ["VARY_CHOICES", "offline_jshtml", "figure_png", "frames_twin", "live_panel", "stored_value", "stored_view",
           "fixed_layout_figure"]
