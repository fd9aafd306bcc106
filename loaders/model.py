"""Model access: the dictionary sites of a Hugging Face causal LM, through forward hooks.

A *site* is a place in layer l where a dictionary reads or writes (DESIGN.md,
docs/hooks.md has the table of hook names):

- ``resid_pre``: the residual stream entering the layer (TransformerLens ``hook_resid_pre``;
  ``hook_attn_in`` reads the same values);
- ``ln1_normalized``: the attention norm's input normalized, *before* its gain:
  c(x) / σ(x) (TransformerLens ``ln1.hook_normalized``);
- ``resid_mid``: the raw residual after attention, before the MLP's norm (``hook_resid_mid``;
  ``hook_mlp_in`` too: HookedTransformer hooks the residual there, before ``ln2``);
- ``ln2_normalized``: the MLP norm's input normalized, before its gain (``ln2.hook_normalized``);
- ``mlp_in``: what the MLP module receives, the normalized input with its gain (circuit-tracer
  ``mlp.hook_in``);
- ``mlp_module_out``: the MLP module's own output (circuit-tracer ``mlp.hook_out``): on
  Gemma-2 *before* ``post_feedforward_layernorm``; elsewhere the same tensor as ``mlp_out``;
- ``mlp_out``: what the MLP adds to the residual stream (``hook_mlp_out``), after Gemma-2's
  post-feed-forward norm where the family has one;
- ``resid_post``: the residual stream leaving the layer (``hook_resid_post``).

Every supported family is a row of module paths (`FAMILIES`); nothing else in graphkit
knows how a family is laid out. Tensors are (batch, pos, d_model).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from loaders.errors import GraphkitError

Site = Literal[
    "resid_pre", "ln1_normalized", "resid_mid", "ln2_normalized", "mlp_in", "mlp_module_out", "mlp_out", "resid_post"
]
SITES: tuple[Site, ...] = (
    "resid_pre",
    "ln1_normalized",
    "resid_mid",
    "ln2_normalized",
    "mlp_in",
    "mlp_module_out",
    "mlp_out",
    "resid_post",
)
OUTPUT_SITES: tuple[Site, ...] = ("mlp_module_out", "mlp_out", "resid_post")
"""Sites a dictionary can write to (and steering can edit)."""

# TransformerLens / circuit-tracer hook names → sites (what each means: docs/hooks.md).
HOOK_NAMES: dict[str, Site] = {
    "hook_resid_pre": "resid_pre",
    "hook_attn_in": "resid_pre",
    "ln1.hook_normalized": "ln1_normalized",
    "hook_resid_mid": "resid_mid",
    "hook_mlp_in": "resid_mid",
    "ln2.hook_normalized": "ln2_normalized",
    "mlp.hook_in": "mlp_in",
    "mlp.hook_out": "mlp_module_out",
    "hook_mlp_out": "mlp_out",
    "hook_resid_post": "resid_post",
}
NOT_SITES: dict[str, str] = {
    "ln1.hook_scale": "the attention norm's scale σ, (batch, pos, 1)",
    "ln2.hook_scale": "the MLP norm's scale σ, (batch, pos, 1)",
}
"""Hook names that exist but hold no d_model activation a dictionary could read."""


def site_from_hook(name: str) -> tuple[int | None, Site]:
    """Parse ``blocks.3.hook_resid_mid``, ``hook_resid_mid`` or a site name into (layer, site)."""
    layer: int | None = None
    rest = name
    if name.startswith("blocks."):
        parts = name.split(".", 2)
        if len(parts) == 3 and parts[1].isdigit():
            layer, rest = int(parts[1]), parts[2]
    if rest in HOOK_NAMES:
        return layer, HOOK_NAMES[rest]
    if rest in SITES:
        return layer, rest  # type: ignore[return-value]
    if rest in NOT_SITES:
        raise ValueError(f"hook {name!r} is {NOT_SITES[rest]}, not a d_model activation; no dictionary reads it")
    raise ValueError(f"unknown hook or site {name!r}; known hooks: {', '.join(HOOK_NAMES)}; sites: {', '.join(SITES)}")


@dataclass(frozen=True)
class Family:
    """Module paths of one model family, relative to the causal-LM module."""

    layers: str
    attn_norm: str
    mlp: str
    mlp_norm: str
    final_norm: str
    unembed: str
    norm: Literal["rms", "layer"]
    post_mlp_norm: str | None = None
    gain_offset: float = 0.0
    """Added to a norm's weight to get its gain (Gemma multiplies by 1 + γ)."""


_LLAMA = Family("model.layers", "input_layernorm", "mlp", "post_attention_layernorm", "model.norm", "lm_head", "rms")
FAMILIES: dict[str, Family] = {
    "gpt2": Family("transformer.h", "ln_1", "mlp", "ln_2", "transformer.ln_f", "lm_head", "layer"),
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    "qwen3": _LLAMA,
    "gemma2": Family(
        "model.layers",
        "input_layernorm",
        "mlp",
        "pre_feedforward_layernorm",
        "model.norm",
        "lm_head",
        "rms",
        post_mlp_norm="post_feedforward_layernorm",
        gain_offset=1.0,
    ),
}


@dataclass(frozen=True)
class NormMap:
    """A norm's linear part with its denominator frozen: x ↦ gain ⊙ (center(x)) / σ (+ bias).

    `centered` is True for LayerNorm, whose linear map is diag(gain)(I − 11ᵀ/d)/σ.
    """

    gain: Tensor  # (d_model,)
    bias: Tensor | None  # (d_model,)
    eps: float
    centered: bool

    def denominator(self, x: Tensor) -> Tensor:
        """σ(x) per position: sqrt(mean(x²) + eps) (RMS) or sqrt(var(x) + eps) (LayerNorm)."""
        x = x.double()
        if self.centered:
            x = x - x.mean(-1, keepdim=True)
        return (x.pow(2).mean(-1) + self.eps).sqrt()

    def normalize(self, x: Tensor) -> Tensor:
        """c(x) / σ(x), the norm before its gain, computed in float32 as the models do."""
        y = x.float()
        if self.centered:
            y = y - y.mean(-1, keepdim=True)
        return (y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)

    def without_gain(self) -> NormMap:
        """The same norm with gain 1 and no bias (what ``ln*.hook_normalized`` reads)."""
        return NormMap(torch.ones_like(self.gain), None, self.eps, self.centered)

    def apply(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """N x = γ ⊙ c(x) / σ for the frozen map N (x: (..., d_model); bias excluded), on x's
        device (decoders stay on the host while the model is on a GPU)."""
        if self.centered:
            x = x - x.mean(-1, keepdim=True)
        return x * self.gain.to(x.device, x.dtype) / sigma

    def transpose_apply(self, v: Tensor, sigma: float | Tensor) -> Tensor:
        """Nᵀ v = c(γ ⊙ v) / σ for the frozen map N (v: (..., d_model))."""
        out = v * self.gain.to(v.device, v.dtype)
        if self.centered:
            out = out - out.mean(-1, keepdim=True)
        return out / sigma


Transform = Callable[[Tensor], Tensor]


class ModelLoadError(GraphkitError, RuntimeError):
    """A model that cannot be loaded, naming the directory or file and what to check."""


class HookedModel:
    """A causal LM with its transcoder sites addressable by (layer, site)."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str = ""):
        model_type = model.config.model_type
        if model_type not in FAMILIES:
            raise ValueError(f"model type {model_type!r} is not supported; supported: {', '.join(FAMILIES)}")
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.family = FAMILIES[model_type]
        self.layers: nn.ModuleList = model.get_submodule(self.family.layers)  # type: ignore[assignment]
        self.n_layers = len(self.layers)
        self.d_model = int(model.config.hidden_size)

    @classmethod
    def load(
        cls, name_or_path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> HookedModel:
        """Load a zoo name, a local directory or a Hub id."""
        path = resolve_model(str(name_or_path))
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
            model.to(device)  # type: ignore[arg-type]
            tokenizer = AutoTokenizer.from_pretrained(path)
        except Exception as e:
            local = Path(path)
            files = sorted(p.name for p in local.glob("*.safetensors")) if local.is_dir() else []
            where = f"{local / files[0]}" if len(files) == 1 else str(path)
            raise ModelLoadError(
                f"cannot load model {name_or_path!r} from {where}: {e}. "
                "Check that the directory holds config.json, the weights and the tokenizer files, "
                "complete and untruncated, or that the Hub id is right."
            ) from e
        return cls(model, tokenizer, name=str(name_or_path))

    @property
    def context(self) -> int:
        """Longest sequence the model takes (its position embeddings)."""
        return int(getattr(self.model.config, "max_position_embeddings", 1024) or 1024)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- modules ----------------------------------------------------------------------------
    def module(self, layer: int, part: str) -> nn.Module:
        return self.layers[layer].get_submodule(part)

    def norm_map(self, module: nn.Module) -> NormMap:
        weight: Tensor = module.get_parameter("weight").detach()
        bias = getattr(module, "bias", None)
        eps: Any = getattr(module, "variance_epsilon", None)
        if eps is None:
            eps = getattr(module, "eps", 1e-5)
        return NormMap(
            gain=weight + self.family.gain_offset,
            bias=None if bias is None else bias.detach(),
            eps=float(eps),
            centered=self.family.norm == "layer",
        )

    def mlp_norm(self, layer: int) -> NormMap:
        return self.norm_map(self.module(layer, self.family.mlp_norm))

    def attn_norm(self, layer: int) -> NormMap:
        return self.norm_map(self.module(layer, self.family.attn_norm))

    def post_mlp_norm(self, layer: int) -> NormMap | None:
        """Gemma-2's post-feed-forward norm at `layer`, or None where the family has none."""
        f = self.family
        return None if f.post_mlp_norm is None else self.norm_map(self.module(layer, f.post_mlp_norm))

    def final_norm(self) -> NormMap:
        return self.norm_map(self.model.get_submodule(self.family.final_norm))

    def unembed(self) -> Tensor:
        """W_U as (vocab, d_model)."""
        return self.model.get_submodule(self.family.unembed).weight.detach()

    def _site_hook(self, layer: int, site: Site) -> tuple[nn.Module, Literal["input", "output"], Transform | None]:
        """The module whose input or output is the site, and how the site derives from it."""
        f = self.family
        if site == "resid_pre":
            return self.layers[layer], "input", None
        if site == "ln1_normalized":
            return self.module(layer, f.attn_norm), "input", self.attn_norm(layer).normalize
        if site == "resid_mid":
            return self.module(layer, f.mlp_norm), "input", None
        if site == "ln2_normalized":
            return self.module(layer, f.mlp_norm), "input", self.mlp_norm(layer).normalize
        if site == "mlp_in":
            return self.module(layer, f.mlp), "input", None
        if site == "mlp_module_out":
            return self.module(layer, f.mlp), "output", None
        if site == "mlp_out":
            return self.module(layer, f.post_mlp_norm or f.mlp), "output", None
        return self.layers[layer], "output", None

    # -- running ----------------------------------------------------------------------------
    @contextmanager
    def hooks(
        self,
        capture: dict[tuple[int, Site], list[Tensor]] | None = None,
        edits: dict[tuple[int, Site], Callable[[Tensor], Tensor]] | None = None,
    ) -> Iterator[None]:
        """Capture and/or edit sites while the context is open.

        `capture[(l, site)]` receives each forward's tensor (batch, pos, d_model), before any
        edit of the same site; an `edits[(l, site)]` function maps the site's tensor to its
        replacement. Only output sites (`OUTPUT_SITES`) can be edited.
        """
        handles = []
        keys = set(capture or {}) | set(edits or {})
        try:
            for layer, site in keys:
                module, side, transform = self._site_hook(layer, site)
                if edits and (layer, site) in edits and site not in OUTPUT_SITES:
                    raise ValueError(f"site {site!r} can be read but not edited; edit one of {', '.join(OUTPUT_SITES)}")
                handles.append(self._register(module, side, (layer, site), capture, edits, transform))
            yield
        finally:
            for h in handles:
                h.remove()

    @staticmethod
    def _register(
        module: nn.Module,
        side: str,
        key: tuple[int, Site],
        capture: dict | None,
        edits: dict | None,
        transform: Transform | None = None,
    ) -> torch.utils.hooks.RemovableHandle:
        if side == "input":

            def pre_hook(_mod: nn.Module, args: tuple, kwargs: dict) -> None:
                x = args[0] if args else next(iter(kwargs.values()))
                if capture is not None and key in capture:
                    capture[key].append(x if transform is None else transform(x))

            return module.register_forward_pre_hook(pre_hook, with_kwargs=True)

        def hook(_mod: nn.Module, _args: tuple, output: object) -> object:
            tensor = output[0] if isinstance(output, tuple) else output
            # captured before the edit: a dictionary that reads where it writes (an SAE) encodes
            # what the model computed there, and the edit can use that capture
            if capture is not None and key in capture:
                capture[key].append(tensor)
            if edits is not None and key in edits:
                tensor = edits[key](tensor)
                output = (tensor, *output[1:]) if isinstance(output, tuple) else tensor
            return output

        return module.register_forward_hook(hook)

    def run(
        self, input_ids: Tensor, sites: list[tuple[int, Site]], attention_mask: Tensor | None = None
    ) -> tuple[Tensor, dict[tuple[int, Site], Tensor]]:
        """Forward pass; returns logits (batch, pos, vocab) and each site's (batch, pos, d_model)."""
        store: dict[tuple[int, Site], list[Tensor]] = {k: [] for k in sites}
        with torch.no_grad(), self.hooks(capture=store):
            logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits
        return logits, {k: v[0] for k, v in store.items()}


def prompt_ids(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """The token ids of a prompt as every statistic sees text: BOS (when the tokenizer has one),
    then the text's tokens with no other special token (the corpus windows' convention,
    `loaders.corpus.windows`). Analysis, answer contexts, prompt records and steering all
    tokenize through here, so their positions agree whether or not the tokenizer adds BOS."""
    ids = list(tokenizer(text, add_special_tokens=False).input_ids)
    bos = tokenizer.bos_token_id
    return ids if bos is None else [bos, *ids]


def tokenize_prompt(tokenizer: PreTrainedTokenizerBase, text: str) -> Tensor:
    """`prompt_ids` as a (1, pos) tensor."""
    return torch.tensor([prompt_ids(tokenizer, text)], dtype=torch.long)


def decode(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    """Token ids to text (one string; transformers types `decode` as str | list[str])."""
    return str(tokenizer.decode(ids))


def decode_many(tokenizer: PreTrainedTokenizerBase, seqs: list[list[int]]) -> list[str]:
    """Each token-id list to text, exactly as `decode` gives it. A fast tokenizer that neither
    overrides its decoding nor cleans up spaces decodes them all in one Rust call (`decode`'s
    per-call Python was most of writing 600k examples); any other decodes them one by one."""
    plain = (
        isinstance(tokenizer, PreTrainedTokenizerFast)
        and type(tokenizer)._decode is PreTrainedTokenizerFast._decode
        and not tokenizer.clean_up_tokenization_spaces
    )
    if not plain:
        return [decode(tokenizer, s) for s in seqs]
    return tokenizer.backend_tokenizer.decode_batch(seqs, skip_special_tokens=False)


def resolve_model(name: str) -> str:
    """A zoo name's directory, else the argument unchanged (a directory or a Hub id)."""
    from loaders.names import NAMES, zoo_path

    if name in NAMES:
        return str(zoo_path(name))
    return name


def token_strings(model: HookedModel) -> list[str]:
    """Every token id's text, as the logit lens names tokens."""
    tok = model.tokenizer
    return [str(tok.decode([i])) for i in range(len(tok))]
