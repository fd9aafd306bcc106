"""Dictionaries behind one interface: cross-layer transcoders, per-layer transcoders, SAEs.

Every dictionary answers the same questions (STYLE.md item 4):

- which model layers hold features (`layers`), how many per layer (`n_features`);
- where features read (`read_site`) and write (`write_site`), see `loaders.model`;
- ``encode(layer, x)``: activations (..., feature) from the read site's (..., d_model);
- ``decoder(layer, target)``: d_s^(target) for every feature s of `layer`, (feature, d_model),
  or None when features of `layer` do not write to `target`;
- ``write_targets(layer)``: the layers its features write to.

A CLT's features at layer l write to every layer ≥ l; a PLT's and an SAE's only to their own.
An SAE reads and writes one residual site; ``write_site`` is then that site.

File layouts (weights are stored (feature, d_model) unless noted):

- circuit-tracer CLT: ``config.yaml`` (model_kind: cross_layer_transcoder), ``W_enc_{i}``
  files with ``W_enc_{i}`` (feature, d_model), ``b_enc_{i}``, ``b_dec_{i}``, optional
  ``threshold_{i}``; ``W_dec_{i}`` files with ``W_dec_{i}`` (feature, n_layers − i, d_model).
- circuit-tracer PLT: ``config.yaml`` (model_kind: transcoder_set), ``layer_{i}.safetensors``
  with ``W_enc``, ``W_dec`` (feature, d_model), ``b_enc``, ``b_dec``, optional
  ``activation_function.threshold`` or ``k``.
  ``W_skip`` (d_model, d_model) for skip transcoders (output += x W_skipᵀ).
- SAELens: ``cfg.json`` + ``sae_weights.safetensors``; ``W_enc`` is (d_in, d_sae) there.
  SAELens ≥ 6 keeps hook names under ``metadata``; earlier versions at the top level (with
  ``hook_point``). docs/dictionaries.md lists what is read and what is refused.

Activation semantics follow the library that saved the file: SAELens applies ReLU before
JumpReLU's jump (so thresholds below 0 act as 0) and to TopK's kept values; circuit-tracer's
JumpReLU is x · 1(x > θ), and it loads no TopK from files (graphkit's own TopK files use
SAELens's semantics).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlparse

import torch
import yaml
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from loaders.errors import GraphkitError
from loaders.model import OUTPUT_SITES, Site, site_from_hook

Kind = Literal["clt", "plt", "sae"]
InputNorm = Literal["none", "layer_norm", "constant_norm_rescale"]


def _normalize_in(norm: InputNorm, x: Tensor) -> Tensor:
    """SAELens's run-time input normalization (``normalize_activations``)."""
    if norm == "layer_norm":
        c = x - x.mean(-1, keepdim=True)
        return c / (c.std(-1, keepdim=True) + 1e-5)
    if norm == "constant_norm_rescale":
        return x * (x.shape[-1] ** 0.5 / x.norm(dim=-1, keepdim=True))
    return x


class DictionaryError(GraphkitError, ValueError):
    """A dictionary file that cannot be used, with the file and what to do."""


@dataclass(frozen=True)
class Activation:
    """ReLU, JumpReLU (x · 1(x > θ), per-feature `threshold`) or TopK (`k` largest, then ReLU)."""

    kind: Literal["relu", "jumprelu", "topk"]
    threshold: Tensor | None = None  # (feature,)
    k: int | None = None

    def __call__(self, pre: Tensor) -> Tensor:
        """Activations from pre-activations (..., feature); JumpReLU and TopK overwrite `pre` in place."""
        if self.kind == "relu":
            return pre.relu()
        if self.kind == "jumprelu":
            assert self.threshold is not None
            return pre.masked_fill_(pre <= self.threshold.to(pre.dtype), 0)  # in place: pre is ours
        return pre.masked_fill_(~self.support(pre), 0)  # TopK: the k largest, then ReLU

    def support(self, pre: Tensor) -> Tensor:
        """Where the activations of `pre` may be non-zero (bool, same shape), without making them:
        they equal ``where(support, pre, 0)``. There they are positive, but for JumpReLU features
        whose threshold is below zero."""
        if self.kind == "relu":
            return pre > 0
        if self.kind == "jumprelu":
            assert self.threshold is not None
            return pre > self.threshold.to(pre.dtype)
        assert self.k is not None
        top = pre.topk(self.k, dim=-1)
        return torch.zeros_like(pre, dtype=torch.bool).scatter_(-1, top.indices, top.values > 0)

    def gate(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        """(v, θ): the activations are ``where(v > θ, v, 0)`` with θ per feature (feature,), so a
        kernel can read them from `v` without a support mask: `pre` and 0 (ReLU) or the thresholds
        (JumpReLU); for TopK the activations themselves, made in `pre`, and −∞."""
        if self.kind == "relu":
            return pre, pre.new_zeros(pre.shape[-1])
        if self.kind == "jumprelu":
            assert self.threshold is not None
            return pre, self.threshold.to(pre.dtype)
        return self(pre), pre.new_full((pre.shape[-1],), -torch.inf)


@dataclass
class Dictionary:
    """Weights of a dictionary, keyed by model layer (see the module docstring)."""

    kind: Kind
    layers: tuple[int, ...]
    read_site: Site
    write_site: Site
    W_enc: dict[int, Tensor]  # layer → (feature, d_model)
    b_enc: dict[int, Tensor]  # layer → (feature,)
    W_dec: Mapping[int, Tensor]  # layer → (feature, n_targets, d_model), targets = write_targets
    b_dec: dict[int, Tensor]  # target layer → (d_model,)
    activation: dict[int, Activation]
    model_name: str = ""
    name: str = ""
    W_skip: dict[int, Tensor] = dataclasses.field(default_factory=dict)
    """layer → (d_model, d_model): skip transcoders add x W_skipᵀ to their output."""
    input_norm: InputNorm = "none"
    """SAELens's per-token input normalization (SAEs only); the output is mapped back."""

    @property
    def d_model(self) -> int:
        return int(self.W_enc[self.layers[0]].shape[1])

    @property
    def n_features(self) -> int:
        """Features per layer."""
        return int(self.W_enc[self.layers[0]].shape[0])

    def write_targets(self, layer: int) -> list[int]:
        if self.kind == "clt":
            return [t for t in self.layers if t >= layer]
        return [layer]

    def pre_activation(self, layer: int, x: Tensor) -> Tensor:
        w = self.W_enc[layer]
        x = _normalize_in(self.input_norm, x.to(w.dtype))
        # the bias inside the GEMM (its output written once, not a second tensor); x @ Wᵀ + b
        # is ~25% slower on the CPU here, the same bits at d_model 128 and 256 and within
        # 1e-6 at 512 and 2,304 (a float32 rounding: the sum is taken in another order)
        out = torch.addmm(self.b_enc[layer], x.reshape(-1, x.shape[-1]), w.T)
        return out.view(*x.shape[:-1], w.shape[0])

    def output_scale(self, x: Tensor) -> Tensor | None:
        """Per-token factor (..., 1) mapping decoder output back from a normalized input, or None.

        With ``layer_norm`` input normalization SAELens returns y · std(x) + mean(x); with
        ``constant_norm_rescale``, y · |x| / √d. A change Δa in activations therefore moves
        the output by Δa W_dec times this factor (transcoders write unscaled).
        """
        if self.input_norm == "none" or self.kind != "sae":
            return None
        x = x.float()
        if self.input_norm == "layer_norm":
            return x.std(-1, keepdim=True)
        return x.norm(dim=-1, keepdim=True) / x.shape[-1] ** 0.5

    def encode(self, layer: int, x: Tensor) -> Tensor:
        """Feature activations (..., feature) from read-site activations (..., d_model)."""
        return self.activation[layer](self.pre_activation(layer, x))

    def decoder(self, layer: int, target: int) -> Tensor | None:
        """d_s^(target) for every feature of `layer`: (feature, d_model), or None."""
        targets = self.write_targets(layer)
        if target not in targets:
            return None
        return self.W_dec[layer][:, targets.index(target)]

    def finish(self, target: int, y: Tensor, x: Tensor) -> Tensor:
        """The write-site output at `target` from its decoded sum `y` (b_dec included) and the
        read-site input `x` of that layer: mapped back from a normalized input (SAEs with
        ``input_norm``: y · scale + mean for ``layer_norm``), plus the skip connection x W_skipᵀ."""
        scale = self.output_scale(x)
        if scale is not None:
            y = y * scale.to(y.dtype) + (x.to(y.dtype).mean(-1, keepdim=True) if self.input_norm == "layer_norm" else 0)
        if target in self.W_skip:
            y = y + x.to(y.dtype) @ self.W_skip[target].T
        return y

    @property
    def needs_inputs(self) -> bool:
        """Whether the output depends on the read-site input itself (`finish`)."""
        return bool(self.W_skip) or (self.input_norm != "none" and self.kind == "sae")

    def reconstruct(self, acts: dict[int, Tensor], inputs: dict[int, Tensor] | None = None) -> dict[int, Tensor]:
        """Write-site output per target layer from activations per source layer.

        `inputs` (layer → read-site activations) are needed when `needs_inputs` (skip
        transcoders, SAEs with input normalization).
        """
        out: dict[int, Tensor] = {}
        for layer, a in acts.items():
            for target in self.write_targets(layer):
                d = self.decoder(layer, target)
                assert d is not None
                out[target] = out.get(target, 0) + a.to(d.dtype) @ d
        out = {t: r + self.b_dec[t] for t, r in out.items()}
        if not self.needs_inputs:
            return out
        if inputs is None or any(t not in inputs for t in out):
            raise ValueError(
                f"{self.name or 'dictionary'}: reconstructing needs the read-site inputs of layers {sorted(out)}"
            )
        return {t: self.finish(t, r, inputs[t]) for t, r in out.items()}

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> Dictionary:
        def mv(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype or t.dtype)

        return Dictionary(
            kind=self.kind,
            layers=self.layers,
            read_site=self.read_site,
            write_site=self.write_site,
            W_enc={k: mv(v) for k, v in self.W_enc.items()},
            b_enc={k: mv(v) for k, v in self.b_enc.items()},
            W_dec={k: mv(v) for k, v in self.W_dec.items()},
            b_dec={k: mv(v) for k, v in self.b_dec.items()},
            activation={
                k: Activation(a.kind, None if a.threshold is None else mv(a.threshold), a.k)
                for k, a in self.activation.items()
            },
            model_name=self.model_name,
            name=self.name,
            W_skip={k: mv(v) for k, v in self.W_skip.items()},
            input_norm=self.input_norm,
        )

    def encoders_to(self, device: str | torch.device) -> Dictionary:
        """Encoders (weights, biases, thresholds) on `device`; decoders stay where they are.

        The statistics pass reads only encoders; decoders are read on the host, block by
        block, when virtual weights and unembeds are computed.
        """
        return dataclasses.replace(
            self,
            W_enc={k: v.to(device) for k, v in self.W_enc.items()},
            b_enc={k: v.to(device) for k, v in self.b_enc.items()},
            activation={
                k: Activation(a.kind, None if a.threshold is None else a.threshold.to(device), a.k)
                for k, a in self.activation.items()
            },
        )

    def check_model(self, d_model: int, n_layers: int, where: str = "") -> None:
        """Fail clearly when this dictionary cannot belong to a model of these sizes."""
        src = where or self.name or "dictionary"
        if self.d_model != d_model:
            raise DictionaryError(
                f"{src}: encoder W_enc is ({self.n_features}, {self.d_model}) but the model has "
                f"d_model={d_model}; expected ({self.n_features}, {d_model}). "
                "Is this dictionary for another model?"
            )
        if max(self.layers) >= n_layers:
            raise DictionaryError(
                f"{src}: has features at layer {max(self.layers)} but the model has only "
                f"{n_layers} layers. Is this dictionary for another model?"
            )


# -- reading ---------------------------------------------------------------------------------


def _read(path: Path) -> dict[str, Tensor]:
    if not path.exists():
        raise DictionaryError(f"missing dictionary file {path}; is the directory complete?")
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise DictionaryError(
            f"cannot read {path}: {e}. The file is malformed or truncated; download or rebuild it."
        ) from e


def _tensor(
    data: dict[str, Tensor], key: str, shape: tuple[int, ...] | None, path: Path, checked: bool = False
) -> Tensor:
    """`data[key]` as float32, its shape checked and (unless `checked` before) its values finite."""
    if key not in data:
        raise DictionaryError(f"{path}: tensor {key!r} is missing (has: {', '.join(sorted(data))})")
    t = data[key]
    if shape is not None and tuple(t.shape) != shape:
        raise DictionaryError(f"{path}: tensor {key!r} has shape {tuple(t.shape)}, expected {shape}")
    if not checked:
        _check_finite(t, key, path)
    return t.float()


def _check_finite(t: Tensor, key: str, path: Path) -> None:
    """Refuse NaN or ±inf weights: they would give NaN edges that rank first."""
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise DictionaryError(
            f"{path}: tensor {key!r} holds {bad} non-finite values (NaN or ±inf) of {t.numel()}; "
            "the dictionary is damaged or diverged in training: fix or re-export it"
        )


def _activation(name: str | None, threshold: Tensor | None, k: int | None) -> Activation:
    if threshold is not None:
        return Activation("jumprelu", threshold=threshold.float())
    if k is not None or (name or "").lower() == "topk":
        if k is None:
            raise DictionaryError("TopK activation needs k (config 'k' or tensor 'k')")
        return Activation("topk", k=int(k))
    return Activation("relu")


def _config(path: Path) -> dict:
    cfg_path = path / "config.yaml"
    if not cfg_path.exists():
        raise DictionaryError(f"{path}: no config.yaml (circuit-tracer layout) and no cfg.json (SAELens layout)")
    return yaml.safe_load(cfg_path.read_text()) or {}


DEFAULT_HOOKS = ("hook_resid_mid", "hook_mlp_out")
"""circuit-tracer's defaults when config.yaml names no hooks (its load_clt's)."""


def _sites(cfg: dict, path: Path) -> tuple[Site, Site]:
    try:
        _, read = site_from_hook(str(cfg.get("feature_input_hook") or DEFAULT_HOOKS[0]))
        _, write = site_from_hook(str(cfg.get("feature_output_hook") or DEFAULT_HOOKS[1]))
    except ValueError as e:
        raise DictionaryError(f"{path / 'config.yaml'}: {e}") from e
    if write not in OUTPUT_SITES:
        raise _refuse(
            path / "config.yaml",
            "feature_output_hook",
            cfg.get("feature_output_hook"),
            "not a site features can write to",
        )
    return read, write


def load_clt(path: Path) -> Dictionary:
    cfg = _config(path)
    read, write = _sites(cfg, path)
    files = sorted(path.glob("W_enc_*.safetensors"), key=lambda p: int(p.stem.split("_")[-1]))
    if not files:
        raise DictionaryError(f"{path}: no W_enc_*.safetensors files (circuit-tracer CLT layout)")
    n_layers = len(files)
    layers = tuple(range(n_layers))
    W_enc, b_enc, b_dec, act = {}, {}, {}, {}
    first = _read(path / "W_enc_0.safetensors")
    if "W_enc_0" not in first:
        raise DictionaryError(f"{path / 'W_enc_0.safetensors'}: tensor 'W_enc_0' is missing")
    n_feat, d_model = first["W_enc_0"].shape
    for i in layers:
        fenc = path / f"W_enc_{i}.safetensors"
        enc = first if i == 0 else _read(fenc)
        W_enc[i] = _tensor(enc, f"W_enc_{i}", (n_feat, d_model), fenc)
        b_enc[i] = _tensor(enc, f"b_enc_{i}", (n_feat,), fenc)
        b_dec[i] = _tensor(enc, f"b_dec_{i}", (d_model,), fenc)
        thr = _tensor(enc, f"threshold_{i}", (n_feat,), fenc) if f"threshold_{i}" in enc else None
        act[i] = _activation(cfg.get("activation"), thr, cfg.get("k"))
    W_dec = DiskTensors({i: path / f"W_dec_{i}.safetensors" for i in layers}, "W_dec_{}")
    for i in layers:
        W_dec.check(i, (n_feat, n_layers - i, d_model))
    return Dictionary(
        "clt",
        layers,
        read,
        write,
        W_enc,
        b_enc,
        W_dec,
        b_dec,
        act,
        model_name=cfg.get("model_name", ""),
        name=str(path),
    )


class DiskTensors(Mapping[int, Tensor]):
    """Tensors read from their safetensors files when asked for, the last one kept.

    A CLT's decoders are most of its bytes (53 GB in float32 for Gemma-2-2B's) and the
    statistics pass never reads them; virtual weights and unembeds read them one source
    layer at a time, in order, so holding the last one suffices.
    """

    def __init__(self, files: dict[int, Path], key: str):
        self.files, self.key = files, key
        self._last: tuple[int, Tensor] | None = None

    def check(self, layer: int, shape: tuple[int, ...]) -> None:
        """Fail now, naming the file, if the tensor is missing, has another shape or holds a
        non-finite value (scanned in blocks of rows: decoders are large)."""
        path, name = self.files[layer], self.key.format(layer)
        if not path.exists():
            raise DictionaryError(f"missing dictionary file {path}; is the directory complete?")
        try:
            with safe_open(path, framework="pt") as f:
                if name not in f.keys():  # noqa: SIM118 (safe_open has keys(), no __contains__)
                    raise DictionaryError(f"{path}: tensor {name!r} is missing (has: {', '.join(sorted(f.keys()))})")
                view = f.get_slice(name)
                got = tuple(view.get_shape())
                if got != shape:
                    raise DictionaryError(f"{path}: tensor {name!r} has shape {got}, expected {shape}")
                for start in range(0, shape[0], 4096):
                    _check_finite(view[start : start + 4096], name, path)
        except (SafetensorError, OSError) as e:
            raise DictionaryError(f"cannot read {path}: {e}. The file is malformed or truncated.") from e

    def __getitem__(self, layer: int) -> Tensor:
        if self._last is None or self._last[0] != layer:
            path = self.files[layer]
            self._last = (layer, _tensor(_read(path), self.key.format(layer), None, path, checked=True))
        return self._last[1]

    def __iter__(self) -> Iterator[int]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


def hf_file(uri: str) -> Path:
    """The local copy of ``hf://org/repo/path/in/repo[?revision=R]``, downloaded when needed."""
    parsed = urlparse(uri)
    repo, _, file = parsed.path.lstrip("/").partition("/")
    if parsed.scheme != "hf" or not parsed.netloc or not repo or not file:
        raise DictionaryError(f"cannot parse {uri!r}: expected hf://org/repo/path/to/file.safetensors[?revision=R]")
    revisions = parse_qs(parsed.query).get("revision")
    revision = revisions[0] if revisions else None
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=f"{parsed.netloc}/{repo}", filename=file, revision=revision))
    except Exception as e:  # the hub's errors are many; say which file
        raise DictionaryError(f"cannot download {uri}: {e}") from e


def _plt_files(cfg: dict, path: Path) -> dict[int, Path]:
    listed = cfg.get("transcoders")
    if listed:
        out = {}
        for i, entry in enumerate(listed):
            if isinstance(entry, dict):
                i, entry = int(entry.get("layer", i)), entry["filepath"]
            if str(entry).startswith("hf://"):
                out[i] = hf_file(str(entry))
                continue
            p = Path(entry)
            out[i] = p if p.is_absolute() else path / p
        return out
    files = {int(p.stem.split("_")[-1]): p for p in path.glob("layer_*.safetensors")}
    if not files:
        raise DictionaryError(f"{path}: no layer_*.safetensors files (circuit-tracer PLT layout)")
    expected = set(range(max(files) + 1))
    if set(files) != expected:
        missing = sorted(expected - set(files))
        raise DictionaryError(f"{path}: missing layer files {[f'layer_{i}.safetensors' for i in missing]}")
    return files


def load_plt(path: Path) -> Dictionary:
    cfg = _config(path)
    read, write = _sites(cfg, path)
    W_enc, b_enc, W_dec, b_dec, act, W_skip = {}, {}, {}, {}, {}, {}
    files = _plt_files(cfg, path)
    shape: tuple[int, int] | None = None
    for i, f in sorted(files.items()):
        data = _read(f)
        if shape is None:
            if "W_enc" not in data:
                raise DictionaryError(f"{f}: tensor 'W_enc' is missing")
            shape = tuple(data["W_enc"].shape)  # type: ignore[assignment]
        n_feat, d_model = shape  # type: ignore[misc]
        W_enc[i] = _tensor(data, "W_enc", (n_feat, d_model), f)
        W_dec[i] = _tensor(data, "W_dec", (n_feat, d_model), f)[:, None]
        b_enc[i] = _tensor(data, "b_enc", (n_feat,), f)
        b_dec[i] = _tensor(data, "b_dec", (d_model,), f)
        if "W_skip" in data:
            W_skip[i] = _tensor(data, "W_skip", (d_model, d_model), f)
        thr = data.get("activation_function.threshold")
        k = int(data["k"]) if "k" in data else cfg.get("k")
        act[i] = _activation(cfg.get("activation"), thr, k)
    if W_skip and set(W_skip) != set(files):
        raise DictionaryError(f"{path}: W_skip in layers {sorted(W_skip)} only; a transcoder set skips in all or none")
    return Dictionary(
        "plt",
        tuple(sorted(files)),
        read,
        write,
        W_enc,
        b_enc,
        W_dec,
        b_dec,
        act,
        model_name=cfg.get("model_name", ""),
        name=str(path),
        W_skip=W_skip,
    )


SAELENS_ARCHITECTURES = {
    "standard": "relu",
    "jumprelu": "jumprelu",
    "topk": "topk",
    "gated": "gated",
    "transcoder": "relu",
    "skip_transcoder": "relu",
    "jumprelu_transcoder": "jumprelu",
    "jumprelu_skip_transcoder": "jumprelu",
}
"""SAELens architectures graphkit reads → their activation. Others are refused."""

_IDENTITY_NORMS = ("none", "expected_average_only_in", "covariance_whitening")
"""normalize_activations values that SAELens's own load_from_disk runs as the identity."""


def _saelens_config(path: Path) -> dict:
    """cfg.json in SAELens ≥ 6 terms: hook names from ``metadata`` or, before 6, the top level
    (``hook_point`` renamed), and the defaults SAELens itself fills in for old files."""
    f = path / "cfg.json"
    try:
        raw = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise DictionaryError(f"cannot read {f}: {e}") from e
    meta = raw.get("metadata") or {}
    cfg = {k: v for k, v in raw.items() if k != "metadata"}
    for old, new in (("hook_point", "hook_name"), ("hook_point_head_index", "hook_head_index")):
        if old in cfg and new not in cfg:
            cfg[new] = cfg.pop(old)
    for key in ("hook_name", "hook_name_out", "hook_head_index", "model_name", "sae_lens_version"):
        if meta.get(key) is not None:
            cfg[key] = meta[key]
    version = str(cfg.get("sae_lens_version") or cfg.get("sae_lens_training_version") or "0")
    if int(version.split(".")[0] or 0) < 6:  # SAELens's handle_pre_6_0_config defaults
        cfg.setdefault("apply_b_dec_to_input", True)
        cfg.setdefault("architecture", "standard")
        act = cfg.get("activation_fn", cfg.get("activation_fn_str", "relu"))
        k = (cfg.get("activation_fn_kwargs") or {}).get("k")
        if act == "topk" and k is not None:
            cfg["architecture"], cfg["k"] = "topk", k
        elif act not in ("relu", "topk"):
            raise DictionaryError(f"{f}: activation_fn {act!r} is not supported (relu or topk)")
    cfg.setdefault("apply_b_dec_to_input", True)  # SAEConfig's default
    for key in ("hook_name", "d_in", "d_sae"):
        if key not in cfg:
            raise DictionaryError(f"{f}: no {key!r} (looked at the top level and under 'metadata')")
    return cfg


def _refuse(f: Path, field: str, value: object, why: str) -> DictionaryError:
    return DictionaryError(f"{f}: {field} = {value!r} is not supported: {why}")


def load_saelens(path: Path) -> Dictionary:
    """An SAE or transcoder saved by SAELens (``SAE.save_model``), any version ≥ 3."""
    cfg = _saelens_config(path)
    fcfg, f = path / "cfg.json", path / "sae_weights.safetensors"
    arch = str(cfg.get("architecture", "standard"))
    if arch not in SAELENS_ARCHITECTURES:
        raise _refuse(fcfg, "architecture", arch, f"graphkit reads {', '.join(SAELENS_ARCHITECTURES)}")
    if cfg.get("reshape_activations", "none") != "none" or cfg.get("hook_head_index") is not None:
        field = "hook_head_index" if cfg.get("hook_head_index") is not None else "reshape_activations"
        raise _refuse(fcfg, field, cfg.get(field), "per-head (hook_z) dictionaries have no residual site")
    if cfg.get("finetuning_scaling_factor"):
        raise _refuse(fcfg, "finetuning_scaling_factor", True, "fold the scaling factor into W_dec first")
    norm = str(cfg.get("normalize_activations") or "none")
    if norm not in (*_IDENTITY_NORMS, "layer_norm", "constant_norm_rescale"):
        raise _refuse(fcfg, "normalize_activations", norm, "unknown normalization")
    transcoder = "transcoder" in arch
    if transcoder and norm not in _IDENTITY_NORMS:
        raise _refuse(fcfg, "normalize_activations", norm, "SAELens transcoders do not map their output back")
    d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    d_out = int(cfg.get("d_out", d_in)) if transcoder else d_in
    if d_out != d_in:
        raise _refuse(fcfg, "d_out", d_out, f"graphkit's sites are all d_model wide, and d_in is {d_in}")
    try:
        layer, read = site_from_hook(str(cfg["hook_name"]))
        write = read
        if transcoder:
            if not cfg.get("hook_name_out"):
                raise DictionaryError(
                    f"{fcfg}: a {arch} needs metadata.hook_name_out (where it writes); SAELens leaves it to "
                    "the trainer: add it to cfg.json's metadata"
                )
            layer_out, write = site_from_hook(str(cfg["hook_name_out"]))
            if layer_out is not None and layer is not None and layer_out != layer:
                raise _refuse(fcfg, "hook_name_out", cfg["hook_name_out"], f"it writes to another layer than {layer}")
    except ValueError as e:
        raise DictionaryError(f"{fcfg}: {e}") from e
    if layer is None:
        layer = int(cfg.get("hook_layer", 0))
    if transcoder and write not in OUTPUT_SITES:
        raise _refuse(
            fcfg, "hook_name_out", cfg["hook_name_out"], f"a transcoder writes to one of {', '.join(OUTPUT_SITES)}"
        )
    data = _read(f)
    W_enc = _tensor(data, "W_enc", (d_in, d_sae), f).T.contiguous()  # SAELens stores (d_in, d_sae)
    W_dec = _tensor(data, "W_dec", (d_sae, d_out), f)
    b_dec = _tensor(data, "b_dec", (d_out,), f)
    kind = SAELENS_ARCHITECTURES[arch]
    if kind == "gated":
        # 1(x W + b_gate > 0) · relu(x (W ∘ e^r) + b_mag) is JumpReLU on the magnitude path with
        # θ = b_mag − e^r b_gate (and ReLU, so θ ≥ 0 below).
        r = _tensor(data, "r_mag", (d_sae,), f).exp()
        b_mag, b_gate = _tensor(data, "b_mag", (d_sae,), f), _tensor(data, "b_gate", (d_sae,), f)
        W_enc, b_enc, threshold = W_enc * r[:, None], b_mag, b_mag - r * b_gate
    else:
        b_enc = _tensor(data, "b_enc", (d_sae,), f)
        threshold = None
        if kind == "jumprelu":
            if "threshold" in data:
                threshold = _tensor(data, "threshold", (d_sae,), f)
            else:
                threshold = _tensor(data, "log_threshold", (d_sae,), f).exp()
    if cfg.get("apply_b_dec_to_input") and not transcoder:
        # W_enc (x − b_dec) + b_enc = W_enc x + (b_enc − W_enc b_dec): fold into the bias.
        b_enc = b_enc - W_enc @ b_dec
    if kind == "topk":
        if cfg.get("k") is None:
            raise DictionaryError(f"{fcfg}: architecture 'topk' without 'k'")
        activation = Activation("topk", k=int(cfg["k"]))
        if cfg.get("rescale_acts_by_decoder_norm"):
            # SAELens ranks (x W + b)·|d_s| and decodes a / |d_s| with d_s: fold |d_s| in.
            n = W_dec.norm(dim=-1)
            W_enc, b_enc, W_dec = W_enc * n[:, None], b_enc * n, W_dec / n[:, None]
    elif threshold is not None:
        activation = Activation("jumprelu", threshold=threshold.clamp(min=0))  # SAELens: ReLU, then the jump
    else:
        activation = Activation("relu")
    skip = {}
    if "skip" in arch:
        skip[layer] = _tensor(data, "W_skip", (d_out, d_in), f)
    return Dictionary(
        "plt" if transcoder else "sae",  # a SAELens transcoder is a one-layer transcoder set
        (layer,),
        read,
        write,
        {layer: W_enc},
        {layer: b_enc},
        {layer: W_dec[:, None]},
        {layer: b_dec},
        {layer: activation},
        model_name=str(cfg.get("model_name") or ""),
        name=str(path),
        W_skip=skip,
        input_norm=norm if norm in ("layer_norm", "constant_norm_rescale") else "none",  # type: ignore[arg-type]
    )


def resolve_dictionary(name: str) -> Path:
    """A zoo name's directory, a local directory, or a Hub id downloaded to the cache."""
    from loaders.names import NAMES, zoo_path

    if name in NAMES:
        return zoo_path(name)
    path = Path(name)
    if path.exists():
        return path
    if path.is_absolute() or name.startswith("."):
        raise DictionaryError(f"dictionary directory {path} does not exist")
    from huggingface_hub import snapshot_download

    repo, _, sub = name.partition("//")
    local = Path(snapshot_download(repo, allow_patterns=[f"{sub}/*" if sub else "*"]))
    return local / sub if sub else local


def load_dictionary(name: str | Path) -> Dictionary:
    """Load a dictionary (zoo name, directory or Hub id) whatever its layout."""
    path = resolve_dictionary(str(name))
    if (path / "cfg.json").exists():
        return load_saelens(path)
    cfg = _config(path)
    kind = cfg.get("model_kind")
    if kind == "cross_layer_transcoder" or (kind is None and (path / "W_enc_0.safetensors").exists()):
        return load_clt(path)
    if kind in ("transcoder_set", None):
        return load_plt(path)
    raise DictionaryError(f"{path / 'config.yaml'}: unknown model_kind {kind!r}")


# -- writing ---------------------------------------------------------------------------------


SITE_HOOKS: dict[Site, str] = {
    "resid_pre": "hook_resid_pre",
    "ln1_normalized": "ln1.hook_normalized",
    "resid_mid": "hook_resid_mid",
    "ln2_normalized": "ln2.hook_normalized",
    "mlp_in": "mlp.hook_in",
    "mlp_module_out": "mlp.hook_out",
    "mlp_out": "hook_mlp_out",
    "resid_post": "hook_resid_post",
}
"""The hook name graphkit writes for each site (one of those that read it)."""


def _hooks(d: Dictionary) -> dict[str, str]:
    return {"feature_input_hook": SITE_HOOKS[d.read_site], "feature_output_hook": SITE_HOOKS[d.write_site]}


def _activation_config(d: Dictionary) -> dict[str, object]:
    """config.yaml's activation fields: the kind, and k for TopK (which has no tensor)."""
    a = d.activation[d.layers[0]]
    return {"activation": a.kind, **({"k": a.k} if a.kind == "topk" else {})}


def save_clt(d: Dictionary, path: Path) -> None:
    """Write `d` in circuit-tracer's CLT layout."""
    path.mkdir(parents=True, exist_ok=True)
    for i in d.layers:
        enc = {f"W_enc_{i}": d.W_enc[i], f"b_enc_{i}": d.b_enc[i], f"b_dec_{i}": d.b_dec[i]}
        if d.activation[i].threshold is not None:
            enc[f"threshold_{i}"] = d.activation[i].threshold  # type: ignore[assignment]
        save_file({k: v.contiguous() for k, v in enc.items()}, path / f"W_enc_{i}.safetensors")
        save_file({f"W_dec_{i}": d.W_dec[i].contiguous()}, path / f"W_dec_{i}.safetensors")
    cfg = {
        "model_kind": "cross_layer_transcoder",
        "model_name": d.model_name,
        **_hooks(d),
        **_activation_config(d),
    }
    (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def save_plt(d: Dictionary, path: Path) -> None:
    """Write `d` in circuit-tracer's PLT (transcoder_set) layout."""
    path.mkdir(parents=True, exist_ok=True)
    for i in d.layers:
        data = {"W_enc": d.W_enc[i], "W_dec": d.W_dec[i][:, 0], "b_enc": d.b_enc[i], "b_dec": d.b_dec[i]}
        if i in d.W_skip:
            data["W_skip"] = d.W_skip[i]
        if d.activation[i].threshold is not None:
            data["activation_function.threshold"] = d.activation[i].threshold  # type: ignore[assignment]
        save_file({k: v.contiguous() for k, v in data.items()}, path / f"layer_{i}.safetensors")
    cfg = {
        "model_kind": "transcoder_set",
        "model_name": d.model_name,
        **_hooks(d),
        **_activation_config(d),
    }
    (path / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
