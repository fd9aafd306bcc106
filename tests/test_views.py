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


OVERLAPS = """<script>
window.addEventListener('load', () => setTimeout(() => {
  const boxes = [...document.querySelectorAll('.textpoint text')].map(t => t.getBoundingClientRect());
  let n = 0;
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const a = boxes[i], b = boxes[j];
    if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) n++;
  }
  const div = document.createElement('div');
  div.id = 'overlaps';
  div.textContent = `labels=${boxes.length} overlaps=${n}`;
  document.body.appendChild(div);
}, 500));
</script>"""


@pytest.mark.skipif(chromium() is None, reason="Debian's chromium is needed (apt-get install chromium)")
def test_crowded_neighbourhood_labels_do_not_overlap_and_the_legend_explains_edges(tmp_path: Path) -> None:
    import re

    import networkx as nx

    from graphkit.views import neighbourhood_figure, write_report

    g = nx.DiGraph()
    root = "tiny-clt/0/1"
    g.add_node(root, layer=0, index=1, motor_word=None, top_tokens=[])
    for layer in (1, 2, 3):  # crowded columns (k = 10, two hops), some motor features with words
        for i in range(30):
            fid = f"tiny-clt/{layer}/{100 * layer + i}"
            g.add_node(
                fid, layer=layer, index=100 * layer + i, motor_word="green" if i % 5 == 0 else None, top_tokens=[]
            )
            g.add_edge(root, fid, twera=(-1) ** i / (i + 1), era=0.0, virtual_weight=0.0, twera_norm=0.0, hop=1)
    fig = neighbourhood_figure(g, root)
    page = write_report(tmp_path / "crowded.html", "crowded", [fig, OVERLAPS])
    rendered = render(page, screenshot=ARTIFACTS / "crowded-neighbourhood.png")
    assert rendered.console_errors == []
    found = re.search(r"labels=(\d+) overlaps=(\d+)", rendered.dom)
    assert found is not None, "the overlap check ran"
    assert int(found.group(1)) == g.number_of_nodes() and int(found.group(2)) == 0
    for entry in ("promotes (TWERA &gt; 0)", "suppresses (TWERA &lt; 0)", "width ∝ |TWERA|"):
        assert entry in rendered.dom, entry
