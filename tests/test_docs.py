"""The documentation builds with warnings as errors (bad maths, malformed
docstrings, references to ott_enot's names that resolve nowhere: the build is
nitpicky; broken links between pages; a tutorial without its stored outputs:
it is rendered, never executed), and documents every public name."""
import inspect
import pathlib
import subprocess
import sys

import ott_enot

import conftest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_sphinx_builds_the_docs_with_warnings_as_errors(tmp_path):
  out = subprocess.run(
      [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b",
       "html", "-d", str(tmp_path / "doctrees"), str(ROOT / "docs"),
       str(tmp_path / "html")],
      env=conftest.child_env(), capture_output=True, text=True, timeout=900,
      check=False)
  assert out.returncode == 0, out.stderr[-6000:]
  html = tmp_path / "html"
  for page in ("index.html", "getting_started.html", "api.html",
               "guides/networks.html", "guides/judging.html", "results.html",
               "changelog.html", "bibliography.html"):
    assert (html / page).is_file(), page
  # the tutorial, rendered with its stored figures and outputs
  tutorial = (html / "_generated" / "tutorial.html").read_text()
  assert "full length" in tutorial and "L2-UV forward" in tutorial
  assert len(list((html / "_images").glob("*.png"))) >= 5
  # every public name of the package is documented where it is defined
  text = "".join(p.read_text() for p in (html / "_autosummary").glob("*.html"))
  missing = []
  for name in ott_enot.__all__:
    obj = getattr(ott_enot, name)
    if inspect.ismodule(obj):
      target = f"module-{obj.__name__}"
    elif inspect.isclass(obj) or inspect.isfunction(obj):
      target = f"{obj.__module__}.{obj.__qualname__}"
    else:
      continue
    if f'id="{target}"' not in text:
      missing.append(target)
  assert not missing, missing
  # the maths renders: MathJax is loaded and the docstrings' maths reach it
  metrics = (html / "_autosummary" / "ott_enot.evaluation.metrics.html"
            ).read_text()
  assert "mathjax" in metrics.lower() and r"\varepsilon" in metrics
