"""Figures: stable bytes (a redraw leaves git clean), one colour and legend place per method, seeds drawn,
the study's numbers and chance lines where they explain a plot, readable confusion matrices and histograms."""
import base64
import io
import math
from pathlib import Path

import numpy as np
import pytest

from alkit import analysis, plots

# two arms x two seeds x two cycles; vaal is random + 0.02 (seed 0) and + 0.04 (seed 1) at every cycle
ROWS = [{"arm": arm, "seed": s, "cycle": c, "n_labelled": 100 * (c + 1), "test_acc": acc + (0.02 * (s + 1) if arm == "vaal" else 0),
         "disc_loss": 1.3 + 0.01 * c}
        for arm in ("vaal", "random") for s in (0, 1) for c, acc in enumerate((0.5, 0.6))]


def test_redrawing_the_same_figure_writes_identical_bytes_and_touches_nothing(tmp_path):
    stem = tmp_path / "fig" / "accuracy"
    plots.save(plots.curves(ROWS, title="t", ytitle="y"), stem)
    first = {ext: stem.with_suffix(ext).read_bytes() for ext in (".png", ".svg", ".html")}
    mtimes = {ext: stem.with_suffix(ext).stat().st_mtime_ns for ext in first}
    assert first[".png"].startswith(b"\x89PNG") and b"<svg" in first[".svg"] and b"plotly" in first[".html"]
    plots.save(plots.curves(ROWS, title="t", ytitle="y"), stem)  # a fresh figure object, as a notebook rerun makes
    for ext, data in first.items():
        assert stem.with_suffix(ext).read_bytes() == data, ext
        assert stem.with_suffix(ext).stat().st_mtime_ns == mtimes[ext], ext
    plots.save(plots.curves(ROWS, title="changed", ytitle="y"), stem)
    assert stem.with_suffix(".svg").read_bytes() != first[".svg"]


#: draws three figures as ``export.save`` and a notebook do (PNG, SVG, then the notebook's JPEG) with kaleido's own
#: page handling (a reload after every image), then again with alkit's, and prints both lists of hashes
_PAGE_SCRIPT = """
import hashlib, sys
import kaleido
import numpy as np
from alkit import analysis, export, plots
from alkit.results import load_results
sys.path.insert(0, "tests")
from test_plots import ROWS

def images(fig, uid):
    for i, t in enumerate(fig.data):
        t.uid = f"{uid}-{i}"
    png = export.to_image(fig, "png", 900, 500, scale=1.5)
    svg = export._stable_svg_ids(export.to_image(fig, "svg", 900, 500), uid)
    return [hashlib.sha1(b).hexdigest() for b in (png, svg, export.to_image(fig, "jpeg", 900, 500, scale=0.5))]

rows = load_results("results/smoke/02_vaal_vs_random")  # notebook 02's accuracy figure: its legend's SVG differed
rng = np.random.default_rng(0)
figs = [plots.curves(rows, "test_acc", title="Test accuracy", ytitle="%", scale=100, study=analysis.STUDY_1000,
                     study_name=analysis.STUDY_1000_NAME),
        plots.confusion_matrices({"a": rng.random((10, 10)), "b": rng.random((10, 10))}),
        plots.differences(ROWS, title="d")]
kaleido.Kaleido._alkit_keeps_tabs = True  # export._keep_tabs_loaded then leaves kaleido as it is
print(" ".join(h for i, fig in enumerate(figs) for h in images(fig, str(i))))
kaleido.stop_sync_server(silence_warnings=True)
export._server_started = False
del kaleido.Kaleido._alkit_keeps_tabs  # a new Chromium, with alkit's page handling
print(" ".join(h for i, fig in enumerate(figs) for h in images(fig, str(i))))
"""


@pytest.mark.slow
def test_images_do_not_depend_on_the_page_having_drawn_others():
    """alkit.export keeps kaleido's page loaded between images and reloads it before an SVG only
    (``_keep_tabs_loaded``): the same PNG, SVG and JPEG bytes as kaleido's own reload after every image
    (without the reload before an SVG, notebook 02's accuracy SVG wrote its legend's attributes in another order)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", _PAGE_SCRIPT], cwd=root, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    kaleidos, alkits = (line.split() for line in out.stdout.strip().splitlines())
    assert len(set(kaleidos)) == 9 and alkits == kaleidos


def test_a_method_keeps_its_colour_and_legend_place_whatever_else_is_plotted():
    alone = plots.curves([r for r in ROWS if r["arm"] == "vaal"], title="t", ytitle="y")
    both = plots.curves(ROWS, title="t", ytitle="y", order=["vaal", "random"])
    legend = [t for t in both.data if t.showlegend is not False]
    assert [t.name.split(" ")[0] for t in legend] == ["random", "vaal"]  # the shared order, not the given one
    assert legend[1].line.color == plots.ARM_COLORS["vaal"] and legend[1].line.dash == "solid"
    # random beside vaal is vaal's control (the same task model): vaal's hue, dashed; alone it is blue, solid
    assert legend[0].line.color == plots.ARM_COLORS["vaal"] and legend[0].line.dash == "dash"
    assert "dashed: random acquisition" in both.layout.title.subtitle.text
    lone = plots.curves([r for r in ROWS if r["arm"] == "random"], title="t", ytitle="y")
    assert [(t.line.color, t.line.dash) for t in lone.data if t.showlegend is not False] == [(plots.ARM_COLORS["random"], "solid")]
    assert [t.line.color for t in alone.data if t.showlegend is not False] == [plots.ARM_COLORS["vaal"]]
    assert plots.class_color(2) not in {*plots.ARM_COLORS.values(), *plots.SPLIT_COLORS.values()}  # one palette per meaning
    assert plots.arm_color("my_strategy", 3) == plots.PALETTE[3]  # unknown arms: palette by position
    assert plots.ordered(["mine", "alg2", "random", "vaal"]) == ["random", "vaal", "alg2", "mine"]


def test_each_seed_is_a_thin_line_under_a_thick_mean_and_the_subtitle_says_so():
    fig = plots.curves(ROWS, "test_acc", title="t", ytitle="%", scale=100, subtitle="smoke · 2 seeds")
    thin = [t for t in fig.data if t.showlegend is False]
    thick = [t for t in fig.data if t.showlegend is not False]
    assert len(thin) == 4 and all(t.line.width == 1 for t in thin)  # 2 arms x 2 seeds
    assert [list(t.y) for t in thin if t.legendgroup == "vaal"] == [[52.0, 62.0], [54.0, 64.0]]
    vaal = next(t for t in thick if t.name.startswith("vaal"))
    assert np.allclose(vaal.y, [53.0, 63.0]) and vaal.line.width == 3 and "mean of 2 seeds" in vaal.name
    assert fig.layout.title.subtitle.text.startswith("smoke · 2 seeds") and "thin lines: one seed each" in fig.layout.title.subtitle.text


def test_the_study_shares_the_axes_where_label_ranges_meet_and_gets_its_own_panel_where_not():
    near = plots.curves(ROWS, scale=100, title="t", ytitle="%", study={150: 55.0, 300: 60.0})
    far = plots.curves(ROWS, scale=100, title="t", ytitle="%", study=analysis.STUDY_1000)
    study_near = next(t for t in near.data if "study" in (t.name or ""))
    study_far = next(t for t in far.data if "study" in (t.name or ""))
    assert study_near.xaxis in (None, "x") and list(study_near.y) == [55.0, 60.0]
    assert study_far.xaxis == "x2" and list(study_far.y)[-1] == 90.37 and "one run" in study_far.name
    assert far.layout.yaxis2.matches == "y" or far.layout.yaxis2.showticklabels is False  # one y scale for both panels


def test_chance_and_reference_lines_are_drawn_where_asked():
    fig = plots.curves(ROWS, "disc_loss", title="t", ytitle="BCE", chance=plots.DISC_LOSS_AT_CHANCE, chance_text="chance",
                       hlines=[(1.0, "ref")])
    lines = sorted(s.y0 for s in fig.layout.shapes)
    assert math.isclose(lines[1], 2 * math.log(2)) and lines[0] == 1.0
    assert {a.text for a in fig.layout.annotations} >= {"chance", "ref"}


def test_differences_are_against_the_baseline_at_the_same_seed_and_cycle():
    d = analysis.differences(ROWS, baseline="random")
    assert sorted((r["seed"], r["cycle"], round(r["diff"], 6)) for r in d) == [(0, 0, 0.02), (0, 1, 0.02), (1, 0, 0.04), (1, 1, 0.04)]
    fig = plots.differences(ROWS, "random", title="t")
    mean = next(t for t in fig.data if t.showlegend is False and t.line.width == 3)
    assert np.allclose(mean.y, [3.0, 3.0])  # points: mean of +2 and +4
    assert [a.text for a in fig.layout.annotations if a.text in ("vaal", "random")] == ["vaal"]  # one panel, no random panel


def test_confusion_matrices_are_labelled_and_titled_with_accuracy():
    mats = {"a": np.diag([5] * 10), "b": np.full((10, 10), 1)}
    fig = plots.confusion_matrices(mats)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["a · acc 100.0 %", "b · acc 10.0 %"]
    assert list(fig.data[0].y) == list(plots.FASHION_CLASSES)
    assert fig.layout.yaxis.showticklabels and not fig.layout.yaxis2.showticklabels  # class names on the first column
    assert fig.data[1].z[0][0] == 0.1  # rows normalised


def test_confusions_per_cycle_sum_seeds_and_the_slider_shows_one_cycle_at_a_time():
    rows = [{"arm": a, "seed": s, "cycle": c, "test_confusion": (np.eye(10) * (c + 1)).tolist()}
            for a in ("x", "y") for s in (0, 1) for c in range(3)]
    by = analysis.confusions_by_cycle(rows, ["x", "y"])
    assert by["x"][2][0, 0] == 6 and by["y"][0].sum() == 20  # summed over the two seeds
    fig = plots.confusion_slider(by, {c: f"cycle {c}" for c in range(3)})
    steps = fig.layout.sliders[0].steps
    assert [s.label for s in steps] == ["cycle 0", "cycle 1", "cycle 2"] and len(fig.data) == 6
    assert steps[1].args[0]["visible"] == [False, True, False, False, True, False]
    assert [t.visible for t in fig.data] == [False, False, True, False, False, True]  # opens at the last cycle
    grid = plots.confusion_grid(by, analysis.chosen_cycles(range(3), k=2))
    assert analysis.chosen_cycles(range(11)) == [0, 5, 10]
    # x and y have equal matrices at both cycles: one "every arm" panel per cycle, not one per arm
    assert len(grid.data) == 2 and [a.text.split(" · ")[0] for a in grid.layout.annotations] == ["every arm"] * 2
    by["y"][2] = by["y"][2] * 0 + np.eye(10)[::-1] * 6  # y differs at the last cycle: a panel per arm there
    grid = plots.confusion_grid(by, [0, 2])
    assert [a.text.split(" · ")[0] for a in grid.layout.annotations] == ["every arm", "x", "y"] and len(grid.data) == 3
    assert grid.layout.yaxis.title.text == "true class" and grid.layout.height == 200 + 250


def test_class_histograms_start_with_the_initial_set_and_star_the_start_classes():
    rows = [{"arm": "v", "seed": s, "cycle": 0, "labelled_class_counts": [0, 0, 5, 0, 5, 0, 0, 5, 0, 0],
             "selected_class_counts": [1] * 10} for s in (0, 1)]
    table = analysis.class_counts_by_cycle(rows, "v")
    assert table == [("initial set", [0, 0, 10, 0, 10, 0, 0, 10, 0, 0]), ("batch 1", [2] * 10)]
    fig = plots.class_histograms(rows, arms=["v"], start_classes=[2, 4, 7], study=analysis.STUDY_THREE_CLASS_SELECTIONS)
    # every class named, once, down the left; one column per batch
    assert [y for y in fig.data[0].y if y.endswith("★")] == ["Pullover ★", "Coat ★", "Sneaker ★"]
    assert len(fig.data[0].y) == 10 and list(fig.data[0].x) == ["start", "1"] and fig.data[0].text[2][0] == 10
    assert [fig.data[1].text[c][0] for c in (2, 4, 7)] == [166, 167, 167]  # the study's initial set beside ours
    same = rows + [dict(r, arm="w") for r in rows]  # two arms with identical batches share one panel
    merged = plots.class_histograms(same, arms=["v", "w"])
    assert len(merged.data) == 1 and "v = w" in merged.layout.annotations[0].text
    assert all(sum(v) == 64 for k, v in analysis.STUDY_THREE_CLASS_SELECTIONS.items() if k != "initial set")
    assert "summed over seeds" in fig.layout.title.subtitle.text


def test_image_grid_height_follows_the_mosaic_so_no_empty_band_is_left():
    wide = plots.image_grid(np.zeros((32, 28, 28)), ncols=16, title="t", row_labels=["a", "b"], width=1000)
    tall = plots.image_grid(np.zeros((80, 28, 28)), ncols=8, title="t", width=600)
    m = wide.layout.margin
    assert abs((wide.layout.height - m.t - m.b) / (1000 - m.l - m.r) - 2 / 16) < 0.01
    assert tall.layout.height > tall.layout.width


def test_image_grid_carries_its_pixels_as_a_small_png():
    from PIL import Image

    from alkit import export

    rng = np.random.default_rng(0)
    images = rng.random((3, 28, 28))
    fig = plots.image_grid(images, ncols=2, title="t")
    (trace,) = fig.data
    assert trace.type == "image" and trace.source.startswith("data:image/png;base64,")
    assert export.has_data(fig)  # drawn, not "nothing to draw yet"
    assert export.Shown(fig, b"\x89PNG fake", Path("figures/smoke/nb/grid.html")).is_large()  # a JPEG and a link
    png = base64.b64decode(trace.source.split(",", 1)[1])
    mosaic = np.asarray(Image.open(io.BytesIO(png)))
    assert mosaic.shape == (2 * 30, 2 * 30)  # 2 rows and 2 columns of 28 px with a 1 px gutter each side
    assert np.array_equal(mosaic[1:29, 31:59], np.round(images[1] * 255).astype(np.uint8))
    assert (mosaic[31:59, 31:59] == 128).all()  # the empty fourth cell is gutter grey
    assert len(fig.to_json()) < 20_000  # 3,600 pixels; a heatmap of them was ~80 kB of decimals


def test_saved_pngs_are_compacted_without_changing_a_pixel():
    from PIL import Image

    from alkit import export

    rng = np.random.default_rng(1)
    rgba = np.dstack([rng.integers(0, 256, (40, 60, 3), dtype=np.uint8), np.full((40, 60), 255, np.uint8)])
    raw = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(raw, "PNG", compress_level=1)
    small = export.compact_png(raw.getvalue())
    with Image.open(io.BytesIO(small)) as im:
        assert im.mode == "RGB" and np.array_equal(np.asarray(im), rgba[..., :3])
    see_through = rgba.copy()
    see_through[0, 0, 3] = 0  # a transparent pixel: the alpha channel stays
    raw = io.BytesIO()
    Image.fromarray(see_through, "RGBA").save(raw, "PNG")
    with Image.open(io.BytesIO(export.compact_png(raw.getvalue()))) as im:
        assert im.mode == "RGBA" and np.array_equal(np.asarray(im), see_through)


def test_seed_bars_show_the_mean_and_every_seed():
    fig = plots.seed_bars({"alg1": {0: 0.2, 1: 0.4}, "random": {0: 0.5, 1: 0.5}}, title="t", ytitle="%", scale=100,
                          reference=(50, "like random"))
    bars = [t for t in fig.data if t.type == "bar"]
    dots = [t for t in fig.data if t.type == "scatter"]
    assert [b.x[0] for b in bars] == ["random", "alg1"] and math.isclose(bars[1].y[0], 30.0)
    assert list(dots[1].y) == [20.0, 40.0] and fig.layout.shapes[0].y0 == 50


def test_the_setting_line_names_profile_pool_schedule_and_seeds():
    from alkit.experiment import Experiment

    exp = Experiment(name="x", profile="smoke", seeds=[0, 1, 2],
                     base={"pool_size": 2000, "initial": {"kind": "classes", "n": 60, "classes": [2, 4, 7]}, "budget": 20,
                           "cycles": 3}, arms={"random": {"learner": "classifier", "strategy": "random"}})
    full = [{"arm": "random", "seed": s, "cycle": c, "iterations_per_cycle": 25} for s in range(3) for c in range(4)]
    text = analysis.setting(exp, full)
    assert text == "smoke · pool 2,000 · start 60 labels of classes {2, 4, 7}, +20 per cycle × 3 · 25 training iterations per cycle · 3 seeds"
    # the iterations a cycle trained, not the schedule's nominal count: a warm-started M2 (the cpu profile) trains
    # 1,000 then 200 iterations while its schedule's iterations_per_cycle says VAAL's 8,593
    warm = [dict(r, iterations=1000 if r["cycle"] == 0 else 200, iterations_per_cycle=8593) for r in full]
    assert " · 200–1,000 training iterations per cycle · " in analysis.setting(exp, warm)


def test_summaries_that_notebooks_used_to_compute_inline():

    table = analysis.curve(ROWS)
    assert [(r["arm"], r["n_labelled"]) for r in analysis.at_largest_budget(table)] == [("random", 200), ("vaal", 200)]
    assert analysis.describe_largest(table, ["vaal", "random"]).startswith("vaal 63.00 ± 1.41 % (200 labels, 2 seeds), random 60.00")
    gap = analysis.entropy_gap([{"pred_entropy_unlabelled": 1.5, "pred_entropy_labelled": 1.0}, {"pred_entropy_labelled": 1.0}])
    assert [r["entropy_gap"] for r in gap] == [0.5]
    assert analysis.sample_row_labels(["y=0", "y=9", "", "y=x"], plots.FASHION_CLASSES) == ["T-shirt/top", "Ankle boot", "", ""]
    x = np.random.default_rng(0).random((8, 28, 28))
    assert analysis.reconstruction_quality(x, x)["gain"] == 1.0
    blurred = analysis.reconstruction_quality(x, np.broadcast_to(x.mean(0), x.shape))
    assert abs(blurred["gain"]) < 1e-12 and "too small or too briefly trained" in analysis.describe_reconstruction("m", 10, blurred, 50)


def test_large_figures_show_as_an_image_and_a_link_small_ones_interactive(tmp_path):
    import plotly.graph_objects as go

    from alkit.export import INLINE_LIMIT, Shown, plotly_json_bytes

    small = go.Figure(go.Scatter(x=[1, 2], y=[2, 1]))
    big = go.Figure(go.Scattergl(x=np.arange(20_000) * 1.1, y=np.arange(20_000) * 0.7))
    assert len(plotly_json_bytes(big.to_plotly_json())) > INLINE_LIMIT
    html = tmp_path / "figures" / "smoke" / "nb" / "umap.html"
    assert Shown(big, b"\x89PNG fake", html).is_large() and not Shown(small, b"\x89PNG fake", html).is_large()
    assert not Shown(big, None, html).is_large()  # no static export (no Chromium): the interactive figure
    s = Shown(small, b"\x89PNG fake", html)._repr_mimebundle_()
    assert "application/vnd.plotly.v1+json" in s and "image/png" in s


def test_committed_notebooks_stay_under_one_megabyte():
    from pathlib import Path

    notebooks = Path(__file__).resolve().parent.parent / "notebooks"
    # the smoke notebooks and the executed copies of other profiles (notebooks/paper/, python -m alkit.batch)
    sizes = {str(p.relative_to(notebooks)): p.stat().st_size for p in notebooks.rglob("*.ipynb")
             if ".ipynb_checkpoints" not in p.parts}
    assert sizes and all(s < 1_000_000 for s in sizes.values()), sizes
