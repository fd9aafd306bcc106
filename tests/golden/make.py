"""Golden files made by the peer libraries' own code: SAELens, circuit-tracer, TransformerLens.

Run it in a separate environment that holds the peers (they pin other transformers versions
than graphkit does), from the repository root:

    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install 'sae-lens>=6' 'circuit-tracer==0.5.0' 'nnsight==0.6.3'
    /tmp/peers/bin/python tests/golden/make.py            # rewrites tests/golden/{saelens,circuit_tracer,hooks}

    python3 -m venv /tmp/peers5 && /tmp/peers5/bin/pip install 'sae-lens>=5,<6' 'pyarrow<20'
    /tmp/peers5/bin/python tests/golden/make.py --saelens5  # rewrites tests/golden/saelens5

What it writes (every dictionary directory exactly as the library saved it; references
beside it, never inside):

- ``saelens/<variant>/`` by ``SAE.save_model``; ``saelens/<variant>.reference.safetensors``
  holds fixed inputs ``x`` (n, d_in), SAELens's ``encode(x)`` as ``acts`` and its forward
  output (``decode(encode(x))``, plus ``W_skip`` for skip transcoders) as ``out``.
- ``circuit_tracer/<variant>/`` by ``to_safetensors`` (CLT, transcoder set), with the
  ``config.yaml`` such a directory carries on the Hub; its reference holds ``x``
  (layer, n, d_model), ``acts`` (layer, n, feature) from circuit-tracer's ``encode`` and
  ``out`` (layer, n, d_model) from its ``decode`` (with the input, for skip connections).
- ``hooks/<family>/`` a random transformers model (norm gains randomized, so a gain of 1 hides
  nothing) saved by ``save_pretrained``; ``hooks/<family>.reference.safetensors`` holds
  ``input_ids`` and, for layer 1, every hook TransformerLens's ``TransformerBridge`` caches
  under the names graphkit accepts (``blocks.1.ln2.hook_normalized`` …).

Sizes stay tiny (d_model 32, 64 features) so the files can be committed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from importlib import metadata
from pathlib import Path

import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
D, F, N = 32, 64, 6  # d_model, features, inputs


def _randomize(module: torch.nn.Module, seed: int, scale: float = 0.3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)


def _fresh(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


# -- SAELens 6 -------------------------------------------------------------------------------


def saelens6(out: Path) -> None:
    import sae_lens
    from sae_lens.saes.gated_sae import GatedSAE, GatedSAEConfig
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE, JumpReLUSAEConfig
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig
    from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig
    from sae_lens.saes.transcoder import (
        JumpReLUSkipTranscoder,
        JumpReLUSkipTranscoderConfig,
        JumpReLUTranscoder,
        JumpReLUTranscoderConfig,
        SkipTranscoder,
        SkipTranscoderConfig,
        Transcoder,
        TranscoderConfig,
    )

    def meta(hook: str = "blocks.1.hook_resid_post", **extra) -> SAEMetadata:
        return SAEMetadata(model_name="tiny-random", hook_name=hook, **extra)

    tc = {"hook": "blocks.1.ln2.hook_normalized", "hook_name_out": "blocks.1.mlp.hook_out"}
    variants = {
        "standard": (StandardSAE, StandardSAEConfig, {}, {}),
        "standard-no-bdec": (StandardSAE, StandardSAEConfig, {"apply_b_dec_to_input": False}, {}),
        "standard-layer-norm": (StandardSAE, StandardSAEConfig, {"normalize_activations": "layer_norm"}, {}),
        "standard-constant-norm": (
            StandardSAE,
            StandardSAEConfig,
            {"normalize_activations": "constant_norm_rescale"},
            {},
        ),
        "jumprelu": (JumpReLUSAE, JumpReLUSAEConfig, {}, {}),
        "topk": (TopKSAE, TopKSAEConfig, {"k": 8}, {}),
        "topk-rescale": (TopKSAE, TopKSAEConfig, {"k": 8, "rescale_acts_by_decoder_norm": True}, {}),
        "gated": (GatedSAE, GatedSAEConfig, {}, {}),
        "transcoder": (Transcoder, TranscoderConfig, {"apply_b_dec_to_input": False, "d_out": D}, tc),
        "skip-transcoder": (SkipTranscoder, SkipTranscoderConfig, {"apply_b_dec_to_input": False, "d_out": D}, tc),
        "jumprelu-transcoder": (
            JumpReLUTranscoder,
            JumpReLUTranscoderConfig,
            {"apply_b_dec_to_input": False, "d_out": D},
            tc,
        ),
        "jumprelu-skip-transcoder": (
            JumpReLUSkipTranscoder,
            JumpReLUSkipTranscoderConfig,
            {"apply_b_dec_to_input": False, "d_out": D},
            tc,
        ),
    }
    root = _fresh(out / "saelens")
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, D, generator=g) * 2 + 0.5
    for i, (name, (cls, cfg_cls, kw, m)) in enumerate(variants.items()):
        cfg = cfg_cls(d_in=D, d_sae=F, metadata=meta(**m), **kw)
        sae = cls(cfg)
        _randomize(sae, seed=100 + i)
        with torch.no_grad():
            if hasattr(sae, "threshold"):  # some negative: SAELens applies ReLU before the jump
                sae.threshold.copy_(torch.linspace(-0.4, 0.6, F))
            if name == "topk-rescale":
                sae.W_dec.mul_(torch.linspace(0.5, 2.0, F)[:, None])
            acts = sae.encode(x)
            out_ = sae(x) if "skip" in name else sae.decode(acts)
        sae.save_model(root / name)
        save_file({"x": x, "acts": acts.contiguous(), "out": out_.contiguous()}, root / f"{name}.reference.safetensors")
    (root / "VERSION").write_text(f"sae-lens {sae_lens.__version__}\n")


# -- SAELens 5 -------------------------------------------------------------------------------


def saelens5(out: Path) -> None:
    import sae_lens
    from sae_lens import SAE, SAEConfig

    root = _fresh(out / "saelens5")
    g = torch.Generator().manual_seed(2)
    x = torch.randn(N, D, generator=g) * 2 + 0.5
    base = {
        "d_in": D,
        "d_sae": F,
        "dtype": "float32",
        "device": "cpu",
        "model_name": "tiny-random",
        "hook_name": "blocks.1.hook_resid_pre",
        "hook_layer": 1,
        "hook_head_index": None,
        "activation_fn_kwargs": {},
        "apply_b_dec_to_input": True,
        "finetuning_scaling_factor": False,
        "sae_lens_training_version": sae_lens.__version__,
        "prepend_bos": True,
        "dataset_path": "",
        "dataset_trust_remote_code": False,
        "context_size": 64,
        "normalize_activations": "none",
        "neuronpedia_id": None,
    }
    variants = {
        "standard": {"architecture": "standard", "activation_fn_str": "relu"},
        "jumprelu": {"architecture": "jumprelu", "activation_fn_str": "relu"},
        "topk": {"architecture": "standard", "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 8}},
    }
    for i, (name, kw) in enumerate(variants.items()):
        sae = SAE(SAEConfig.from_dict(base | kw))
        _randomize(sae, seed=200 + i)
        with torch.no_grad():
            if hasattr(sae, "threshold"):
                sae.threshold.copy_(torch.linspace(-0.4, 0.6, F))
            acts = sae.encode(x)
            out_ = sae.decode(acts)
        sae.save_model(str(root / name))
        save_file({"x": x, "acts": acts.contiguous(), "out": out_.contiguous()}, root / f"{name}.reference.safetensors")
    (root / "VERSION").write_text(f"sae-lens {sae_lens.__version__}\n")


# -- circuit-tracer ----------------------------------------------------------------------------


def circuit_tracer(out: Path) -> None:
    import yaml
    from circuit_tracer.transcoder.activation_functions import JumpReLU
    from circuit_tracer.transcoder.cross_layer_transcoder import CrossLayerTranscoder
    from circuit_tracer.transcoder.single_layer_transcoder import SingleLayerTranscoder, TranscoderSet

    root = _fresh(out / "circuit_tracer")
    L = 3
    g = torch.Generator().manual_seed(3)
    x = torch.randn(L, N, D, generator=g) * 2

    def write(name: str, cfg: dict, acts: torch.Tensor, out_: torch.Tensor) -> None:
        (root / name / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        save_file({"x": x, "acts": acts.contiguous(), "out": out_.contiguous()}, root / f"{name}.reference.safetensors")

    for i, (name, act, hooks) in enumerate(
        [
            ("clt-jumprelu", "jump_relu", {"feature_input_hook": "mlp.hook_in", "feature_output_hook": "mlp.hook_out"}),
            ("clt-relu-default-hooks", "relu", {}),
        ]
    ):
        clt = CrossLayerTranscoder(
            L, F, D, activation_function=act, lazy_decoder=False, dtype=torch.float32, device="cpu"
        )
        _randomize(clt, seed=300 + i)
        with torch.no_grad():
            if act == "jump_relu":
                clt.activation_function.threshold.copy_(torch.linspace(-0.2, 0.8, F).expand(L, 1, F))
            acts = clt.encode(x)
            out_ = clt.decode(acts.to_sparse())
        clt.to_safetensors(str(root / name))
        write(name, {"model_kind": "cross_layer_transcoder", "model_name": "tiny-random", **hooks}, acts, out_)

    for i, (name, skip, listed) in enumerate([("plt-skip-listed", True, True), ("plt-relu", False, False)]):
        tcs = {}
        for layer in range(L):
            act = JumpReLU(torch.linspace(-0.2, 0.8, F), 0.1) if skip else torch.nn.functional.relu
            tc = SingleLayerTranscoder(D, F, act, layer, skip_connection=skip, device="cpu", dtype=torch.float32)
            _randomize(tc, seed=400 + 10 * i + layer)
            if skip:
                with torch.no_grad():
                    tc.activation_function.threshold.copy_(torch.linspace(-0.2, 0.8, F))
            tcs[layer] = tc
        ts = TranscoderSet(tcs, feature_input_hook="hook_resid_mid", feature_output_hook="hook_mlp_out")
        with torch.no_grad():
            acts = ts.encode(x)
            out_ = ts.decode(acts, x)
        ts.to_safetensors(str(root / name))
        cfg = {"model_kind": "transcoder_set", "model_name": "tiny-random"}
        cfg |= {"feature_input_hook": "hook_resid_mid", "feature_output_hook": "hook_mlp_out"}
        if listed:
            cfg["transcoders"] = [f"layer_{layer}.safetensors" for layer in range(L)]
        write(name, cfg, acts, out_)
    (root / "VERSION").write_text(f"circuit-tracer {metadata.version('circuit-tracer')}\n")


# -- hook names (TransformerLens) -------------------------------------------------------------

HOOKS = (
    "hook_resid_pre",
    "ln1.hook_normalized",
    "ln1.hook_scale",
    "hook_resid_mid",
    "ln2.hook_normalized",
    "ln2.hook_scale",
    "mlp.hook_in",
    "mlp.hook_out",
    "hook_mlp_out",
    "hook_resid_post",
)


def _configs() -> dict:
    import transformers as tf

    common = {"vocab_size": 96, "hidden_size": D, "intermediate_size": 2 * D, "num_hidden_layers": 2}
    heads = {"num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}
    return {
        "gpt2": tf.GPT2Config(vocab_size=96, n_embd=D, n_layer=2, n_head=4, n_positions=64),
        "llama": tf.LlamaConfig(**common, **heads),
        "mistral": tf.MistralConfig(**common, **heads, sliding_window=None),
        "gemma2": tf.Gemma2Config(**common, **heads, head_dim=8, attn_implementation="eager"),
        "qwen2": tf.Qwen2Config(**common, **heads),
        "qwen3": tf.Qwen3Config(**common, **heads, head_dim=8),
    }


def hooks(out: Path, tokenizer: Path) -> None:
    import transformers as tf
    from transformer_lens.model_bridge import TransformerBridge

    root = _fresh(out / "hooks")
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(1, 96, (2, 9), generator=g)
    for i, (family, cfg) in enumerate(_configs().items()):
        model = tf.AutoModelForCausalLM.from_config(cfg).eval()
        _randomize(model, seed=500 + i, scale=0.2)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "norm" in name or "ln_" in name:  # gains far from 1 (Gemma's 1 + w too)
                    p.copy_(torch.randn(p.shape, generator=g) * 0.5 + (0.0 if family == "gemma2" else 1.0))
        model.save_pretrained(root / family)
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            tok = tf.PreTrainedTokenizerFast(tokenizer_file=str(tokenizer))  # the bridge edits it: one each
            bridge = TransformerBridge.boot_transformers(tmp, hf_model=model, tokenizer=tok)
            _, cache = bridge.run_with_cache(ids)
        ref = {"input_ids": ids}
        for h in HOOKS:
            key = f"blocks.1.{h}"
            if key in cache:
                ref[key] = cache[key].detach().float().clone()
        ref["logits"] = model(ids).logits.detach().contiguous()
        save_file(ref, root / f"{family}.reference.safetensors")
    versions = f"transformer-lens {metadata.version('transformer-lens')}, transformers {tf.__version__}"
    (root / "VERSION").write_text(versions + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--saelens5", action="store_true", help="write only saelens5/ (run with SAELens 5 installed)")
    ap.add_argument("--tokenizer", type=Path, default=HERE.parents[1] / "loaders/zoo/artifacts/tiny/tokenizer.json")
    args = ap.parse_args()
    if args.saelens5:
        saelens5(args.out)
        return
    saelens6(args.out)
    circuit_tracer(args.out)
    hooks(args.out, args.tokenizer)
    print(json.dumps(sorted(str(p.relative_to(args.out)) for p in args.out.rglob("*") if p.is_file())))


if __name__ == "__main__":
    main()
