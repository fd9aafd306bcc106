"""plotly views render in a real headless browser, with the expected nodes and no console errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from graphkit.cli import main
from graphkit.graph import FeatureGraph
from loaders.graph.load import load_run
from loaders.graph.store import open_store
from tests.browser import chromium, render

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@pytest.fixture(scope="module")
def store_dir(tiny_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("viewstore") / "graph"
    store = open_store(path)
    load_run(tiny_run, store, progress=False)
    store.close()
    return path


@pytest.mark.skipif(chromium() is None, reason="Debian's chromium is needed (apt-get install chromium)")
def test_feature_view_renders_in_chromium(store_dir: Path, tmp_path: Path) -> None:
    store = open_store(store_dir, read_only=True)
    g = FeatureGraph(store)
    source = g.upstream(2, 3, k=1)[0]  # a feature that feeds the planted "green" motor feature
    nb = g.neighbourhood(source.layer, source.index, hops=2, k=5)
    expected = {f"{a['layer']}/{a['index']}" for _, a in nb.nodes(data=True)}
    store.close()
    out = tmp_path / "view.html"
    res = CliRunner().invoke(
        main, ["view", f"{source.layer}/{source.index}", "--store", str(store_dir), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    page = render(out, screenshot=ARTIFACTS / "feature-view.png")
    assert page.console_errors == []
    assert page.dom.count('class="main-svg"') >= 3, "three plotly figures rendered"
    for node in expected:
        assert f">{node}<" in page.dom or f">{node} say" in page.dom, f"node {node} missing from the plot"
    assert "say &#39;green&#39;" in page.dom or "say 'green'" in page.dom, "the motor feature is labelled"
    assert "Top activating examples" in page.dom and "Downstream by |TWERA|" in page.dom
    assert (ARTIFACTS / "feature-view.png").stat().st_size > 10_000
