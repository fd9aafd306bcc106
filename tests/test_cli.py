"""The command line at its edges: one feature-id grammar, steering records that keep every
option apart, prompts filed under their own id, one tokenization, and user errors that
print a message instead of a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from graphkit.checks import Workspace, prompt_id
from graphkit.cli import main
from loaders.graph.load import load_run
from loaders.graph.store import cypher, open_store
from loaders.model import prompt_ids
from tests.factories import tiny_tokenizer

PROMPT = "What is the color of grass? Answer in one word within <answer></answer>"


@pytest.fixture
def store(tiny_run: Path, tmp_path: Path) -> str:
    spec = str(tmp_path / "graph")
    s = open_store(spec)
    load_run(tiny_run, s, progress=False)
    s.close()
    return spec


def run(*args: str, ok: bool = True) -> Result:
    res = CliRunner().invoke(main, list(args))
    if ok:
        assert res.exit_code == 0, res.output
    return res


def a_source(store: str) -> str:
    """The full id of a feature with downstream edges."""
    rows = json.loads(
        run("cypher", "MATCH (f:Feature)-[:FEEDS]->() RETURN DISTINCT f.id AS id", "--store", store, "--json").stdout
    )
    return sorted(r["id"] for r in rows)[0]


def test_one_feature_id_grammar_in_and_out(store: str) -> None:
    full = a_source(store)
    dictionary, layer, index = full.rsplit("/", 2)
    short = f"{layer}/{index}"
    by_short = json.loads(run("downstream", short, "--store", store, "--json").stdout)
    by_full = json.loads(run("downstream", full, "--store", store, "--json").stdout)
    assert by_short == by_full and by_short["root"] == full
    assert by_short["edges"] and all(e["source"] == full for e in by_short["edges"])
    assert all(n["id"].startswith(dictionary + "/") for n in by_short["nodes"])
    two = json.loads(run("downstream", short, "--store", store, "--json", "--hops", "2").stdout)
    assert set(two) == set(by_short) == {"root", "nodes", "edges"}  # one shape for every --hops
    text = run("downstream", short, "--store", store).stdout
    assert f"downstream of {full}" in text and by_short["edges"][0]["target"] in text  # printed as given back
    params = ["--param", "window=1", "--param", "k=10", "--json"]
    looks_short = json.loads(run("query", "lookalikes", "--store", store, "--param", f"id={short}", *params).stdout)
    looks_full = json.loads(run("query", "lookalikes", "--store", store, "--param", f"id={full}", *params).stdout)
    assert looks_short == looks_full and looks_short
    res = run("downstream", f"other-dictionary/{short}", "--store", store, ok=False)
    assert res.exit_code == 1 and "is a feature of 'other-dictionary'" in res.output


def test_steering_records_keep_every_option_apart(store: str) -> None:
    full = a_source(store)
    common = ["steer", full, "--store", store, "--prompt", PROMPT, "--mode", "add", "--value", "2", "--json"]
    run(*common, "--max-new-tokens", "3")
    run(*common, "--max-new-tokens", "3", "--prompt-only")
    run(*common, "--max-new-tokens", "5")
    run(*common, "--max-new-tokens", "5")  # the same options again: the same record
    rows = json.loads(run("query", "feature_steering", "--store", store, "--param", f"id={full}", "--json").stdout)
    assert len(rows) == 3
    held = {(r["on_generated"], r["max_new_tokens"]) for r in rows}
    assert held == {(True, 3), (False, 3), (True, 5)}  # steering generated tokens is the default


def test_a_prompt_id_held_by_another_prompt_is_refused(store: str) -> None:
    ws = Workspace.open(store)
    pid = prompt_id(ws.model_name, PROMPT)
    ws.store.write(cypher("write_prompt"), {"id": pid, "model": ws.model_name, "text": "something else", "tokens": []})
    with pytest.raises(Exception, match="belongs to another prompt"):
        ws.analyze(PROMPT)


def test_prompts_are_tokenized_one_way_whether_or_not_the_tokenizer_adds_bos() -> None:
    adds = tiny_tokenizer()
    assert adds("grass is green").input_ids[0] == adds.bos_token_id  # adds BOS itself
    plain = tiny_tokenizer()
    plain._tokenizer.post_processor = None  # GPT-2 style: BOS exists, is not added
    assert plain("grass is green").input_ids[0] != plain.bos_token_id
    for tok in (adds, plain):
        ids = prompt_ids(tok, "grass is green")
        assert ids[0] == tok.bos_token_id and ids[1:] == tok("grass is green", add_special_tokens=False).input_ids
    assert prompt_ids(adds, "grass is green") == prompt_ids(plain, "grass is green")


@pytest.mark.parametrize(
    "args,message",
    [
        (["downstream", "1/2", "--store", "{file}"], "is a file; an embedded store is a directory"),
        (["bench", "run", "{file}", "--predictor", "random"], "line 1: not JSON"),
        (["steer", "--select", "dictionaries", "--prompt", "hi", "--store", "{store}"], "is not a feature id"),
        (["downstream", "1/x", "--store", "{store}"], "'1/x' is not a feature id"),
        (["steer", "0/1", "--prompt", "hi", "--store", "{missing}"], "no graph store at"),
        (["query", "no_such_query", "--store", "{store}"], "no query 'no_such_query'"),
    ],
)
def test_user_errors_print_a_message_not_a_traceback(store: str, tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "a-file").write_text("not a store\n")
    where = {"file": str(tmp_path / "a-file"), "store": store, "missing": str(tmp_path / "nothing-here")}
    res = run(*(a.format(**where) for a in args), ok=False)
    assert res.exit_code == 1, res.output
    assert message in res.output and "Traceback" not in res.output
    assert not (tmp_path / "nothing-here").exists(), "a mistyped --store must not create a store"
    debug = CliRunner().invoke(main, ["--debug", *(a.format(**where) for a in args)])
    assert debug.exception is not None and not isinstance(debug.exception, SystemExit)  # --debug re-raises


def test_the_judge_says_what_it_lacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from graphkit.bench.judge import Judge, JudgeConfig, JudgeError

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    judge = Judge(JudgeConfig(provider="anthropic", model="m", cache_dir=tmp_path))
    with pytest.raises(JudgeError, match="set ANTHROPIC_API_KEY"):
        judge.complete("system", "user")


@pytest.mark.parametrize("kind", ["embedded", "neo4j"])
def test_drop_removes_one_dictionary_and_what_hangs_on_it(tiny_run: Path, tmp_path: Path, kind: str, request) -> None:
    from tests.conftest import NEO4J_PASSWORD, loaded_store

    spec = loaded_store(kind, request, tiny_run, tmp_path, name="a")
    s = open_store(spec)
    load_run(tiny_run, s, name="b", progress=False)
    s.close()
    env = {"NEO4J_PASSWORD": NEO4J_PASSWORD}
    steer = ["steer", "0/1", "--dictionary", "a", "--prompt", PROMPT, "--max-new-tokens", "2", "--store", spec]
    assert CliRunner().invoke(main, steer, env=env).exit_code == 0

    def count(q: str) -> int:
        res = CliRunner().invoke(main, ["cypher", q, "--store", spec, "--json"], env=env)
        assert res.exit_code == 0, res.output
        return int(json.loads(res.stdout)[0]["n"])

    before_b = count("MATCH (f:Feature {dictionary: 'b'})-[e:FEEDS]->() RETURN count(e) AS n")
    assert count("MATCH (s:Steering) RETURN count(s) AS n") == 1
    res = CliRunner().invoke(main, ["drop", "a", "--store", spec, "--yes"], env=env)
    assert res.exit_code == 0, res.output
    assert count("MATCH (f:Feature {dictionary: 'a'}) RETURN count(f) AS n") == 0
    assert count("MATCH (d:Dictionary) RETURN count(d) AS n") == 1
    assert count("MATCH (f:Feature {dictionary: 'b'})-[e:FEEDS]->() RETURN count(e) AS n") == before_b > 0
    assert count("MATCH (s:Steering) RETURN count(s) AS n") == 0
    res = CliRunner().invoke(main, ["drop", "a", "--store", spec, "--yes"], env=env)
    assert res.exit_code == 1 and "holds no dictionary 'a'" in res.output


def test_the_schema_document_lists_every_property_and_relationship() -> None:
    from loaders.graph.schema import NODES, RELS

    doc = (Path(__file__).parents[1] / "docs" / "schema.md").read_text()
    for label, props in NODES.items():
        section = doc.split(f"### {label}\n", 1)[1].split("###", 1)[0]
        for k, t in props.items():
            assert f"| `{k}` | {t} |" in section, (label, k)
    for name, r in RELS.items():
        assert f"| `{name}` | {r.source} → {r.target} |" in doc, name


def test_ctrl_c_prints_a_line_and_exits_130(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import loaders.graph.load as load_module

    def interrupted(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(load_module, "load_run", interrupted)
    res = CliRunner().invoke(main, ["load", str(tiny_run), "--store", str(tmp_path / "g")])
    assert res.exit_code == 130 and "interrupted" in res.output and "Traceback" not in res.output


def _cli_option(path: str, name: str) -> object:
    """The default of option `name` of the command at `path` ("bench build")."""
    import click

    cmd: click.Command = main
    for part in path.split():
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[part]
    (param,) = [p for p in cmd.params if p.name == name]
    return param.default


def test_cli_defaults_are_the_librarys() -> None:
    """A default the CLI states must be the one the library call it wires to uses (`analyze
    --k` once said 5 where `Workspace.analyze` used 8); options read it from the library."""
    import inspect

    from graphkit.bench.judge import JudgeConfig
    from graphkit.config import BuildConfig, SteerConfig
    from graphkit.directions import steer_direction
    from graphkit.graph import FeatureGraph
    from graphkit.report import view_feature
    from loaders.config import CollectConfig, StatsConfig

    def param(fn: object, name: str) -> object:
        return inspect.signature(fn).parameters[name].default  # type: ignore[arg-type]

    pairs = {
        ("downstream", "k"): param(FeatureGraph.downstream, "k"),
        ("upstream", "k"): param(FeatureGraph.upstream, "k"),
        ("downstream", "sign"): param(FeatureGraph.downstream, "sign"),
        ("motor", "k"): param(FeatureGraph.motor_paths, "k"),
        ("load", "batch_size"): param(load_run, "batch_size"),
        ("analyze", "k"): param(Workspace.analyze, "k"),
        ("steer", "max_new_tokens"): param(Workspace.steer_features, "max_new_tokens"),
        ("steer", "on_generated"): param(Workspace.steer_features, "on_generated"),
        ("direction steer", "max_new_tokens"): param(steer_direction, "max_new_tokens"),
        ("direction steer", "on_generated"): param(steer_direction, "on_generated"),
        ("steer", "mode"): SteerConfig.mode,
        ("steer", "value"): SteerConfig.value,
        ("view", "hops"): param(view_feature, "hops"),
        ("view", "k"): param(view_feature, "k"),
        ("bench build", "mode"): BuildConfig.mode,
        ("bench build", "value"): BuildConfig.value,
        ("bench run", "provider"): JudgeConfig.provider,
        ("bench run", "judge_model"): JudgeConfig.model,
        ("collect", "top_k"): CollectConfig.top_k,
        ("collect", "dtype"): CollectConfig.dtype,
        ("collect", "batch_tokens"): StatsConfig.batch_tokens,
        ("collect", "window"): StatsConfig.window,
    }
    for (cmd, name), library in pairs.items():
        assert _cli_option(cmd, name) == library, (cmd, name)
    # None: "decided later" (the model's context, half the device's memory, cuda when available)
    for name in ("context", "memory_budget", "device", "max_tokens"):
        assert _cli_option("collect", name) is None, name


def test_options_take_type_choices_and_help_from_the_library() -> None:
    """`graphkit.cli.options.option` reads a field's default, a Literal's choices and the
    field's docstring; a bool with default True gets its --no- twin."""
    import typing

    import click

    from graphkit.cli.options import _field_docs
    from graphkit.config import Mode, SteerConfig
    from loaders.config import StatsConfig

    cmd = main.commands["collect"]
    window = next(p for p in cmd.params if p.name == "window")
    assert isinstance(window, click.Option)
    assert window.help == _field_docs(StatsConfig)["window"] and "subject" in window.help
    assert window.type is click.INT
    max_tokens = next(p for p in cmd.params if p.name == "max_tokens")
    assert max_tokens.type is click.INT and max_tokens.default is None  # `int | None` is an int option
    mode = next(p for p in main.commands["steer"].params if p.name == "mode")
    assert isinstance(mode.type, click.Choice) and tuple(mode.type.choices) == typing.get_args(Mode)
    res = run("steer", "1/1", "--store", "nowhere", "--prompt", "x", "--mode", "scale", ok=False)
    assert res.exit_code == 2 and "'scale' is not one of" in res.output
    flag = next(p for p in main.commands["steer"].params if p.name == "on_generated")
    assert isinstance(flag, click.Option) and flag.default is SteerConfig.on_generated
    assert flag.secondary_opts == ["--prompt-only"]
