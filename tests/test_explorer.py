"""`graphkit serve`: every page through the app's own HTTP callbacks on both stores (the rows
are the graph's), and, in a real headless Chromium, the demo's finding repeated in the browser."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from graphkit.explorer import Backend, make_app
from graphkit.graph import FeatureGraph
from loaders.graph.store import open_store
from tests.conftest import NEO4J_PASSWORD, loaded_store

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "explorer"


class Client:
    """Calls the app's callbacks as the browser does (POST /_dash-update-component)."""

    def __init__(self, backend: Backend):
        app = make_app(backend)
        self.http = app.server.test_client()
        self.names = {k.split("@")[0]: k for k in app.callback_map if k.count(".") == 1}  # url.href → url.href@hash

    def call(self, outputs: list[str], inputs: list[tuple[str, str, Any]], state: list[tuple[str, str, Any]] = ()):  # type: ignore[assignment]
        outs = [dict(zip(("id", "property"), o.split("."), strict=True)) for o in outputs]
        payload = {
            "output": self.names.get(outputs[0], outputs[0])
            if len(outputs) == 1
            else ".." + "...".join(outputs) + "..",
            "outputs": outs[0] if len(outputs) == 1 else outs,
            "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
            "changedPropIds": [f"{inputs[0][0]}.{inputs[0][1]}"],
            "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
        }
        r = self.http.post("/_dash-update-component", json=payload)
        assert r.status_code in (200, 204), r.get_data(as_text=True)[:2000]
        if r.status_code == 204:
            return [None] * len(outputs)
        response = r.get_json()["response"]
        return [response.get(o["id"], {}).get(o["property"]) for o in outs]

    def page(self, path: str, search: str = "") -> Any:
        (out,) = self.call(["page.children"], [("url", "pathname", path), ("url", "search", search)])
        return out


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every component in a serialized layout."""
    if isinstance(node, dict) and "props" in node:
        yield node
        yield from walk(node["props"].get("children"))
        for key, v in node["props"].items():
            if key != "children" and isinstance(v, dict) and "props" in v:
                yield from walk(v)
    elif isinstance(node, list):
        for n in node:
            yield from walk(n)


def by_id(layout: Any, cid: str) -> dict[str, Any]:
    found = [n for n in walk(layout) if n["props"].get("id") == cid]
    assert found, f"no #{cid}"
    return found[0]


def body(layout: Any, cid: str) -> Any:
    """The rows of table #cid (its header links re-sort the page)."""
    return by_id(layout, cid)["props"]["children"][1]


def text(layout: Any) -> str:
    out: list[str] = []

    def collect(n: Any) -> None:
        if isinstance(n, str | int | float):
            out.append(str(n))
        elif isinstance(n, list):
            for x in n:
                collect(x)
        elif isinstance(n, dict) and "props" in n:
            collect(n["props"].get("children"))

    collect(layout)
    return " ".join(out)


def feature_links(layout: Any) -> list[str]:
    from urllib.parse import parse_qs, urlparse

    return [
        parse_qs(urlparse(n["props"]["href"]).query)["id"][0]
        for n in walk(layout)
        if n["type"] == "Link" and n["props"].get("href", "").startswith("/feature?")
    ]


@pytest.fixture(params=["embedded", "neo4j"])
def store(request: pytest.FixtureRequest, tiny_run: Path, tmp_path: Path) -> str:
    return loaded_store(request.param, request, tiny_run, tmp_path)


def planted(spec: str) -> tuple[FeatureGraph, str]:
    """The graph and the feature the fixture plants to say "green"."""
    g = FeatureGraph(open_store(spec, read_only=True))
    return g, g.id(g.info["n_layers"] - 1, 3)


def test_search_feature_and_neighbourhood_pages_show_the_graphs_rows(store: str) -> None:
    g, green = planted(store)
    expected_search = [r["id"] for r in g.by_unembed("green", k=50)]
    layer, index = g.resolve(green)
    source = next(f for f in (g.id(0, i) for i in range(24)) if g.downstream(*g.resolve(f), k=10))
    down = g.downstream(*g.resolve(source), k=10)
    down_by_era = g.downstream(*g.resolve(source), k=10, by="era")
    up = g.upstream(*g.resolve(source), k=10)
    g.store.close()
    c = Client(Backend(store))
    layout = c.http.get("/_dash-layout").get_data(as_text=True)
    assert NEO4J_PASSWORD not in layout, "no credentials in the pages"

    (results,) = c.call(["search-results.children"], [("search-go", "n_clicks", 1), ("search-text", "value", "green")],
                        [("search-by", "value", "unembed")])  # fmt: skip
    assert green in expected_search and feature_links(results) == list(dict.fromkeys(expected_search))
    (results,) = c.call(["search-results.children"], [("search-go", "n_clicks", 1), ("search-text", "value", "99/0")],
                        [("search-by", "value", "id")])  # fmt: skip
    assert "99" in text(results)
    assert results["props"]["className"] == "error", "a bad id is a message, not a server error"

    page = c.page("/feature", f"?id={source}")
    assert feature_links(body(page, "downstream-table"))[: len(down)] == [e.id for e in down]
    assert feature_links(body(page, "upstream-table"))[: len(up)] == [e.id for e in up]
    by_era = c.page("/feature", f"?id={source}&sort=era")
    assert feature_links(body(by_era, "downstream-table")) == [e.id for e in down_by_era]
    green_page = c.page("/feature", f"?id={green}")
    assert "says 'green'" in text(green_page) or "says ' green'" in text(green_page)

    nb = c.page("/neighbourhood", f"?id={source}&hops=2&k=3")
    figure = by_id(nb, "nb-graph")["props"]["figure"]
    nodes = [n for t in figure["data"] if t.get("customdata") for n in t["customdata"]]
    assert source in nodes and {e.id for e in down[:3]} <= set(nodes)
    (href,) = c.call(["url.href"], [("nb-graph", "clickData", {"points": [{"customdata": down[0].id}]})])
    assert href == f"/feature?id={down[0].id.replace('/', '%2F')}"
    assert (layer, index) == g.resolve(green)


def test_the_console_reads_and_refuses_what_graphkit_cypher_refuses(store: str) -> None:
    g, green = planted(store)
    before = g.store.read("MATCH (n) RETURN count(n) AS n")[0]["n"]
    g.store.close()
    c = Client(Backend(store))
    (preset,) = c.call(["cypher-text.value"], [("cypher-preset", "value", "feature")])
    assert "MATCH" in preset
    params = f"id={green.split('/', 1)[1]}"  # LAYER/INDEX, as the CLI takes it
    (rows,) = c.call(["cypher-results.children"], [("cypher-run", "n_clicks", 1)],
                     [("cypher-text", "value", preset), ("cypher-params", "value", params)])  # fmt: skip
    assert feature_links(rows) == [green]
    for bad in ("CREATE (:Feature {id: 'x'})", "LOAD CSV FROM 'file:///etc/passwd' AS l RETURN l",
                "MATCH (n) /* ' */ DETACH DELETE n"):  # fmt: skip
        (out,) = c.call(["cypher-results.children"], [("cypher-run", "n_clicks", 1)],
                        [("cypher-text", "value", bad), ("cypher-params", "value", "")])  # fmt: skip
        assert out["props"]["className"] == "error" and "read-only" in text(out), bad
    g = FeatureGraph(open_store(store, read_only=True))
    assert g.store.read("MATCH (n) RETURN count(n) AS n")[0]["n"] == before
    g.store.close()


def test_analysis_and_steering_from_the_app_are_written_to_the_graph(tiny_run: Path, tmp_path: Path) -> None:
    spec = str(tmp_path / "graph")
    s = open_store(spec)
    from loaders.graph.load import load_run

    load_run(tiny_run, s, progress=False)
    s.close()
    _, green = planted(spec)
    c = Client(Backend(spec))
    prompt = "the grass is"
    analysis, options, selected = c.call(
        ["prompt-analysis.children", "steer-select.options", "steer-select.value"],
        [("prompt-analyze", "n_clicks", 1)],
        [("prompt-text", "value", prompt), ("prompt-context", "value", []), ("prompt-word", "value", ""),
         ("prompt-k", "value", 4), ("steer-select", "options", [{"label": green, "value": green}]),
         ("steer-select", "value", [green])],
    )  # fmt: skip
    assert "analysis-table" in json.dumps(analysis)
    offered = [o["value"] for o in options]
    assert offered[0] == green and selected == [green], "a feature opened from a link stays selected"
    (out,) = c.call(["steer-results.children"], [("steer-go", "n_clicks", 1)],
                    [("steer-select", "value", offered[:2]), ("prompt-text", "value", prompt),
                     ("steer-mode", "value", "add"), ("steer-value", "value", 4.0),
                     ("steer-positions", "value", "all"), ("steer-generated", "value", ["yes"])])  # fmt: skip
    assert feature_links(body(out, "steer-table")) == offered[:2]
    page = c.page("/feature", f"?id={offered[1]}")
    stored = text(by_id(page, "steering-table"))
    assert prompt in stored and "add" in stored and "+4" in stored


# -- the browser --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> str:
    from graphkit.demo import DemoConfig, run_demo

    out = tmp_path_factory.mktemp("demo")
    report = run_demo(out, DemoConfig(prompts=("What is the hex value of green?",)), progress=False)
    return str(report.run / "graph")


@pytest.fixture(params=["embedded", "neo4j"])
def served(request: pytest.FixtureRequest, demo_store: str) -> Iterator[str]:
    """The app on the demo's store, or on the demo's run loaded into the test Neo4j."""
    from werkzeug.serving import make_server

    from loaders.graph.load import load_run
    from tests.conftest import clear_neo4j

    spec = demo_store
    if request.param == "neo4j":
        spec = request.getfixturevalue("neo4j_uri")
        clear_neo4j(spec)
        neo = open_store(spec)
        load_run(Path(demo_store).parent, neo, progress=False)
        neo.close()
    server = make_server("127.0.0.1", 0, make_app(Backend(spec)).server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.mark.slow  # ≈ 1 min per store: the demo's store, then a real browser
def test_the_demo_finding_in_the_browser(served: str, request: pytest.FixtureRequest) -> None:
    """Find the green look-alikes, compare their downstream, steer each, see which one changes
    the answer, and find the check stored on its page — all by clicking."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.browser import chromium

    options = webdriver.ChromeOptions()
    options.binary_location = chromium() or "chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,1800"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    wait = WebDriverWait(driver, 120)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)

    store = request.node.callspec.params["served"]

    def shot(name: str) -> None:
        driver.save_screenshot(str(ARTIFACTS / f"{store}-{name}.png"))

    def when(cid: str) -> Any:
        return wait.until(EC.presence_of_element_located((By.ID, cid)))

    try:
        driver.get(served + "/")
        box = when("search-text")
        box.send_keys("green\n")
        results = when("search-table")
        shot("1-search")
        first = results.find_element(By.CSS_SELECTOR, "tbody a")
        opened = first.text
        first.click()
        down = when("downstream-table")
        assert opened in driver.find_element(By.TAG_NAME, "h2").text
        neighbour = down.find_element(By.CSS_SELECTOR, "tbody a")
        target = neighbour.text
        shot("2-feature")
        neighbour.click()
        wait.until(lambda d: target in d.find_element(By.TAG_NAME, "h2").text)
        shot("3-neighbour")

        driver.find_element(By.LINK_TEXT, "Prompt").click()
        prompt = "What is the color of grass? Answer in one word within <answer></answer>"
        when("prompt-text").send_keys(prompt)
        driver.find_element(By.CSS_SELECTOR, "#prompt-context input").click()
        driver.find_element(By.ID, "prompt-word").send_keys("green")
        driver.find_element(By.ID, "prompt-analyze").click()
        when("analysis-table")
        boxes = driver.find_elements(By.CSS_SELECTOR, "#steer-select input")
        assert len(boxes) >= 6 and all(b.is_selected() for b in boxes), "every look-alike of green is offered"
        driver.find_element(By.ID, "steer-go").click()
        table = when("steer-table")
        shot("4-steer")
        rows = table.find_elements(By.CSS_SELECTOR, "tbody tr")
        changed = [r.find_element(By.TAG_NAME, "a").text for r in rows if "changed" in r.text.split()]
        assert len(rows) == len(boxes) and changed == ["tiny-clt/0/166"], changed
        row = next(r for r in rows if "changed" in r.text.split())
        assert "Delhi" in row.text
        row.find_element(By.TAG_NAME, "a").click()
        stored = when("steering-table")
        assert prompt in stored.text and "yes" in stored.text
        shot("5-stored")
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()


def test_tabs_at_once_while_a_check_writes(tiny_run: Path, tmp_path: Path) -> None:
    """Pages from several threads while another analyzes a prompt (the embedded store's
    reader is closed and reopened around each write): every page renders, the write lands."""
    from loaders.graph.load import load_run

    spec = str(tmp_path / "graph")
    s = open_store(spec)
    load_run(tiny_run, s, progress=False)
    s.close()
    g, _ = planted(spec)
    ids = [g.id(layer, i) for layer in range(g.info["n_layers"]) for i in range(0, 24, 4)]
    g.store.close()
    backend = Backend(spec)
    failures: list[str] = []

    def browse() -> None:
        c = Client(backend)
        for fid in ids:
            page = c.page("/feature", f"?id={fid}")
            if fid not in text(page):
                failures.append(fid)

    def analyze() -> None:
        Client(backend).call(
            ["prompt-analysis.children", "steer-select.options", "steer-select.value"],
            [("prompt-analyze", "n_clicks", 1)],
            [("prompt-text", "value", "green grass"), ("prompt-context", "value", []), ("prompt-word", "value", ""),
             ("prompt-k", "value", 4), ("steer-select", "options", []), ("steer-select", "value", [])],
        )  # fmt: skip

    threads = [threading.Thread(target=browse) for _ in range(3)] + [threading.Thread(target=analyze)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    g = FeatureGraph(open_store(spec, read_only=True))
    assert g.store.read("MATCH (p:Prompt) RETURN count(p) AS n")[0]["n"] == 1


def test_serve_refuses_a_store_that_is_not_there(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from graphkit.cli import main

    res = CliRunner().invoke(main, ["serve", "--store", str(tmp_path / "nothing")])
    assert res.exit_code == 1 and "no graph store" in res.output and "Traceback" not in res.output
