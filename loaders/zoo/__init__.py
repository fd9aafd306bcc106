"""The bundled model's training code: corpus, tokenizer, model and dictionaries, rebuilt from
scratch with no download (`loaders.zoo.build`, ``graphkit zoo build``). The names that resolve
to the built artifacts live in `loaders.names`.
"""

from __future__ import annotations

from loaders.names import ARTIFACTS, NAMES, zoo_list, zoo_path

__all__ = ["ARTIFACTS", "NAMES", "zoo_list", "zoo_path"]
