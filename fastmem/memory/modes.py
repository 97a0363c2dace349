"""The memory's modes, one class each, registered once (`register`). A mode says how it scores the entries and
chooses one, which values it injects, what it needs, whose settings it borrows (a control), at which operating
point it runs by default, and the words its reason adds. The in-context baselines (`in_context.py`) are modes
of another kind: they answer with the statements in the prompt instead of retrieving.

Scores are [N questions, M entries]; entry-side tensors (unit keys, projected keys) are cached in the memory
until it changes, so a question costs one [N, d] x [d, M] product even at 100,000 entries.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from fastmem.errors import SettingsError
from fastmem.memory.bank import MemoryBank
from fastmem.memory.retrieval import KeyGeometry, QueryKeys, unit

REGISTRY: dict[str, "Mode"] = {}


def register(cls):
    """Class decorator: one instance of the mode, under its name, in the order modes are defined."""
    if cls.name in REGISTRY:
        raise ValueError(f"mode {cls.name!r} is registered twice")
    REGISTRY[cls.name] = cls()
    return cls


@dataclass(frozen=True)
class Scored:
    scores: torch.Tensor  # [N, M] what the threshold gates
    rank: torch.Tensor | None = None  # [N, M] what chooses the entry (None: the scores themselves)
    spans: object = None  # slot-free reading: where each entry's word and context were found (`spans.SpanMatch`)


@dataclass(frozen=True)
class Query:
    """Everything a mode may score from: the questions' keys, their states and the model (for modes whose
    entry keys the model computes), the memory and the geometry fitted in calibration."""

    keys: QueryKeys
    bank: MemoryBank
    geometry: KeyGeometry
    lm: object = None  # FrozenLM
    states: object = None  # PromptStates

    def model(self, mode: str):
        if self.lm is None or self.states is None:
            raise SettingsError(f"Mode {mode} is scored with the model: call engine.lookup.")
        return self.lm, self.states


class Mode:
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line for the place where a mode is chosen
    retrieves: ClassVar[bool] = True  # False: the plain model, or a baseline that answers without retrieval
    needs_projector: ClassVar[bool] = False  # keys through the trained projector (its key layer only)
    post_protocol: ClassVar[bool] = False  # one of the reference post's modes: runs at its `post` point
    controls: ClassVar[str | None] = None  # a control borrows the settings of this mode, untuned
    slot_free: ClassVar[bool] = False  # reads the question as typed (no slots needed)
    keys: ClassVar[tuple[str, ...]] = ()  # the entry keys it reads (`bank.DENSE_KEYS`, `bank.TOKEN_KEYS`)
    injects_entry_value: ClassVar[bool] = True  # injects one entry's own value (`Retrieved.injected`); False: a mix

    def score(self, q: Query) -> Scored:
        raise NotImplementedError

    def warm(self, lm, bank: MemoryBank) -> None:
        """Build what the mode derives from the memory with the model's forward passes (kept with the memory's
        version), so that a runner can count them as forward time, not retrieval."""

    def inject(self, bank: MemoryBank, chosen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(values [N, d], the entry they come from when it is not `chosen`): the chosen entry's value."""
        values = bank.stacked()["value"]
        return values[chosen.clamp(min=0)] * (chosen >= 0).unsqueeze(1), None

    def silent_hint(self, bank: MemoryBank, word: str) -> str:
        """What to add when nothing was injected for a question about `word`."""
        return ""

    def injected_note(self, bank: MemoryBank, top: int) -> str:
        return ""

    def all_gated(self, context: str | None) -> str:
        return "Every entry is switched off: nothing injected."


def get_mode(name) -> Mode:
    if isinstance(name, Mode):
        return name
    _register_all()
    if not isinstance(name, str) or name not in REGISTRY:
        raise SettingsError(f"Unknown mode {name!r}: choose one of {', '.join(mode_names(answering=True))}.")
    return REGISTRY[name]


def mode_names(answering: bool = False) -> tuple[str, ...]:
    """The registered modes' names: the memory's (and the plain model), and with `answering` the baselines that
    answer without retrieval too."""
    _register_all()
    return tuple(n for n, m in REGISTRY.items() if answering or m.retrieves or n == "none")


def _register_all() -> None:
    from fastmem.memory import in_context  # noqa: F401 - its import registers the answering modes


def _empty(q: Query) -> torch.Tensor:
    return torch.full((q.keys.key.shape[0], len(q.bank)), float("-inf"))


@register
class NoneMode(Mode):
    name, summary = "none", "The plain frozen model: memory off."
    retrieves = False

    def score(self, q: Query) -> Scored:
        return Scored(_empty(q))


class _Projected(Mode):
    needs_projector = True
    keys = ("key",)

    def score(self, q: Query) -> Scored:
        if q.geometry.projector is None:
            raise SettingsError(f"Mode {self.name} needs a trained key projector; none is loaded.")
        if not len(q.bank):
            return Scored(_empty(q))
        with torch.no_grad():
            entries = q.bank.cached(f"proj:{q.geometry.identity}", lambda s: q.geometry.projector(s["key"]))
            return Scored(q.geometry.projector(q.keys.key) @ entries.T)


@register
class BothTop1(_Projected):
    name = "both_top1"
    summary = "The post's main mode: one memory of all contexts, top-1 cosine of projected word keys."
    post_protocol = True


@register
class ContextGate(_Projected):
    name = "context_gate"
    summary = "The post's upper bound: only the entries of the question's own context (an oracle), then top-1."
    post_protocol = True

    def score(self, q: Query) -> Scored:
        scored = super().score(q)
        if not len(q.bank):
            return scored
        entry_ctx, index = q.bank.cached("context_ids", lambda _: _ids([e.context for e in q.bank.entries]))
        asked = torch.tensor([index.get(c, -1) if c is not None else -1 for c in q.keys.contexts])
        return Scored(scored.scores.masked_fill(asked.unsqueeze(1) != entry_ctx.unsqueeze(0), float("-inf")))

    def all_gated(self, context: str | None) -> str:
        return f"No entry of context {context!r} in memory (oracle gate): nothing injected."


@register
class RawBothTop1(Mode):
    name = "raw_both_top1"
    summary = "The post's ablation: top-1 cosine of raw hidden states at the word (no learned key)."
    post_protocol = True
    keys = ("key",)

    def score(self, q: Query) -> Scored:
        if not len(q.bank):
            return Scored(_empty(q))
        return Scored(unit(q.keys.key) @ q.bank.cached("raw", lambda s: unit(s["key"])).T)


@register
class Average(_Projected):
    name = "average"
    summary = "The post's merge: the mean of every value bound to the retrieved word (conflicts averaged)."
    post_protocol = True
    injects_entry_value = False

    def inject(self, bank: MemoryBank, chosen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        values = bank.stacked()["value"]
        word_ids, _ = bank.cached("word_ids", lambda _: _ids([e.word for e in bank.entries]))
        picked = torch.zeros(len(chosen), bank.hidden_size)
        for row in (chosen >= 0).nonzero().flatten().tolist():
            picked[row] = values[word_ids == word_ids[chosen[row]]].mean(0)
        return picked, None


@register
class DualKey(Mode):
    name = "dual_key"
    summary = "The post's next step: symbol similarity x context similarity of raw states (no trained weights)."
    keys = ("symbol_key", "context_key")

    def score(self, q: Query) -> Scored:
        if not len(q.bank):
            return Scored(_empty(q))
        g, bank = q.geometry, q.bank
        sym_base, ctx_base = g.symbol_baseline, g.context_baseline
        symbol = unit(q.keys.symbol - sym_base) @ bank.cached(
            f"sym:{g.identity}", lambda s: unit(s["symbol_key"] - sym_base)).T
        context = unit(q.keys.context - ctx_base) @ bank.cached(
            f"ctx:{g.identity}", lambda s: unit(s["context_key"] - ctx_base)).T
        return Scored(symbol.clamp_(min=0).mul_(context.clamp_(min=0)))


@register
class TokenMatch(Mode):
    name = "token_match"
    summary = ("The previous default: every token of the word and of the context matched inside the question's "
               "slots (a known form or your marks).")
    keys = ("word_tokens", "context_tokens")

    def score(self, q: Query) -> Scored:
        from fastmem.memory.token_match import token_match_parts

        if not len(q.bank):
            return Scored(_empty(q))
        word, context = token_match_parts(q.keys, q.bank, q.geometry)  # rank by both, gate by the weaker
        return Scored(torch.minimum(word, context), word.clamp(min=0) * context.clamp(min=0))

    def silent_hint(self, bank: MemoryBank, word: str) -> str:
        written = sorted({e.context for e in bank.entries if e.word == word})
        if written:
            return f" '{word}' is written only in {', '.join(repr(c) for c in written[:4])}."
        return f" No entry for the word '{word}'."


@register
class SpanMatch(Mode):
    name = "span_match"
    summary = ("The default: finds each written word and context, in order, anywhere in the question as typed "
               "(token embeddings; siblings such as level 4 / level 1 stay apart).")
    slot_free = True

    def score(self, q: Query) -> Scored:
        from fastmem.memory.spans import span_match

        lm, states = q.model(self.name)
        if states.question is None:
            raise SettingsError(f"Mode {self.name} needs the questions' tokens (FrozenLM.states).")
        found = span_match(lm, q.bank, q.geometry, states.question)
        return Scored(found.score.clone(), found.rank, found)


@register
class Codebook(Mode):
    name = "codebook"
    summary = "A GRACE-style baseline: each entry keyed by one canonical question, nearest key within a radius."

    def score(self, q: Query) -> Scored:
        from fastmem.memory.codebook import codebook_scores

        lm, states = q.model(self.name)
        return Scored(codebook_scores(lm, q.bank, states) if len(q.bank) else _empty(q))

    def warm(self, lm, bank: MemoryBank) -> None:
        from fastmem.memory.codebook import codebook_keys

        codebook_keys(lm, bank)  # one canonical question per entry through the model

    def silent_hint(self, bank: MemoryBank, word: str) -> str:
        return (" The codebook keys each entry by one question form (`Question: in <context>, what is <word>? "
                "Answer:`); another phrasing lands outside its radius.")


@register
class Shuffled(SpanMatch):
    name = "shuffled"
    summary = "A control: span_match's retrieval and settings, but another entry's value (the value carries the answer)."
    controls = "span_match"

    def inject(self, bank: MemoryBank, chosen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        source = shuffled_source(chosen, len(bank))
        values = bank.stacked()["value"]
        return values[source.clamp(min=0)] * (source >= 0).unsqueeze(1), source

    def injected_note(self, bank: MemoryBank, top: int) -> str:
        src = bank.entries[int(shuffled_source(torch.tensor([top]), len(bank))[0])]
        return f" Shuffled control: injected the value of '{src.word}' in '{src.context}' -> '{src.label}'."


def shuffled_source(chosen: torch.Tensor, n_entries: int) -> torch.Tensor:
    """The shuffled control's derangement: each entry's values go to the next entry (-1 stays -1)."""
    return ((chosen + 1) % max(1, n_entries)).masked_fill(chosen < 0, -1)


def _ids(names: list[str]) -> tuple[torch.Tensor, dict[str, int]]:
    index: dict[str, int] = {}
    return torch.tensor([index.setdefault(n, len(index)) for n in names], dtype=torch.long), index


MODES = tuple(REGISTRY)  # the memory's modes and the plain model (the answering baselines register later)
DEFAULT_MODE = SpanMatch.name
