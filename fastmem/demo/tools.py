"""The app's demo tools, reached as `lab.demo`: preset scenarios, share documents, and the pictures behind an
answer (the tokens a correction promotes, where a label ranks, the match of the word and context by depth, a
guess at a typed statement's parts)."""
from __future__ import annotations

import torch

from fastmem.memory.explain import special_words
from fastmem.demo.presets import PRESETS, Preset, get_preset
from fastmem.demo.share import ShareFileError, ShareView, dump_share, memory_bytes, parse_share
from fastmem.errors import BindingError, FastmemError
from fastmem.eval.suite import bindings
from fastmem.fields import MAX_QUESTION, check_steps, clean_field
from fastmem.memory.bank import MemoryBank
from fastmem.memory.engine import check_alpha, head_bias, prompt_states
from fastmem.memory.modes import get_mode
from fastmem.memory.prompts import SlottedPrompt
from fastmem.memory.retrieval import check_threshold
from fastmem.memory.values import correction_vector


class DemoTools:
    def __init__(self, lab):
        self.lab = lab
        self._layer_stats = None  # reference statistics for `layer_profile`, made on first use

    # -- presets and share documents ------------------------------------------------------------
    @property
    def presets(self) -> list[Preset]:
        return list(PRESETS.values())

    def load_preset(self, bank: MemoryBank, preset, replace: bool = True):
        """Write a preset scenario (`demo.presets`) into the memory; `replace` empties it first (the app asks
        before it replaces a memory that is not empty)."""
        preset = get_preset(preset)
        self.lab.check_memory(bank)
        if replace:
            bank.clear()
        return self.lab.write(bank, list(preset.rows))

    def preset_questions(self, preset) -> list[tuple]:
        """(suggestion, prompt) for each of a preset's suggested questions."""
        return [(q, self.lab.question(q.word, q.context)) for q in get_preset(preset).questions]

    def share(self, bank: MemoryBank, view: ShareView) -> str:
        """A share document (JSON): the memory file plus the view settings, with a digest of both."""
        return dump_share(self.lab.export_memory(bank), self.lab.lm.name, view)

    def open_share(self, data) -> tuple[MemoryBank, ShareView]:
        """(memory, view) from a share document, every part checked against this model; raises
        ShareFileError and changes nothing when anything does not fit."""
        doc = parse_share(data)
        try:
            bank = self.lab.import_memory(memory_bytes(doc))
            get_mode(doc.view.mode)
            if doc.view.alpha is not None:
                check_alpha(doc.view.alpha)
            if doc.view.threshold != "default":
                check_threshold(doc.view.threshold)
        except ShareFileError:
            raise
        except FastmemError as exc:
            raise ShareFileError(f"The share file does not fit this model: {exc}") from None
        return bank, doc.view

    # -- what is behind an answer ---------------------------------------------------------------
    @staticmethod
    def special_words(answer: str) -> str | None:
        """An answer of special tokens or whitespace in words (`explain.special_words`), else None."""
        return special_words(answer)

    def top_tokens(self, logits: torch.Tensor, k: int = 10) -> list[tuple[str, float]]:
        values, ids = logits.float().topk(min(k, logits.shape[-1]))
        return [(self.lab.lm.tokenizer.decode([int(i)]), float(v)) for v, i in zip(values, ids)]

    def correction_tokens(self, value: torch.Tensor, k: int = 10) -> list[tuple[str, float]]:
        """Tokens the correction promotes most: W_U @ v, logit-lens style."""
        return self.top_tokens(value.float() @ self.lab.lm.unembedding.detach().float().cpu().T, k)

    def label_ranks(self, bank: MemoryBank, index: int, steps=(1, 8)) -> dict[int, int]:
        """Rank (1 = top) of the entry's first label token in the logit lens `W_U v` of its value made with
        each number of steps, from the entry's own write statement: why one step fails on a tied-embedding
        model (its `W_U v` favours other tokens) while the refined value puts the label first."""
        lm = self.lab.lm
        self.lab.check_memory(bank)
        if not 0 <= index < len(bank):
            raise BindingError(f"No memory entry number {index}.")
        e = bank.entries[index]
        states = prompt_states(lm, bank, [SlottedPrompt(e.write_text, e.word_span, e.context_span, e.context)])
        W = lm.unembedding.detach().float().cpu()
        out = {}
        for n in dict.fromkeys(check_steps(int(n)) for n in steps):
            v = correction_vector(states.final, torch.tensor([e.label_id]), W, steps=n, bias=head_bias(lm))[0]
            lens = v @ W.T
            out[n] = int((lens > lens[e.label_id]).sum()) + 1
        return out

    def layer_profile(self, bank: MemoryBank, result) -> list:
        """The word and context match, at every layer, of the entries slot-free reading found best for this
        answer (`demo.depth`): where the chosen entry and its runner-up part."""
        from fastmem.demo.charts import entry_label
        from fastmem.demo.depth import layer_profile, layer_statistics

        lab = self.lab
        lab.check_memory(bank)
        if not result.found:
            return []
        if self._layer_stats is None:  # reference states: training questions of the suite, once per Lab
            suite = lab.suite
            reads = [b.read for e in suite.train_experiments for b in bindings(e, suite.split("train")[:24])]
            self._layer_stats = layer_statistics(lab.lm, reads)
        out = []
        for index, f in result.found.items():
            e = bank.entries[index]
            statement = SlottedPrompt(e.write_text, e.word_span, e.context_span, e.context)
            out += layer_profile(lab.lm, self._layer_stats, list(result.encoded.ids),
                                 {"word": f.word_tokens, "context": f.context_tokens}, statement,
                                 entry_label(e.word, e.context, e.label))
        return out

    def entry_table(self, bank: MemoryBank, promoted_for: int = 300) -> list[dict]:
        """One row per entry for a table: on/off, word, context, label, the tokens its correction promotes (the
        first `promoted_for` entries) and its value's norm."""
        bank = bank.snapshot()
        norms = bank.stacked()["value"].norm(dim=1).tolist()
        return [{"#": i, "on": bank.is_enabled(i), "word": e.word, "context": e.context, "label": e.label,
                 "promotes": [t for t, _ in self.correction_tokens(e.value, 3)] if i < promoted_for else [],
                 "value norm": round(norms[i], 2)} for i, e in enumerate(bank.entries)]

    def propose_statement(self, statement: str):
        """A first guess at a typed statement's word, context and label (`demo.propose`), to correct."""
        from fastmem.demo.propose import propose

        return propose(self.lab.lm, clean_field("statement", statement, MAX_QUESTION))
