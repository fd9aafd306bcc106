"""Tiny random models and dictionaries for tests: built offline, in seconds, from fixed seeds."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast

from loaders.dictionary import Activation, Dictionary, save_clt, save_plt
from loaders.model import HookedModel, Site

TEXTS = [
    "What is the color of grass? Answer in one word within <answer></answer> <answer>green</answer>",
    "The sky is blue and the sea is blue.",
    "def add(a, b):\n    return a + b",
    'color = "green"  # #00FF00',
    "The capital of France is Paris.",
    "import os\nprint(os.getcwd())",
    "Snow is white. Coal is black. Grass is green.",
    ".grass { color: #00ff00; }",
]

FAMILY_CONFIGS = {
    "gpt2": dict(model_type="gpt2", n_embd=16, n_layer=3, n_head=2, n_positions=64),
    "llama": dict(
        model_type="llama",
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    ),
    "qwen2": dict(
        model_type="qwen2",
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    ),
    "qwen3": dict(
        model_type="qwen3",
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=64,
    ),
    "gemma2": dict(
        model_type="gemma2",
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=64,
        query_pre_attn_scalar=8,
        sliding_window=32,
    ),
}


@cache
def tiny_tokenizer() -> PreTrainedTokenizerFast:
    from loaders.zoo.tokenizer import train_tokenizer

    path = Path(__file__).parent / ".cache" / "tokenizer"
    if (path / "tokenizer.json").exists():
        return PreTrainedTokenizerFast.from_pretrained(path)
    return train_tokenizer(TEXTS * 4, vocab_size=300, out=path)


def tiny_model(family: str = "llama", seed: int = 0, d_model: int = 16) -> HookedModel:
    """A random model of `family` with 3 layers and d_model 16, with non-trivial norm gains."""
    tok = tiny_tokenizer()
    params = dict(FAMILY_CONFIGS[family])
    model_type = params.pop("model_type")
    params["n_embd" if family == "gpt2" else "hidden_size"] = d_model
    cfg = AutoConfig.for_model(
        model_type,
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **params,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").float()
    base = 0.0 if family == "gemma2" else 1.0  # Gemma's gain is 1 + weight
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or "ln_" in name:
                if name.endswith("weight"):
                    p.copy_(base + 0.3 * torch.randn_like(p))
                else:
                    p.copy_(0.1 * torch.randn_like(p))
    return HookedModel(model.eval(), tok, name=f"tiny-{family}")


def random_dictionary(
    model: HookedModel,
    kind: str = "clt",
    n_features: int = 24,
    read_site: Site = "mlp_in",
    activation: str = "relu",
    seed: int = 0,
    write_site: Site = "mlp_out",
) -> Dictionary:
    """Random weights whose features fire on roughly a third of tokens."""
    g = torch.Generator().manual_seed(seed)
    L, D = model.n_layers, model.d_model
    layers = (1,) if kind == "sae" else tuple(range(L))
    write: Site = read_site if kind == "sae" else write_site
    W_enc, b_enc, W_dec, b_dec, act = {}, {}, {}, {}, {}
    for l in layers:
        W_enc[l] = torch.randn(n_features, D, generator=g) / D**0.5
        b_enc[l] = torch.randn(n_features, generator=g) * 0.3 - 0.2
        n_targets = L - l if kind == "clt" else 1
        W_dec[l] = torch.randn(n_features, n_targets, D, generator=g) * 0.2
        b_dec[l] = torch.randn(D, generator=g) * 0.01
        if activation == "jumprelu":
            act[l] = Activation("jumprelu", threshold=torch.rand(n_features, generator=g) * 0.3)
        elif activation == "topk":
            act[l] = Activation("topk", k=4)
        else:
            act[l] = Activation("relu")
    return Dictionary(kind, layers, read_site, write, W_enc, b_enc, W_dec, b_dec, act, model_name=model.name)  # type: ignore[arg-type]


def save_dictionary(d: Dictionary, path: Path) -> Path:
    """Write `d` in circuit-tracer's CLT or PLT layout (graphkit's own writers).

    SAELens files are never written here: tests read the ones SAELens itself saved
    (tests/golden, made by tests/golden/make.py).
    """
    if d.kind == "clt":
        save_clt(d, path)
    elif d.kind == "plt":
        save_plt(d, path)
    else:
        raise ValueError("SAE files in tests come from SAELens itself: use tests/golden/saelens")
    return path


def write_corpus(path: Path, n_docs: int = 40, seed: int = 0) -> Path:
    """A text corpus of `n_docs` lines mixing the factory texts, one document per line."""
    g = torch.Generator().manual_seed(seed)
    words = " ".join(TEXTS).replace("\n", " ").split()
    lines = []
    for _ in range(n_docs):
        n = int(torch.randint(3, 30, (1,), generator=g))
        idx = torch.randint(0, len(words), (n,), generator=g)
        lines.append(" ".join(words[i] for i in idx))
    path.write_text("\n".join(lines) + "\n")
    return path
