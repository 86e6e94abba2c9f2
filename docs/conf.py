"""Sphinx configuration of ott-enot's documentation.

Build: ``pip install -e ".[docs]" && sphinx-build -W -b html docs
docs/_build/html`` (warnings are errors). The tutorial is rendered from its
stored outputs (myst-nb, never executed here); the API reference is generated
from the docstrings (autodoc + autosummary, Napoleon for Google-style Args /
Returns / Raises); the maths renders with MathJax. Ecosystem choices: ott-jax
builds its site the same way (the Book theme, myst-nb, sphinxcontrib-bibtex).
"""
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ott_enot  # noqa: E402  (the package documented, from this checkout)

project = "ott-enot"
author = "the ott-enot developers"
copyright = "2026, the ott-enot developers"  # pylint: disable=redefined-builtin
release = ott_enot.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_nb",
    "sphinxcontrib.bibtex",
]

# the tutorial, copied in at build time (one source of truth: tutorials/; the
# project's markdown files are included by docs/results.md, changelog.md,
# architecture.md)
_GENERATED = pathlib.Path(__file__).parent / "_generated"
_GENERATED.mkdir(exist_ok=True)
# links of the repository's pages to the pages that show them here
_LINKS = {"../benchmarks/RESULTS.md": "../results.md",
          "../CHANGELOG.md": "../changelog.md",
          "../ARCHITECTURE.md": "../architecture.md"}
_notebook = (ROOT / "tutorials" / "ENOT.ipynb").read_text(encoding="utf-8")
for old, new in _LINKS.items():
  _notebook = _notebook.replace(f"]({old}", f"]({new}")
(_GENERATED / "tutorial.ipynb").write_text(_notebook, encoding="utf-8")

source_suffix = {".rst": "restructuredtext", ".md": "myst-nb",
                 ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints"]
nb_execution_mode = "off"  # stored outputs, never executed at build time
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["mystnb.unknown_mime_type"]

autosummary_generate = True
autodoc_typehints = "none"  # the docstrings give the types and shapes
autodoc_member_order = "bysource"
# members where they are defined (a package's __all__ re-exports them)
autodoc_default_options = {"members": True, "show-inheritance": True,
                           "ignore-module-all": True,
                           "special-members": "__call__"}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # "Attributes:" as fields, not a second description

bibtex_bibfiles = ["references.bib"]
bibtex_reference_style = "author_year"

html_theme = "sphinx_book_theme"
html_title = "ott-enot"
html_theme_options = {
    "repository_url": "https://github.com/ott-enot/ott-enot",
    "use_repository_button": False,
    "show_toc_level": 2,
}
html_static_path = []

# Every reference must resolve: ott_enot's own names are checked; those of
# other packages are left unlinked (no intersphinx: the build must not need
# the network).
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(ott|jax|jaxlib|flax|optax|orbax|numpy|np|jnp|scipy|typing"
               r"|collections|matplotlib|hypothesis|os|pathlib|enum|abc"
               r"|dataclasses|types|functools|concurrent|threading)(\..*)?"),
    (r"py:.*", r"(Any|Optional|Union|Callable|Sequence|Mapping|Iterator|Iterable"
               r"|Dict|List|Tuple|Hashable|Literal|NamedTuple|Protocol|ClassVar"
               r"|TypeVar|Generic|None|True|False)"),
    (r"py:class", r"(int|float|str|bool|bytes|dict|list|tuple|object|type"
                  r"|Exception|ValueError|TypeError|RuntimeError|KeyError"
                  r"|ImportError|KeyboardInterrupt)"),
    (r"py:.*", r"(.*\.)?_[A-Za-z].*"),  # private names are not documented
    (r"py:func", r"selu"),  # from jax.nn.elu's docstring (ConditionalMLP.act_fn)
    (r"py:class", r"ArrayTree"),  # training.state's type variable
]


def _object(path):
  """The object at a dotted ``path`` (a module, then attributes), or None."""
  import importlib  # pylint: disable=import-outside-toplevel
  parts = path.split(".")
  for i in range(len(parts), 0, -1):
    try:
      obj = importlib.import_module(".".join(parts[:i]))
    except ImportError:
      continue
    try:
      for part in parts[i:]:
        obj = getattr(obj, part)
    except AttributeError:
      return None
    return obj
  return None


def _canonical(path):
  """Where the object a public path names is documented: its defining
  module and qualified name (``ott_enot.ENOTSolver`` ->
  ``ott_enot.solvers.enot.ENOTSolver``); attributes of a class follow it."""
  head, _, attr = path.rpartition(".")
  obj = _object(path)
  if obj is None:
    return None
  owner = _object(head) if head else None
  if isinstance(owner, type) and attr:  # a member: where a class defines it
    for klass in owner.__mro__:
      if attr in vars(klass) and klass.__module__.startswith("ott_enot"):
        return f"{klass.__module__}.{klass.__qualname__}.{attr}"
  module, qualname = getattr(obj, "__module__", None), getattr(
      obj, "__qualname__", None)
  if isinstance(module, str) and isinstance(qualname, str) and (
      module.startswith("ott_enot")) and not isinstance(obj, property):
    return f"{module}.{qualname}"
  parent = _canonical(head) if head else None
  return f"{parent}.{attr}" if parent else None


def _resolve_public_path(app, env, node, contnode):
  """Resolve references to ott_enot's public paths (re-exports such as
  ``ott_enot.ENOTSolver``, names imported into a module, members of the
  current class) to where autodoc documents them."""
  if node.get("refdomain") != "py":
    return None
  target = node["reftarget"].lstrip("~.")
  module, cls = node.get("py:module"), node.get("py:class")
  candidates = [target]
  if cls and module:
    candidates.append(f"{module}.{cls}.{target}")
  if module:
    candidates.append(f"{module}.{target}")
  domain = env.get_domain("py")
  for candidate in candidates:
    if not candidate.startswith("ott_enot"):
      continue
    canonical = _canonical(candidate)
    if canonical is None:
      continue
    found = domain.resolve_any_xref(env, node["refdoc"], app.builder,
                                    canonical, node, contnode)
    if found:
      return found[0][1]
  return None


def setup(app):
  app.connect("missing-reference", _resolve_public_path)
