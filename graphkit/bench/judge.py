"""The LLM judge: rank look-alike candidates from what a researcher would see.

Conditions (what the judge sees per candidate, the research note's four):

- ``examples``: top activating examples (the peak token marked «like this»);
- ``examples+unembeds``: plus top unembeds (logit lens);
- ``examples+downstream``: plus the TWERA-ranked downstream features, each with its own
  top unembeds;
- ``all``: all three.

Providers: the official Anthropic SDK (Messages API; key from ``ANTHROPIC_API_KEY``) or any
OpenAI-compatible endpoint (``base_url``; for local models). The prompts are the files in
``prompts/``. Every response is cached on disk under a hash of provider, model and prompt, so
a rerun costs nothing. A reply without a valid ``RANKING:`` line is retried (up to
``retries`` times, the request marked with the attempt); if it never parses the presentation
counts as a failure (`protocol.evaluate` scores it as the worst rank), never dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from graphkit.bench.records import Candidate, Group
from loaders.errors import GraphkitError

PROMPTS = Path(__file__).resolve().parent / "prompts"
CONDITIONS = ("examples", "examples+unembeds", "examples+downstream", "all")
Provider = Literal["anthropic", "openai"]
_RANKING = re.compile(r"RANKING:\s*([A-Z](?:\s*>\s*[A-Z])*)\s*$", re.M)


@dataclass(frozen=True)
class JudgeConfig:
    """How the judge is called."""

    provider: Provider = "anthropic"
    model: str = "claude-opus-4-7"
    base_url: str | None = None
    """None: the provider's default endpoint."""
    api_key: str | None = None
    """None: from the environment (ANTHROPIC_API_KEY / OPENAI_API_KEY)."""
    retries: int = 2
    max_tokens: int = 1024
    cache_dir: Path = Path(".graphkit-cache/judge")

    def __post_init__(self) -> None:
        if self.provider not in ("anthropic", "openai"):
            raise ValueError(f"judge provider must be anthropic or openai, not {self.provider!r}")


def describe(candidate: Candidate, condition: str) -> str:
    """What the judge sees about one candidate under `condition`."""
    if condition not in CONDITIONS:
        raise ValueError(f"unknown condition {condition!r}; choose one of {', '.join(CONDITIONS)}")
    lines = ["  top activating examples:"] + [f"    - {e}" for e in candidate.top_examples[:5]]
    if condition in ("examples+unembeds", "all"):
        lines.append("  top unembeds: " + ", ".join(repr(t) for t in candidate.top_unembeds[:10]))
    if condition in ("examples+downstream", "all"):
        lines.append("  downstream features (by TWERA, sign = promotes + / suppresses -):")
        for d in candidate.downstream[:8]:
            lines.append(
                f"    - {d.twera:+.3g}: a feature whose top unembeds are "
                + ", ".join(repr(t) for t in d.top_unembeds[:6])
            )
    return "\n".join(lines)


def render(group: Group, order: Sequence[int], condition: str) -> tuple[str, str]:
    """(system, user) prompts for one presentation of `group`."""
    system = (PROMPTS / "judge_system.txt").read_text().strip()
    blocks = [
        f"Candidate {string.ascii_uppercase[pos]}:\n{describe(group.candidates[i], condition)}"
        for pos, i in enumerate(order)
    ]
    template = "judge_user_add.txt" if group.steering.mode == "add" else "judge_user.txt"
    user = (
        (PROMPTS / template)
        .read_text()
        .format(
            prompt=group.prompt,
            answer=group.answer,
            baseline=group.baseline_answer or group.answer,
            steering=f"{group.steering.mode} {group.steering.value:+g}",
            candidates="\n\n".join(blocks),
        )
        .strip()
    )
    return system, user


def parse_ranking(text: str, n: int) -> list[int] | None:
    """Positions (0-based, presented order) ranked best first, or None when malformed."""
    found = _RANKING.findall(text or "")
    if not found:
        return None
    letters = [x.strip() for x in found[-1].split(">")]
    positions = [string.ascii_uppercase.index(x) for x in letters]
    if sorted(positions) != list(range(n)):
        return None
    return positions


class JudgeError(GraphkitError):
    """The judge cannot run: its package or its key is missing."""


class Judge:
    """Calls the provider (or the cache) and turns replies into rankings."""

    def __init__(self, cfg: JudgeConfig):
        self.cfg = cfg
        self.calls = 0
        self._client: Any = None

    def _connect(self) -> Any:
        """The provider's client; a missing package or key is a `JudgeError` saying what to do."""
        package = self.cfg.provider
        try:
            module = __import__(package)
        except ImportError as e:
            raise JudgeError(f"the judge needs the {package!r} package: pip install 'graphkit[judge]'") from e
        env = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}[package]
        key = self.cfg.api_key or os.environ.get(env)
        if package == "anthropic":
            if not key and not self.cfg.base_url:
                raise JudgeError(f"the anthropic judge needs an API key: set {env}, or --base-url for another endpoint")
            return module.Anthropic(api_key=key, base_url=self.cfg.base_url)
        if not key and not self.cfg.base_url:
            raise JudgeError(
                f"the openai judge needs an API key ({env}) or --base-url of a local OpenAI-compatible server"
            )
        return module.OpenAI(api_key=key or "none", base_url=self.cfg.base_url)

    def complete(self, system: str, user: str) -> str:
        """The reply to (system, user), from the cache when it was asked before."""
        key = hashlib.sha256(json.dumps([self.cfg.provider, self.cfg.model, system, user]).encode()).hexdigest()
        path = self.cfg.cache_dir / f"{key}.json"
        if path.exists():
            return str(json.loads(path.read_text())["text"])
        self.calls += 1
        self._client = self._client or self._connect()
        if self.cfg.provider == "anthropic":
            reply = self._client.messages.create(
                model=self.cfg.model,
                max_tokens=self.cfg.max_tokens,
                system=system,
                messages=[{"role": "user", "content": user}],
            )
            text = "".join(block.text for block in reply.content if getattr(block, "type", "") == "text")
        else:
            reply = self._client.chat.completions.create(
                model=self.cfg.model,
                max_tokens=self.cfg.max_tokens,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
            )
            text = reply.choices[0].message.content or ""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"text": text}))
        tmp.replace(path)
        return text

    def rank(self, group: Group, order: Sequence[int], condition: str) -> list[int] | None:
        """Candidate indices best first for one presentation, or None after the retries."""
        system, user = render(group, order, condition)
        for attempt in range(self.cfg.retries + 1):
            prompt = (
                user
                if attempt == 0
                else (
                    f"{user}\n\n(Attempt {attempt + 1}: your previous reply had no valid RANKING line. "
                    "End with exactly one line 'RANKING: X > Y > …' naming every candidate letter once.)"
                )
            )
            positions = parse_ranking(self.complete(system, prompt), len(order))
            if positions is not None:
                return [order[p] for p in positions]
        return None
