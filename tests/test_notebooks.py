"""Every notebook executes top to bottom through papermill with real (micro-sized) training.

The committed notebooks are additionally checked by ``pytest --nbval-lax
notebooks/``: they re-execute against the committed ``results/smoke`` and only
redraw. This test instead starts from an empty results folder, so training,
records, caches and figure export all run for real.
"""
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_notebook_runs_from_scratch(stem, tmp_path):
    papermill = pytest.importorskip("papermill")
    params = ROOT / "tests" / "params" / f"{stem}.yaml"
    assert params.exists(), f"add micro parameters for {stem} in tests/params/"
    out = tmp_path / f"{stem}.ipynb"
    import yaml

    values = yaml.safe_load(params.read_text())
    values.update(results_root=str(tmp_path / "results"), figures_root=str(tmp_path / "figures"))
    papermill.execute_notebook(str(ROOT / "notebooks" / f"{stem}.ipynb"), str(out), parameters=values,
                               cwd=str(ROOT), progress_bar=False, kernel_name="python3")
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    figs = tmp_path / "figures" / "micro" / stem
    pngs = sorted(figs.glob("*.png"))
    assert pngs, f"no figures written to {figs}"
    for png in pngs:
        assert png.stat().st_size > 5000 and png.with_suffix(".svg").exists() and png.with_suffix(".html").exists()
    records = list((tmp_path / "results" / "micro" / stem).rglob("records.jsonl"))
    assert len(records) == len(values["arms"]) * len(values["seeds"])
    text = "\n".join(o["data"].get("text/markdown", "") for c in nb.cells for o in c.get("outputs", []) if "data" in o)
    assert not re.search(r"\bnan\b", text, re.IGNORECASE), "a computed statement came out as NaN"


LINK = re.compile(r"\]\(([^)\s]+)\)|(?:href|src)=\"([^\"]+)\"")


@pytest.mark.parametrize("folder", ["notebooks", "notebooks/cpu", "notebooks/paper"])
def test_every_relative_link_in_a_notebooks_markdown_opens_a_file(folder):
    """The notebooks' own links (to docs/method.md and the like) open from where each notebook lies, the
    executed copies of ``cpu`` and ``paper`` included (``alkit.batch.rebase_links``)."""
    for path in sorted((ROOT / folder).glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type != "markdown":
                continue
            for m in LINK.finditer(cell.source):
                target = (m.group(1) or m.group(2)).partition("#")[0]
                if not target or re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:|/", target):
                    continue
                assert (path.parent / target).resolve().exists(), f"{path.relative_to(ROOT)}: dead link {target}"
