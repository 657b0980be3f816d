"""Figures: stable bytes (a redraw leaves git clean), one colour per method, readable confusion matrices."""
import numpy as np

from alkit import plots

CURVE = [{"arm": arm, "n_labelled": n, "mean": m, "std": 0.01, "n": 2}
         for arm, ms in {"random": (0.5, 0.6), "vaal": (0.52, 0.63)}.items() for n, m in zip((100, 200), ms)]


def test_redrawing_the_same_figure_writes_identical_bytes_and_touches_nothing(tmp_path):
    stem = tmp_path / "fig" / "accuracy"
    plots.save(plots.curves(CURVE, title="t", ytitle="y"), stem)
    first = {ext: stem.with_suffix(ext).read_bytes() for ext in (".png", ".svg", ".html")}
    mtimes = {ext: stem.with_suffix(ext).stat().st_mtime_ns for ext in first}
    assert first[".png"].startswith(b"\x89PNG") and b"<svg" in first[".svg"] and b"plotly" in first[".html"]
    plots.save(plots.curves(CURVE, title="t", ytitle="y"), stem)  # a fresh figure object, as a notebook rerun makes
    for ext, data in first.items():
        assert stem.with_suffix(ext).read_bytes() == data, ext
        assert stem.with_suffix(ext).stat().st_mtime_ns == mtimes[ext], ext
    plots.save(plots.curves(CURVE, title="changed", ytitle="y"), stem)
    assert stem.with_suffix(".svg").read_bytes() != first[".svg"]


def test_a_method_keeps_its_colour_whatever_else_is_plotted():
    alone = plots.curves([r for r in CURVE if r["arm"] == "vaal"], title="t", ytitle="y")
    both = plots.curves(CURVE, title="t", ytitle="y")
    colour = {t.name.split(" ")[0]: t.line.color for t in both.data if t.name}
    assert colour["vaal"] == plots.ARM_COLORS["vaal"] != colour["random"]
    assert [t.line.color for t in alone.data if t.name] == [plots.ARM_COLORS["vaal"]]
    assert plots.arm_color("my_strategy", 3) == plots.PALETTE[3]  # unknown arms: palette by position


def test_confusion_matrices_are_labelled_and_titled_with_accuracy():
    mats = {"a": np.diag([5] * 10), "b": np.full((10, 10), 1)}
    fig = plots.confusion_matrices(mats)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["a · acc 100.0%", "b · acc 10.0%"]
    assert list(fig.data[0].y) == list(plots.FASHION_CLASSES)
    assert fig.layout.yaxis.showticklabels and not fig.layout.yaxis2.showticklabels  # class names on the first column
    assert fig.data[1].z[0][0] == 0.1  # rows normalised
