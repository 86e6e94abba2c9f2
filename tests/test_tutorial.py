"""The tutorial notebook runs, in short mode, and is stored with its outputs."""
import pathlib

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = pathlib.Path(__file__).parent.parent / "tutorials" / "ENOT.ipynb"


def _code_cells(nb):
  return [c for c in nb.cells if c.cell_type == "code"]


def _images(cells):
  return sum(
      "image/png" in out.get("data", {}) for c in cells for out in c.outputs
  )


@pytest.fixture(scope="module")
def stored():
  return nbformat.read(NOTEBOOK, as_version=4)


def test_stored_notebook_has_outputs_of_a_full_run(stored):
  cells = _code_cells(stored)
  assert all(c.execution_count for c in cells), "run every cell before saving"
  counts = [c.execution_count for c in cells]
  assert counts == sorted(counts), "cells were run out of order"
  assert all(c.outputs for c in cells), "a code cell has no output"
  assert not [o for c in cells for o in c.outputs if o.output_type == "error"]
  text = "".join(
      o.get("text", "") for c in cells for o in c.outputs
      if o.output_type == "stream"
  )
  assert "full length" in text and "SHORT mode" not in text
  assert _images(cells) >= 6  # sections 1, 2, 4 (Euclidean, sphere), 5, 11


def test_notebook_runs_in_short_mode(monkeypatch, tmp_path):
  nb = nbformat.read(NOTEBOOK, as_version=4)
  # the kernel inherits the environment: short mode, and the suite's
  # persistent compilation cache (conftest.py; programs the notebook repeats
  # compile once)
  monkeypatch.setenv("OTT_ENOT_TUTORIAL_SHORT", "1")
  NotebookClient(
      nb, timeout=600, kernel_name="python3",
      resources={"metadata": {"path": str(tmp_path)}}
  ).execute()
  cells = _code_cells(nb)
  assert all(c.execution_count for c in cells)
  text = "".join(
      o.get("text", "") for c in cells for o in c.outputs
      if o.output_type == "stream"
  )
  assert "SHORT mode" in text
  assert _images(cells) >= 6
  # the deliberately wrong cost is caught, and its registration refused
  assert "FAIL" in text and "fenchel_young" in text
  assert "ValueError:" in text
  # the resumed run equals the uninterrupted one, bit for bit
  assert "max |parameter difference| = 0.0" in text
  # the entropic plans are scored against their closed form at each epsilon
  assert "cB-UVP" in text and all(f"eps = {e}" in text
                                  for e in ("0.03", "0.3", "3.0"))
