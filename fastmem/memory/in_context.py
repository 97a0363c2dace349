"""In-context baselines: no memory is read; the written statements are put before the question instead.

- in_context_all   every binding of the memory, one statement per line, then the question
- in_context_word  only the bindings of the asked word (the question's keyed word, compared as text); a
                   question whose word was never written is asked alone, as the plain model gets it

A statement is an entry's write prompt, its label and a full stop (`In game A, blicket means red.`). The
statements sit between one demonstration binding and a demonstration of the answer format (`DEMO`); without the
demonstration SmolLM2 answers a newline. On 12 training words × 2 contexts with only the word's statements,
the first answer token was the label for 1/24 questions with the bare statements, 0/24 with an instruction
line, and 10/24 with the demonstration (`python scripts/in_context_formats.py`). The prompt is the statements'
tokens (after the tokenizer's start token, if it adds one) followed by the question's: one definition, whether
the statements run again with every question or once, with their KV cache reused. A question whose word has
no statement is asked alone, with no demonstration.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch

from fastmem.model.decode import answer_states, next_tokens
from fastmem.errors import SettingsError
from fastmem.model.lm import FrozenLM
from fastmem.memory.bank import MemoryBank, MemoryEntry
from fastmem.memory.modes import REGISTRY, Mode, get_mode, register
from fastmem.memory.prompts import SlottedPrompt
from fastmem.memory.readout import Readout, answers

DEMO = ("In game Q, florp means bicycle.", "Question: in game Q, what is florp? Answer: bicycle")  # no suite's words
CACHE_ABOVE = 256  # statements of this many tokens or more run once per group; each question reuses their cache
CACHE_TOKENS = 32_768  # cached tokens held at once over a batch of questions (SmolLM2: ≈ 46 KB each)


@dataclass(frozen=True)
class InContextPrompt:
    prefix: tuple[int, ...]  # the statements' tokens; empty: the question alone (the plain model's prompt)
    question: tuple[int, ...]

    @property
    def ids(self) -> list[int]:
        return list(self.prefix + self.question)

    def __len__(self) -> int:
        return len(self.prefix) + len(self.question)


class InContext(Mode):
    """A baseline of another kind: no retrieval; the written statements go before the question."""

    retrieves = False
    every_entry: ClassVar[bool] = True  # every statement, or only the asked word's
    caches_statements: ClassVar[bool] = True  # statements shared by every question: their KV cache is reused

    def score(self, q):
        raise SettingsError(f"Mode {self.name} answers with the statements in the prompt; it does not retrieve.")


@register
class InContextAll(InContext):
    name = "in_context_all"
    summary = "A baseline: every written statement before the question (no memory read)."


@register
class InContextWord(InContext):
    name = "in_context_word"
    summary = "A baseline: the asked word's statements before the question (a perfect lookup by text)."
    every_entry, caches_statements = False, False


def in_context_mode(mode) -> InContext:
    """The in-context baseline of this name (a SettingsError for any other mode)."""
    got = get_mode(mode)
    if not isinstance(got, InContext):
        names = [n for n, m in REGISTRY.items() if isinstance(m, InContext)]
        raise SettingsError(f"Unknown in-context mode {got.name!r}: choose one of {', '.join(names)}.")
    return got


def is_in_context(mode) -> bool:
    return isinstance(get_mode(mode), InContext)


def statement(entry: MemoryEntry) -> str:
    return f"{entry.write_text.rstrip()} {entry.label}."


def statements(bank: MemoryBank, mode: str, word: str) -> list[str]:
    """The statements put before a question about `word` (switched-off entries are left out)."""
    every = in_context_mode(mode).every_entry
    return [statement(e) for e in bank.entries if e.slot not in bank.disabled and (every or e.word == word)]


def context_window(lm: FrozenLM) -> int | None:
    return getattr(lm.model.config, "max_position_embeddings", None)


def build_prompts(lm: FrozenLM, bank: MemoryBank, mode: str, prompts: list[SlottedPrompt]) -> list[InContextPrompt]:
    """The in-context prompt of each question; a SettingsError when one is longer than the model's window."""
    prefixes: dict[str, tuple[int, ...]] = {}
    out = []
    for p in prompts:
        lines = statements(bank, mode, p.word)
        if not lines:
            out.append(InContextPrompt((), tuple(lm.encode(p).ids)))
            continue
        text = "\n".join([DEMO[0], *lines, DEMO[1]]) + "\n"
        if text not in prefixes:
            prefixes[text] = tuple(int(i) for i in lm.tokenizer(text)["input_ids"])
        question = tuple(int(i) for i in lm.tokenizer(p.text, add_special_tokens=False)["input_ids"])
        out.append(InContextPrompt(prefixes[text], question))
    window = context_window(lm)
    longest = max((len(p) for p in out), default=0)
    if window and longest > window:
        raise SettingsError(f"{in_context_mode(mode).name}: a prompt of {longest:,} tokens does not fit the model's window of "
                            f"{window:,} tokens ({len(bank):,} bindings).")
    return out


@torch.inference_mode()
def final_states(lm: FrozenLM, prompts: list[InContextPrompt], batch_size: int = 32) -> torch.Tensor:
    """[N, d] post-norm states at each prompt's last token. Prompts that share long statements run them once
    and reuse their KV cache (a copy per batch of questions); the rest run whole, in batches."""
    out = torch.zeros(len(prompts), lm.hidden_size)
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(p.prefix if len(p.prefix) >= CACHE_ABOVE else (), []).append(i)
    for prefix, rows in groups.items():
        if not prefix:
            for start in range(0, len(rows), batch_size):
                chunk = rows[start:start + batch_size]
                got = answer_states(lm, [prompts[i].ids for i in chunk], [1] * len(chunk), batch_size)
                out[chunk] = torch.cat(got)
            continue
        cache = run_statements(lm, prefix)
        size = max(1, min(batch_size, CACHE_TOKENS // len(prefix)))  # rows of a copied cache held at once
        for start in range(0, len(rows), size):
            chunk = rows[start:start + size]
            out[chunk] = on_cached_statements(lm, cache, len(prefix), [prompts[i].question for i in chunk])
    return out


@torch.inference_mode()
def run_statements(lm: FrozenLM, prefix: tuple[int, ...]):
    """The KV cache of the statements' tokens, run once."""
    return lm.model.base_model(input_ids=torch.tensor([prefix], device=lm.device), use_cache=True).past_key_values


@torch.inference_mode()
def on_cached_statements(lm: FrozenLM, cache, n_prefix: int, questions: list[tuple[int, ...]]) -> torch.Tensor:
    """[B, d] final states of B questions run on a copy of the statements' cache, padded on the right (a causal
    model's real tokens never see the padding after them)."""
    rows = copy.deepcopy(cache)
    rows.batch_repeat_interleave(len(questions))
    width = max(len(q) for q in questions)
    ids = torch.zeros(len(questions), width, dtype=torch.long)
    mask = torch.zeros(len(questions), n_prefix + width, dtype=torch.long)
    mask[:, :n_prefix] = 1
    for r, q in enumerate(questions):
        ids[r, :len(q)] = torch.tensor(q, dtype=torch.long)
        mask[r, n_prefix:n_prefix + len(q)] = 1
    positions = torch.arange(n_prefix, n_prefix + width).expand(len(questions), -1)
    hidden = lm.model.base_model(input_ids=ids.to(lm.device), attention_mask=mask.to(lm.device),
                                 position_ids=positions.to(lm.device), past_key_values=rows,
                                 use_cache=True).last_hidden_state
    return torch.stack([hidden[r, len(q) - 1] for r, q in enumerate(questions)]).float().cpu()


def in_context_readout(lm: FrozenLM, bank: MemoryBank, mode: str, prompts: list[SlottedPrompt],
                       base_first: torch.Tensor, in_play) -> tuple[Readout, list[int]]:
    """Greedy answers with the statements in the prompt, as long as the longest label in play,
    and each prompt's length in tokens. `base_first` [N]: the plain model's first answer tokens."""
    built = build_prompts(lm, bank, mode, prompts)
    first = next_tokens(lm.logits(final_states(lm, built))) if built else torch.zeros(0, dtype=torch.long)
    nothing = torch.full((len(prompts),), -1, dtype=torch.long)
    longest = max((len(tuple(x)) for x in in_play), default=1)  # no entry is injected: read every label in play
    readout = answers(lm, bank, [p.ids for p in built], first, base_first, nothing, 0.0, longest)
    return readout, [len(p) for p in built]
