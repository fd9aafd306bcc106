"""The replacement model: every write site replaced by the dictionary's reconstruction.

While `replaced` is open, each dictionary layer's write site (for transcoders the MLP
output) is overwritten during the forward pass: layer m receives Σ_{s, l_s ≤ m} a_s d_s^(m)
+ b_dec_m, where a_s is encoded from the read site *of the running (replaced) model*, so
errors compound as they would in a circuit built from the dictionary. ``zero=True`` writes
zeros instead (the zero-ablation baseline of CE-loss-recovered).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from loaders.dictionary import Dictionary
from loaders.model import HookedModel, Site


@contextmanager
def replaced(model: HookedModel, d: Dictionary, zero: bool = False) -> Iterator[None]:
    reads: dict[tuple[int, Site], list[Tensor]] = {(l, d.read_site): [] for l in d.layers}
    live: dict[int, Tensor] = {}  # layer → activations (batch, pos, feature) of this forward

    def edit(layer: int) -> Callable[[Tensor], Tensor]:
        def fn(out: Tensor) -> Tensor:
            if zero:
                return torch.zeros_like(out)
            x = reads[(layer, d.read_site)][-1]
            live[layer] = d.encode(layer, x)
            r = d.b_dec[layer].expand_as(out).clone()
            for s, a in live.items():
                dec = d.decoder(s, layer)
                if dec is not None:
                    r = r + a @ dec
            return d.finish(layer, r, x)

        return fn

    with model.hooks(capture=reads, edits={(l, d.write_site): edit(l) for l in d.layers}):
        yield
