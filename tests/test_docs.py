"""The documentation builds with warnings as errors, as `make docs` does, and documents the API.

The build runs on a copy of docs/ and examples/ (Sphinx writes the generated API pages and the
gallery next to its sources), in about 20 s on 2 cores: the gallery's examples are not run
(tests/test_examples.py runs them).
"""

import importlib
import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

# The `docs` extra; `make test` installs it. Missing in CI is a failure, not a skip.
DOCS_PACKAGES = ("sphinx", "numpydoc", "sphinx_gallery", "myst_parser", "furo")


def _require_docs_extra():
    for name in DOCS_PACKAGES:
        if os.environ.get("CI"):
            importlib.import_module(name)
        else:
            pytest.importorskip(name, reason="the docs extra: pip install -e '.[docs]'")


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    """The HTML of a fresh build of the documentation; fails with Sphinx's warnings."""
    _require_docs_extra()
    root = tmp_path_factory.mktemp("docs")
    shutil.copytree(ROOT / "docs", root / "docs",
                    ignore=shutil.ignore_patterns("_build", "generated", "auto_examples"))
    shutil.copytree(ROOT / "examples", root / "examples",
                    ignore=shutil.ignore_patterns("__pycache__", "*.png", "*.autodeuq"))
    out = root / "html"
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html",
         "-d", str(root / "doctrees"), str(root / "docs"), str(out)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"the docs build failed (make docs):\n{proc.stderr[-6000:]}"
    return out


def _text(path):
    """A page's text without tags, whitespace collapsed."""
    text = re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8"))
    return " ".join(text.replace("&#8217;", "'").replace("&quot;", '"').split())


def test_every_public_name_has_an_api_page(html):
    """Whatever a subpackage exports in __all__ is documented, under that subpackage."""
    pages = {p.stem for p in (html / "generated").glob("*.html")}
    packages = sorted(p.stem if p.suffix == ".py" else p.name
                      for p in (ROOT / "autodeuq").iterdir()
                      if not p.name.startswith("_") and p.name not in ("cli.py",)
                      and (p.suffix == ".py" or (p / "__init__.py").exists()))
    assert {"estimators", "uncertainty", "persistence"} <= set(packages)
    missing = []
    for package in packages:
        module = importlib.import_module(f"autodeuq.{package}")
        assert f"autodeuq.{package}" in pages
        missing += [f"autodeuq.{package}.{name}" for name in module.__all__
                    if f"autodeuq.{package}.{name}" not in pages]
    assert not missing, f"no API page for {missing}"


def test_api_pages_show_the_docstrings(html):
    page = _text(html / "generated" / "autodeuq.estimators.AutoDEUQRegressor.html")
    compact = page.replace(" ", "")
    # numpydoc sections, and the uncertainty API inherited from the mixin
    for word in ("Parameters", "Attributes", "members_", "Examples"):
        assert word in page
    assert "ensemble_sizeint,default=5" in compact
    for method in ("predict_uncertainty(X)", "predict_interval(X,coverage=0.9)", "save(path)"):
        assert method in compact
    # members that torch, skorch and scikit-learn document are left to them
    assert "set_predict_request" not in page
    module = _text(html / "generated" / "autodeuq.nn.GaussianMLP.html")
    assert "register_forward_hook" not in module


def test_pages_and_gallery(html):
    index = _text(html / "index.html")
    for word in ("aleatoric", "epistemic", "AutoDEUQRegressor"):
        assert word in index
    quickstart = _text(html / "quickstart.html").replace(" ", "")  # code is split in tokens
    assert "PredictiveBandsDisplay.from_estimator(model,X,y)" in quickstart
    assert "autodeuqfitdata.csv--targety--outmodel" in quickstart
    guide = _text(html / "user_guide.html")
    for section in ("Aleatoric and epistemic uncertainty", "Budgets", "Dask", "GPUs",
                    "Checkpoints", "Saving and loading"):
        assert section in guide
    for page in ("install", "api", "changelog", "design", "bad_input", "security"):
        assert (html / f"{page}.html").exists()
    # One gallery page per example, titled by its docstring; the scripts of examples/alcf are
    # not in the gallery.
    examples = sorted((ROOT / "examples").glob("plot_*.py"))
    gallery = _text(html / "auto_examples" / "index.html")
    for script in examples:
        assert (html / "auto_examples" / f"{script.stem}.html").exists()
    assert not list((html / "auto_examples").glob("alcf*"))
    assert "Examples" in gallery
