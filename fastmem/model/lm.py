"""The frozen model as the memory sees it: batched forward passes that return keys and answer states.

Everything is stateless: no hooks are registered. The correction is added after the final norm, so
`logits = W_U (h + alpha v) = logits(h) + alpha W_U v` and one forward pass serves every mode.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn as nn

from fastmem.model.arch import arch_names, num_layers
from fastmem.model.batching import TOKEN_BUDGET, StateBuffer, bounded_memory, plan_chunks
from fastmem.model.decode import next_tokens
from fastmem.errors import LabelError, SettingsError
from fastmem.memory.prompts import SlottedPrompt, token_positions
from fastmem.memory.spans import QuestionTokens, stack_rows


@dataclass(frozen=True)
class EncodedPrompt:
    ids: list[int]
    tokens: list[str]
    word_positions: list[int]  # tokens of the invented word; the key is read at the last one
    context_positions: list[int]  # tokens of the context phrase, or those before the word if none
    answer_position: int  # the last token: its final state predicts the answer
    offsets: tuple[tuple[int, int], ...] = ()  # each token's character span in the prompt's text ((0, 0): special)


MAX_LABEL_TOKENS = 8  # a label is a word or short phrase; each token gets its own correction
MAX_SPAN_TOKENS = 12  # token-level keys keep at most the last 12 tokens of a word or context span


@dataclass(frozen=True)
class TokenStates:
    """Hidden states of every token of a span (word or context) at a few layers, padded."""

    layers: tuple[int, ...]
    states: torch.Tensor  # [N, len(layers), T, d]
    mask: torch.Tensor  # [N, T] True where a token is real

    def at(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """([N, T, d], [N, T]) at one of the stored layers."""
        if layer not in self.layers:
            raise SettingsError(f"Token states were taken at layers {self.layers}, not {layer}.")
        return self.states[:, self.layers.index(layer)], self.mask

    def select(self, index) -> "TokenStates":
        return TokenStates(self.layers, self.states[index], self.mask[index])

    @staticmethod
    def cat(parts: list["TokenStates"]) -> "TokenStates":
        width = max(p.mask.shape[1] for p in parts)
        pad = [(p.states, p.mask) if p.mask.shape[1] == width else (
            torch.nn.functional.pad(p.states, (0, 0, 0, width - p.mask.shape[1])),
            torch.nn.functional.pad(p.mask, (0, width - p.mask.shape[1]))) for p in parts]
        return TokenStates(parts[0].layers, torch.cat([s for s, _ in pad]), torch.cat([m for _, m in pad]))


@dataclass(frozen=True)
class PromptStates:
    """Per prompt: word key and context key at every layer, the final (post-norm) answer state, and
    (when asked for) the states of every word and context token at a few layers."""

    word: torch.Tensor  # [N, n_layers + 1, d] at the word's last token
    context: torch.Tensor  # [N, n_layers + 1, d] mean over the context phrase
    final: torch.Tensor  # [N, d]
    word_tokens: TokenStates | None = None
    context_tokens: TokenStates | None = None
    last: torch.Tensor | None = None  # [N, n_layers + 1, d] at the prompt's last token (the codebook's key)
    question: "QuestionTokens | None" = None  # every token, as slot-free reading searches them
    layers: tuple[int, ...] | None = None  # the layers `word`, `context` and `last` hold (None: all, in order)

    def __len__(self) -> int:
        return self.final.shape[0]

    def _index(self, layer: int) -> int:
        if self.layers is None:
            return layer
        if layer not in self.layers:
            raise SettingsError(f"These states were kept at layers {self.layers}, not {layer}.")
        return self.layers.index(layer)

    def word_at(self, layer: int) -> torch.Tensor:
        """[N, d] the word key at one layer."""
        return self.word[:, self._index(layer)]

    def context_at(self, layer: int) -> torch.Tensor:
        return self.context[:, self._index(layer)]

    def last_at(self, layer: int) -> torch.Tensor:
        return self.last[:, self._index(layer)]

    def keep(self, layers) -> "PromptStates":
        """The same states with the word, context and last-token keys at these layers only (less memory)."""
        layers = tuple(sorted(set(layers)))
        at = torch.tensor([self._index(layer) for layer in layers], dtype=torch.long)
        return replace(self, word=self.word[:, at], context=self.context[:, at],
                       last=None if self.last is None else self.last[:, at], layers=layers)

    def select(self, index) -> "PromptStates":
        return PromptStates(self.word[index], self.context[index], self.final[index],
                            *(None if t is None else t.select(index) for t in (self.word_tokens, self.context_tokens)),
                            None if self.last is None else self.last[index],
                            None if self.question is None else self.question.select(index), self.layers)

    @staticmethod
    def cat(parts: list["PromptStates"]) -> "PromptStates":
        if len({p.layers for p in parts}) > 1:
            raise SettingsError("States kept at different layers cannot be joined.")
        dense = (torch.cat([getattr(p, f) for p in parts]) for f in ("word", "context", "final"))
        tokens = [None if any(getattr(p, f) is None for p in parts) else TokenStates.cat([getattr(p, f) for p in parts])
                  for f in ("word_tokens", "context_tokens")]
        last = None if any(p.last is None for p in parts) else torch.cat([p.last for p in parts])
        question = None if any(p.question is None for p in parts) else QuestionTokens.cat([p.question for p in parts])
        return PromptStates(*dense, *tokens, last, question, parts[0].layers)


class FrozenLM:
    """A frozen causal LM plus its tokenizer; safe to share between threads (no mutable state)."""

    def __init__(self, model: nn.Module, tokenizer, name: str):
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.name = name
        self.names = arch_names(model)
        self.n_layers = num_layers(model)
        self.hidden_size = int(model.get_output_embeddings().weight.shape[1])
        self.device = next(model.parameters()).device
        self._label_ids: dict[str, tuple[int, ...]] = {}  # label text -> token ids (the tokenizer never changes)
        self._encoded: dict[SlottedPrompt, EncodedPrompt] = {}  # the same prompts are encoded again and again

    @classmethod
    def load(cls, spec: str, device: str = "auto", dtype: str = "float32") -> "FrozenLM":
        from fastmem.model.loading import load_model

        return cls(*load_model(spec, device, dtype))

    @property
    def dtype(self) -> torch.dtype:
        """The weights' type (states, keys and values leave the model as float32 whatever it is)."""
        return self.unembedding.dtype

    @property
    def unembedding(self) -> torch.Tensor:  # W_U: [V, d], the *output* embedding
        return self.model.get_output_embeddings().weight

    def check_layer(self, layer: int) -> int:
        if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer <= self.n_layers:
            raise SettingsError(f"Layer {layer!r} is out of range: this model has layers 0..{self.n_layers}.")
        return layer

    # -- tokens ---------------------------------------------------------------------------
    def label_tokens(self, label: str) -> tuple[int, ...]:
        """The token ids of ` label` (with its leading space): at most MAX_LABEL_TOKENS of them."""
        if isinstance(label, str) and label in self._label_ids:  # scoring asks for the same labels many times
            return self._label_ids[label]
        if not isinstance(label, str) or not label.strip():
            raise LabelError("The label is empty.")
        ids = tuple(int(i) for i in self.tokenizer(" " + label.strip(), add_special_tokens=False)["input_ids"])
        if not ids:
            raise LabelError(f"The label {label.strip()!r} gives no token for this model.")
        if len(ids) > MAX_LABEL_TOKENS:
            raise LabelError(f"The label {label.strip()[:60]!r} is {len(ids)} tokens for this model; labels are at "
                             f"most {MAX_LABEL_TOKENS} tokens (a short word or phrase).")
        if len(self._label_ids) < 100_000:
            self._label_ids[label] = ids
        return ids

    def token_text(self, ids) -> list[str]:
        return [self.tokenizer.decode([int(i)]) for i in ids]

    def encode(self, prompt: SlottedPrompt) -> EncodedPrompt:
        got = self._encoded.get(prompt)
        if got is None:
            got = self._encode(prompt)
            if len(self._encoded) >= 200_000:  # bounded: a long-running app forgets the oldest half
                for key in list(self._encoded)[:100_000]:
                    self._encoded.pop(key, None)
            self._encoded[prompt] = got
        return got

    def token_count(self, prompt: SlottedPrompt) -> int:
        """How many tokens `encode` gives the prompt, without decoding each (checked before any other work)."""
        got = self._encoded.get(prompt)
        return len(got.ids) if got is not None else len(self._tokenize(prompt)[0])

    def _tokenize(self, prompt: SlottedPrompt) -> tuple[list[int], list[tuple[int, int]], str]:
        lead = " " if 0 in (prompt.word_span[0], (prompt.context_span or (1,))[0]) else ""
        enc = self.tokenizer(lead + prompt.text, return_offsets_mapping=True)
        ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
        start = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.eos_token_id
        if lead and start is not None and (not ids or ids[0] != start):
            ids, offsets = [start] + ids, [(0, 0)] + offsets
        return ids, offsets, lead

    def _encode(self, prompt: SlottedPrompt) -> EncodedPrompt:
        """Token ids and slot positions. A slot at the very start is read after a space and after the
        tokenizer's start (or end) of text token, as it is anywhere else: `dax in game A means` and `what is
        dax in game A?` then share the token ` dax`, and ` dax` is not the first position, whose states
        every causal LM treats apart (the attention sink)."""
        ids, offsets, lead = self._tokenize(prompt)
        if not ids:
            raise SettingsError("The prompt is empty.")
        shift = len(lead)
        word = token_positions(offsets, (prompt.word_span[0] + shift, prompt.word_span[1] + shift))
        if not word:
            raise SettingsError(f"The word slot of {prompt.text!r} covers no token.")
        if prompt.context_span is not None:
            context = token_positions(offsets, (prompt.context_span[0] + shift, prompt.context_span[1] + shift))
        else:  # no context phrase: the frame before the word stands in for it
            context = [i for i in range(word[0]) if offsets[i][1] > offsets[i][0]]
        spans = tuple((max(0, a - shift), max(0, b - shift)) if b > a else (0, 0) for a, b in offsets)
        return EncodedPrompt(ids, self.token_text(ids), word, context or word, len(ids) - 1, spans)

    def question_row(self, prompt: SlottedPrompt, encoded: EncodedPrompt) -> dict:
        """The prompt's tokens as slot-free reading searches them (`spans.question_tokens`); a prompt whose
        slots the user marked is searched only inside them."""
        from fastmem.memory.spans import question_tokens

        word = set(encoded.word_positions) if prompt.marked else None
        context = set(encoded.context_positions) if prompt.marked and prompt.context_span is not None else None
        return question_tokens(prompt.text, encoded.ids, list(encoded.offsets), word, context,
                               self.tokenizer.unk_token_id)

    # -- forward --------------------------------------------------------------------------
    def _batch(self, encoded: list[EncodedPrompt]):
        width = max(len(e.ids) for e in encoded)
        ids = torch.zeros(len(encoded), width, dtype=torch.long)
        mask = torch.zeros(len(encoded), width, dtype=torch.long)
        for row, e in enumerate(encoded):  # left padding: the answer position is always the last
            ids[row, width - len(e.ids):] = torch.tensor(e.ids)
            mask[row, width - len(e.ids):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # explicit, so padding does not shift RoPE
        return ids.to(self.device), mask.to(self.device), positions.to(self.device), width

    @torch.inference_mode()
    def states(self, prompts: list[SlottedPrompt], batch_size: int = 64, progress=None,
               token_layers: tuple[int, ...] = (), keep: tuple[int, ...] | None = None,
               token_budget: int = TOKEN_BUDGET) -> PromptStates:
        """One forward pass per prompt, in chunks of similar length (less padding) of at most `batch_size` rows
        and `token_budget` tokens (`batching.plan_chunks`); results keep the order of `prompts`.
        `progress(n_done)` is called after each chunk; `token_layers` also returns the states of every word and
        context token at those layers; `keep` keeps the word, context and last-token states at those layers
        only (`PromptStates.keep`), so that many prompts never hold every layer."""
        token_layers = tuple(self.check_layer(layer) for layer in token_layers)
        layers = tuple(range(self.n_layers + 1)) if keep is None else \
            tuple(sorted({self.check_layer(layer) for layer in keep}))
        encoded = [self.encode(p) for p in prompts]
        spans = max([min(len(getattr(e, a)), MAX_SPAN_TOKENS) for e in encoded
                     for a in ("word_positions", "context_positions")] + [1])
        out = StateBuffer(len(encoded), self.hidden_size, layers, token_layers, spans)
        for rows in plan_chunks([len(e.ids) for e in encoded], batch_size, token_budget):
            chunk = [encoded[i] for i in rows]
            ids, mask, positions, width = self._batch(chunk)
            with bounded_memory(f"Reading {len(encoded):,} prompt(s)"):
                hidden = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                    output_hidden_states=True, use_cache=False, logits_to_keep=1).hidden_states
                out.fill(rows, chunk, hidden, width, MAX_SPAN_TOKENS)  # the last of `hidden` is post-norm
            del hidden
            if progress is not None:
                progress(len(chunk))
        tokens = [TokenStates(token_layers, *t) for t in out.tokens] if out.tokens else [None, None]
        question = stack_rows([self.question_row(p, e) for p, e in zip(prompts, encoded)])
        return PromptStates(out.word, out.context, out.final, *tokens, out.last, question,
                            None if keep is None else layers)

    @torch.inference_mode()
    def bare_forward(self, prompts: list[SlottedPrompt], batch_size: int = 64) -> None:
        """The forward passes `states` makes (same batches, same padding), keeping nothing: the yardstick the
        speed scripts hold writes and dtypes against."""
        encoded = [self.encode(p) for p in prompts]
        for rows in plan_chunks([len(e.ids) for e in encoded], batch_size):
            ids, mask, positions, _ = self._batch([encoded[i] for i in rows])
            self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False, logits_to_keep=1)

    @torch.inference_mode()
    def logits(self, final: torch.Tensor) -> torch.Tensor:
        """Next-token logits from post-norm states [N, d] (the output head alone)."""
        head = self.model.get_output_embeddings()
        return head(final.to(self.device, head.weight.dtype)).float().cpu()

    def continuations(self, text: str | list[int], first_tokens: list[int], max_new_tokens: int = 5,
                      corrections: torch.Tensor | None = None, alpha: float = 0.0,
                      word_ends: list[int] | None = None) -> list[list[int]]:
        """Greedy continuations of `text` (or its token ids; at most `max_new_tokens` tokens each, the given first one
        included), one per given first token, decoded together in one batch (`decode.greedy`).

        `corrections` [N, max_new_tokens - 1, d] are added, times `alpha`, after the final norm at the
        following steps (a multi-token label's later corrections); without them the rest is the plain
        model's. On a memory-bound CPU a batch of two costs about what one row does.
        """
        from fastmem.model.decode import greedy

        if not first_tokens:
            return []
        ids = list(text) if isinstance(text, list | tuple) else self.tokenizer(text)["input_ids"]
        with bounded_memory("Continuing the answer"):
            return greedy(self, [ids] * len(first_tokens), first_tokens, max_new_tokens - 1, corrections, alpha,
                          word_ends=word_ends)

    def generate(self, text: str, first_logits: torch.Tensor, max_new_tokens: int = 5) -> list[int]:
        """Greedy tokens: the first from `first_logits` (already corrected), the rest from the plain model."""
        return self.continuations(text, [int(next_tokens(first_logits))], max_new_tokens)[0]

