"""The labelling grid of notebook 06: the proposed batch as images, a class per image by click or by keys.

``LabelGrid(session).widget`` is an ipywidgets box: one tile per proposed image (the image, the model's
guess, a drop-down of the classes with "skip"), a text field to type the answers as keys (one class
number per image in order, ``-`` to skip, ``.`` to leave one open), and a button that saves the round
and asks the session for the next batch (it trains, then the grid shows the new batch). Every change
is saved as a draft on disk at once, so closing the notebook loses no label; a new grid on the same
session shows the draft again.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

OPEN, SKIP = "open", "skip"


def png_bytes(image: np.ndarray, scale: int = 3) -> bytes:
    """(C, H, W) or (H, W) floats in [0, 1] -> PNG bytes (grey or RGB, 8 bit), each pixel ``scale`` x ``scale``."""
    a = np.asarray(image, dtype=np.float32)
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)  # (H, W) or (H, W, 3)
    a = np.clip(np.rint(a * 255), 0, 255).astype(np.uint8)
    a = a.repeat(scale, axis=0).repeat(scale, axis=1)
    h, w = a.shape[:2]
    color = 2 if a.ndim == 3 else 0
    rows = b"".join(b"\x00" + a[r].tobytes() for r in range(h))  # filter type 0 per row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b""))


def parse_keys(text: str, n: int, num_classes: int) -> list[int | None | str]:
    """Answers typed as keys: one token per image, in order. Digits (or several digits separated by spaces
    or commas, for more than 10 classes) = a class, ``-`` = skip, ``.`` = leave open. Returns a list of
    length ``n`` of class, None (skip) or ``OPEN``; raises ValueError naming the bad token."""
    text = text.strip()
    tokens = text.replace(",", " ").split() if (" " in text or "," in text) else list(text)
    if len(tokens) > n:
        raise ValueError(f"{len(tokens)} answers typed for {n} images")
    out: list[int | None | str] = []
    for tok in tokens:
        if tok == "-":
            out.append(None)
        elif tok == ".":
            out.append(OPEN)
        elif tok.isdigit() and int(tok) < num_classes:
            out.append(int(tok))
        else:
            raise ValueError(f"{tok!r} is not a class 0 .. {num_classes - 1}, '-' (skip) or '.' (open)")
    return out + [OPEN] * (n - len(out))


class LabelGrid:
    """The grid for ``session`` (:class:`alkit.oracle.LabelSession`); display ``.widget`` in a notebook."""

    def __init__(self, session, ncols: int = 6, scale: int = 3):
        import ipywidgets as w  # optional (the notebooks extra): only the grid of notebook 06 needs it

        self.session, self.ncols, self.scale, self.w = session, ncols, scale, w
        self.widget = w.VBox()
        self.widget.add_class("alkit-label-grid")
        self.render()

    # the state the page shows --------------------------------------------------------------------
    def answers(self) -> dict[int, int | None]:
        """The answers chosen in the grid: pool index -> class or None (skip); open tiles left out."""
        out = {}
        for i, dd in zip(self.indices, self.dropdowns):
            if dd.value != OPEN:
                out[i] = None if dd.value == SKIP else int(dd.value)
        return out

    def render(self) -> None:
        w, s = self.w, self.session
        head = w.HTML()
        head.add_class("alkit-label-head")
        if s.finished():
            rec = s.evaluate()
            head.value = (f"<b>Finished</b> after {s.round} rounds: {rec['n_labelled']:,} labelled images, "
                          f"validation accuracy {100 * rec['val_acc']:.1f} %.")
            self.indices, self.dropdowns, self.widget.children = [], [], (head,)
            return
        prop = s.proposal()
        self.indices = prop["indices"]
        draft = s.draft()
        names = s.class_names
        options = [("—", OPEN), ("skip", SKIP)] + [(f"{k} {n}", k) for k, n in enumerate(names)]
        self.dropdowns, tiles = [], []
        x = s.data.x_pool[np.asarray(self.indices)].cpu().numpy()
        for k, (i, img) in enumerate(zip(self.indices, x)):
            value = draft.get(i, OPEN) if i in draft else OPEN
            dd = w.Dropdown(options=options, value=SKIP if (i in draft and value is None) else value,
                            layout=w.Layout(width="150px"))
            dd.add_class(f"alkit-label-{k}")
            dd.observe(self._changed, names="value")
            guess = f"{names[prop['guess'][k]]} ({100 * prop['confidence'][k]:.0f} %)"
            tiles.append(w.VBox([w.Image(value=png_bytes(img, self.scale), format="png"),
                                 w.HTML(f"<small>#{k} · model: {guess}</small>"), dd],
                                layout=w.Layout(border="1px solid #ddd", padding="4px", align_items="center")))
            self.dropdowns.append(dd)
        recs = s.records()
        last = next((r for r in reversed(recs) if r["cycle"] == s.round), None)
        acc = f" · validation accuracy {100 * last['val_acc']:.1f} %" if last else ""
        head.value = (f"<b>Round {s.round}</b> · {len(s.labels()):,} labelled{acc} · label these {len(self.indices)} "
                      f"images (click a class, or type keys below) and save.")
        self.keys = w.Text(placeholder=f"keys: one class number per image in order, - = skip, . = open "
                                       f"(e.g. {'3-1.' if len(names) <= 10 else '3 - 12 .'})",
                           layout=w.Layout(width="100%"))
        self.keys.add_class("alkit-keys")
        self.keys.observe(self._typed, names="value")
        self.message = w.HTML()
        self.message.add_class("alkit-message")
        save = w.Button(description="Save labels and propose the next batch", button_style="primary",
                        layout=w.Layout(width="auto"))
        save.add_class("alkit-submit")
        save.on_click(self._submit)
        grid = w.GridBox(tiles, layout=w.Layout(grid_template_columns=f"repeat({self.ncols}, 170px)"))
        self.widget.children = (head, grid, self.keys, w.HBox([save, self.message]))

    # events ---------------------------------------------------------------------------------------
    def _changed(self, _change=None) -> None:
        self.session.save_draft(self.answers())

    def _typed(self, change) -> None:
        try:
            values = parse_keys(change["new"], len(self.dropdowns), len(self.session.class_names))
        except ValueError as exc:
            self.message.value = f"<span style='color:#b00'>{exc}</span>"
            return
        self.message.value = ""
        for dd, v in zip(self.dropdowns, values):
            dd.value = OPEN if v == OPEN else SKIP if v is None else v
        self._changed()

    def _submit(self, _button=None) -> None:
        answers = self.answers()
        if not answers:
            self.message.value = "<span style='color:#b00'>nothing to save: label or skip at least one image</span>"
            return
        added = self.session.answer(answers)
        self.message.value = f"saved {added} labels; training for the next batch …"
        self.render()
