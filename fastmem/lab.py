"""The high-level API the app and notebooks use: one shared model, one memory per user.

`Lab` holds the frozen model, its calibration and key geometry (read-only, shared by all sessions).
Every call takes the user's `MemoryBank` explicitly and never keeps it, so sessions stay apart.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

import torch

from .calibrate import Calibration, empty_bank, load_or_calibrate
from .engine import answer, check_alpha, head_bias, prompt_states, write_entries
from .explain import Found, explain, found_in
from .fields import (MAX_CONTEXT, MAX_LABEL, MAX_QUESTION, MAX_WORD, check_count, check_steps,  # noqa: F401
                     clean_field)
from .keying import READ_TEMPLATE, WRITE_TEMPLATE, KeyedQuestion, key_question, question_forms
from .errors import BindingError, FastmemError, LabelError, MemoryFileError, SettingsError
from .lm import EncodedPrompt, FrozenLM
from .memory import MemoryBank
from .prompts import SlottedPrompt, render, statement_prompt, template_fields
from .readout import answers, decoded
from .retrieval import DEFAULT_MODE, MODES, NEEDS_PROJECTOR, KeyGeometry, check_mode, check_threshold
from .suite import Suite, bindings, load_suite
from .suite_library import PHRASINGS
from .values import correction_vector

PLAIN_TEMPLATE = "Question: what is {word}? Answer:"
@dataclass(frozen=True)
class WriteResult:
    word: str
    context: str
    label: str
    status: str  # added / replaced / kept / error
    error: str | None = None


@dataclass(frozen=True)
class AskResult:
    prompt: SlottedPrompt
    encoded: EncodedPrompt
    mode: str
    alpha: float
    threshold: float | None
    scores: torch.Tensor  # [M] score of every entry (-inf where gated out)
    chosen: int  # entry index, -1 when nothing was injected
    best: float
    reason: str
    base_logits: torch.Tensor  # [V]
    logits: torch.Tensor  # [V]
    value: torch.Tensor  # [d] injected value for the first answer token (zeros when none)
    base_answer: str  # the plain model's greedy answer, as many tokens as `answer`
    answer: str  # the greedy answer with memory: as many tokens as the injected entry's label (else one)
    base_generation: str = ""
    generation: str = ""
    extra: dict = field(default_factory=dict)
    values: torch.Tensor | None = None  # [n, d] the injected entry's correction per label token
    answer_ids: tuple[int, ...] = ()
    base_answer_ids: tuple[int, ...] = ()
    injected: int = -1  # the entry whose values were injected: `chosen`, or another one (the shuffled control)
    found: dict | None = None  # slot-free reading: where the best entries' word and context were found (Found)


class Lab:
    def __init__(self, lm: FrozenLM, calibration: Calibration, geometry: KeyGeometry, suite: Suite | None = None):
        self.lm, self.calibration, self.geometry = lm, calibration, geometry
        self._layer_stats = None  # reference statistics for `layer_profile`, made on first use
        self.suite = suite or load_suite()
        self.question_forms = question_forms(self.suite)
        # statement forms a user can pick (the label follows each); any other form works through `write`
        self.write_forms = list(dict.fromkeys([WRITE_TEMPLATE] + [e.write for e in self.suite.experiments]
                                              + [write for _, _, write, _ in PHRASINGS]))

    @classmethod
    def load(cls, model: str = "smollm2", device: str = "auto", suite: Suite | None = None, value_steps: int = 8,
             seed: int = 0, progress=None, show_progress: bool = False) -> "Lab":
        lm = FrozenLM.load(model, device)
        suite = suite or load_suite()
        cal, geometry = load_or_calibrate(lm, suite, value_steps, seed, progress, show_progress=show_progress)
        return cls(lm, cal, geometry, suite)

    def new_memory(self) -> MemoryBank:
        return empty_bank(self.lm, self.calibration)

    def check_memory(self, bank: MemoryBank) -> None:
        if not isinstance(bank, MemoryBank):
            raise SettingsError(f"Expected a MemoryBank (from new_memory or import_memory), not {type(bank).__name__}.")
        if bank.hidden_size != self.lm.hidden_size or bank.model_name != self.lm.name:
            raise SettingsError(f"This memory belongs to '{bank.model_name}' (hidden size {bank.hidden_size}); "
                                f"the loaded model is '{self.lm.name}' (hidden size {self.lm.hidden_size}).")
        if max(bank.key_layer, bank.context_layer, bank.symbol_layer, bank.token_layer) > self.lm.n_layers:
            raise SettingsError(f"This memory uses layers beyond this model's 0..{self.lm.n_layers}.")

    def export_memory(self, bank: MemoryBank) -> bytes:
        """The memory as a file (safetensors + JSON manifest) that `import_memory` reads back exactly."""
        self.check_memory(bank)
        return bank.to_bytes(self.calibration.projector_id)

    def import_memory(self, data: bytes) -> MemoryBank:
        """A new memory from a file; raises MemoryFileError (and changes nothing) unless it fits this model."""
        bank, _ = MemoryBank.from_bytes(data, expect_hidden_size=self.lm.hidden_size)
        try:
            self.check_memory(bank)
        except SettingsError as exc:
            raise MemoryFileError(str(exc)) from None
        vocab = self.lm.unembedding.shape[0]
        if any(not 0 <= t < vocab for e in bank.entries for t in e.label_ids):
            raise MemoryFileError(f"The memory file has label ids outside this model's vocabulary (0..{vocab - 1}).")
        if bank.token_layer != self.calibration.token_layer:  # a version-1 file, or another calibration's layer
            try:
                bank = self.rekey(bank)
            except FastmemError as exc:
                raise MemoryFileError(f"The memory file's entries cannot be re-keyed for this model: {exc}") from None
        return bank

    # -- write ------------------------------------------------------------------------------
    def write(self, bank: MemoryBank, rows, template: str = WRITE_TEMPLATE, on_duplicate: str = "replace",
              progress=None, value_steps: int | None = None) -> list[WriteResult]:
        """Write (word, context, label) rows; a bad row gets an error and the others are still written.
        `value_steps` (1 = the post's one-step value) overrides the memory's refinement steps for these rows."""
        self.check_memory(bank)
        value_steps = check_steps(value_steps)
        if rows is None or isinstance(rows, str | bytes | dict) or not hasattr(rows, "__iter__"):
            raise BindingError("Rows must be a list of (word, context, label) rows.")
        rows = list(rows)
        names = template_fields(template)
        if "context" not in names:
            raise BindingError(f"The write template {template!r} needs a {{context}} slot.")
        if on_duplicate not in ("replace", "keep"):
            raise SettingsError("on_duplicate must be 'replace' or 'keep'.")
        results: list[WriteResult | None] = []
        good = []
        for row in rows:
            ok_row = isinstance(row, tuple | list) and len(row) == 3
            word, context, label = row if ok_row else (None, None, None)
            try:
                if not ok_row:
                    raise BindingError(f"A row must be (word, context, label), not {str(row)[:60]!r}.")
                w, c = clean_field("word", word, MAX_WORD), clean_field("context", context, MAX_CONTEXT)
                lab = clean_field("label", label, MAX_LABEL)
                self._label_ids(lab)
                prompt = render(template, w, c)
                self.lm.encode(prompt)
                good.append((len(results), w, c, lab, prompt))
                results.append(None)
            except FastmemError as exc:
                results.append(WriteResult(str(word), str(context), str(label), "error", str(exc)))
        return self._commit(bank, results, good, on_duplicate, progress, value_steps)

    def preview_statement(self, template: str, word: str, context: str, label: str) -> str:
        """The statement `write` makes of one row with this form (checks the form as `write` does)."""
        if "context" not in template_fields(template):
            raise BindingError(f"The write template {template!r} needs a {{context}} slot.")
        return f"{render(template, word, context).text} {label.strip()}"

    def write_statement(self, bank: MemoryBank, statement: str, word: str, context: str, label: str,
                        on_duplicate: str = "replace", value_steps: int | None = None) -> WriteResult:
        """Write one free statement with its word, context and label marked by the user, e.g.
        `According to Mia, dax means a glass of milk` with word `dax`, context `Mia`, label `a glass of
        milk`. The word and context must come before the label. A bad statement gets status 'error'."""
        self.check_memory(bank)
        value_steps = check_steps(value_steps)
        if on_duplicate not in ("replace", "keep"):
            raise SettingsError("on_duplicate must be 'replace' or 'keep'.")
        try:
            text = clean_field("statement", statement, MAX_QUESTION)
            w, c = clean_field("word", word, MAX_WORD), clean_field("context", context, MAX_CONTEXT)
            lab = clean_field("label", label, MAX_LABEL)
            self._label_ids(lab)
            prompt = statement_prompt(text, w, c, lab)
            self.lm.encode(prompt)
        except FastmemError as exc:
            return WriteResult(str(word), str(context), str(label), "error", str(exc))
        return self._commit(bank, [None], [(0, w, c, lab, prompt)], on_duplicate, None, value_steps)[0]

    def _commit(self, bank: MemoryBank, results: list, good: list, on_duplicate: str, progress,
                value_steps: int | None = None) -> list[WriteResult]:
        """Encode the checked rows `good` ((result index, word, context, label, prompt)) in one batch and add
        them; `results` holds the rows already refused (None where a row of `good` goes)."""
        seen = {}
        for i, w, c, lab, _ in good:  # the same slot twice in one batch: the last row wins
            seen[(w, c)] = i
        batch = [g for g in good if seen[(g[1], g[2])] == g[0]]
        for g in good:
            if seen[(g[1], g[2])] != g[0]:
                results[g[0]] = WriteResult(g[1], g[2], g[3], "error",
                                            f"'{g[1]}' in '{g[2]}' appears again later in this batch; that row is used.")
        if batch:
            statuses = write_entries(self.lm, bank, [g[4] for g in batch], [g[1] for g in batch],
                                     [g[2] for g in batch], [g[3] for g in batch], value_steps, on_duplicate,
                                     progress=progress)
            for g, status in zip(batch, statuses):
                results[g[0]] = WriteResult(g[1], g[2], g[3], status)
        return results  # type: ignore[return-value]

    # -- questions ----------------------------------------------------------------------------
    def question(self, word: str, context: str | None = None) -> SlottedPrompt:
        word = clean_field("word", word, MAX_WORD)
        if context is None or not str(context).strip():
            return render(self.suite.plain, word)
        return render(READ_TEMPLATE, word, clean_field("context", context, MAX_CONTEXT))

    def parse_question(self, text: str, word: str | None = None, context: str | None = None) -> SlottedPrompt:
        """Slots of a typed question (`key_question`)."""
        return self.key_question(text, word, context).prompt

    def key_question(self, text: str, word: str | None = None, context: str | None = None) -> KeyedQuestion:
        """Slots of a typed question by the one keying rule (`fastmem.keying`): the user's marks, else a
        known question form, else the last word before '?'; the result says which rule applied."""
        if not isinstance(text, str) or not text.strip():
            raise BindingError("The question is empty.")
        if len(text) > MAX_QUESTION:
            raise BindingError(f"The question is over {MAX_QUESTION:,} characters.")
        if any(unicodedata.category(ch) in ("Cc", "Cs") and ch not in "\t\n\r" for ch in text):
            raise BindingError("The question contains control characters.")
        for name, value in (("word", word), ("context", context)):
            if value is not None and not isinstance(value, str):
                raise BindingError(f"The marked {name} must be text, not {type(value).__name__}.")
        return key_question(text, self.question_forms, word, context)

    def ask(self, bank: MemoryBank, prompt: SlottedPrompt, mode: str = DEFAULT_MODE, alpha: float | None = None,
            threshold: float | None = "default", max_new_tokens: int = 0, point: str | None = None) -> AskResult:
        """Answer one question with and without memory, with everything needed to explain it. Alpha and the
        threshold default to the mode's calibrated settings at `point` (default: the mode's own)."""
        self.check_memory(bank)
        if not isinstance(prompt, SlottedPrompt):
            raise BindingError(f"Ask with a question from parse_question or question, not {type(prompt).__name__}.")
        check_mode(mode)
        defaults = self.calibration.settings(mode, point)
        alpha = check_alpha(defaults.alpha if alpha is None else alpha)
        threshold = defaults.threshold if isinstance(threshold, str) and threshold == "default" \
            else check_threshold(threshold)
        check_count(max_new_tokens, 0)
        if mode in NEEDS_PROJECTOR and bank.key_layer != self.calibration.key_layer:
            raise SettingsError(f"Mode {mode} uses the projector trained at layer {self.calibration.key_layer}; "
                                f"this memory's keys are at layer {bank.key_layer}. Use raw_both_top1 or dual_key.")
        encoded = self.lm.encode(prompt)
        states = prompt_states(self.lm, bank, [prompt])
        got = answer(self.lm, bank, self.geometry, states, [prompt.context], mode, alpha, threshold)
        r = got.retrieved
        chosen, best = int(r.chosen[0]), float(r.best[0])
        found = self._found(bank, prompt, encoded, r) if r.spans is not None else None
        reason = explain(bank, prompt, mode, r.scores[0], chosen, threshold, found)
        source = int(r.injected[0])  # the chosen entry, or (shuffled control) the entry whose values are used
        values = bank.entries[source].values if source >= 0 else torch.zeros(1, bank.hidden_size)
        # as many tokens as the injected label, each with its own correction; the plain answer as long
        said = answers(self.lm, bank, [encoded.ids], got.ids, got.base_ids, r.injected, alpha)
        mem, base = decoded(said.ids[0]), decoded(said.base_ids[0])
        decode = self.lm.tokenizer.decode
        result = AskResult(prompt, encoded, mode, alpha, threshold, r.scores[0], chosen, best, reason,
                           got.base_logits[0], got.logits[0], r.values[0], decode(base), decode(mem),
                           values=values, answer_ids=tuple(mem), base_answer_ids=tuple(base), injected=source,
                           found=found)
        return self.continue_answer(result, max_new_tokens) if max_new_tokens > 0 else result

    @staticmethod
    def _found(bank: MemoryBank, prompt: SlottedPrompt, encoded: EncodedPrompt, r) -> dict[int, Found]:
        """Where slot-free reading found the two best entries (by its ranking), best first."""
        row = r.spans.select(0)
        enabled = bank.stacked()["enabled"]
        rank = row.rank.masked_fill(~enabled, float("-inf"))
        chosen = int(r.chosen[0])
        order = ([chosen] if chosen >= 0 else []) + [int(i) for i in rank.argsort(descending=True)[:3]
                                                     if bool(enabled[i])]
        return {i: found_in(prompt.text, encoded.offsets, row, i) for i in list(dict.fromkeys(order))[:2]}

    def continue_answer(self, result: AskResult, max_new_tokens: int = 4) -> AskResult:
        """The answer with greedy continuations (at most 32 tokens) without and with memory, decoded as
        one batch. Separate from `ask` so an app can show the answer first and the continuations after."""
        check_count(max_new_tokens, 1)
        firsts = [int(result.base_logits.argmax()), int(result.logits.argmax())]
        steps = min(int(max_new_tokens), 32) - 1
        tail = torch.zeros(2, steps, self.lm.hidden_size)
        if result.values is not None and steps > 0:  # the memory row gets its label's later corrections
            later = result.values[1:1 + steps]
            tail[1, :len(later)] = later
        # the injected label ends its word (decode.greedy): `values` holds one correction per label token
        ends = [-1, len(result.values) - 1] if result.injected >= 0 and result.values is not None else None
        base, new = self.lm.continuations(result.encoded.ids, firsts, steps + 1, tail, result.alpha, ends)
        return _with(result, base_generation=self.lm.tokenizer.decode(base), generation=self.lm.tokenizer.decode(new))

    def run_experiment(self, suite: Suite, experiment: str, n_words: int, mode: str = DEFAULT_MODE) -> list:
        """One experiment of a suite, binding by binding, in a scratch memory (`fastmem.experiment`)."""
        from .experiment import run_experiment

        check_mode(mode)
        return run_experiment(self, suite, experiment, n_words, mode)

    def _label_ids(self, label: str) -> tuple[int, ...]:
        """The label's token ids; the unknown token and special tokens are not labels."""
        ids = self.lm.label_tokens(label)
        tok = self.lm.tokenizer
        bad = [i for i in ids if i == tok.unk_token_id or i in set(tok.all_special_ids)]
        if bad:
            raise LabelError(f"The label {label!r} is not in this model's vocabulary (it reads as "
                             f"{tok.convert_ids_to_tokens(bad)[0]!r}).")
        return ids

    def top_tokens(self, logits: torch.Tensor, k: int = 10) -> list[tuple[str, float]]:
        values, ids = logits.float().topk(min(k, logits.shape[-1]))
        return [(self.lm.tokenizer.decode([int(i)]), float(v)) for v, i in zip(values, ids)]

    def label_ranks(self, bank: MemoryBank, index: int, steps=(1, 8)) -> dict[int, int]:
        """Rank (1 = top) of the entry's first label token in the logit lens `W_U v` of its value made with
        each number of steps, from the entry's own write statement: why one step fails on a tied-embedding
        model (its `W_U v` favours other tokens) while the refined value puts the label first."""
        self.check_memory(bank)
        if not 0 <= index < len(bank):
            raise BindingError(f"No memory entry number {index}.")
        e = bank.entries[index]
        states = prompt_states(self.lm, bank, [SlottedPrompt(e.write_text, e.word_span, e.context_span, e.context)])
        W = self.lm.unembedding.detach().float().cpu()
        out = {}
        for n in dict.fromkeys(check_steps(int(n)) for n in steps):
            v = correction_vector(states.final, torch.tensor([e.label_id]), W, steps=n, bias=head_bias(self.lm))[0]
            lens = v @ W.T
            out[n] = int((lens > lens[e.label_id]).sum()) + 1
        return out

    def layer_profile(self, bank: MemoryBank, result: AskResult) -> list:
        """The word and context match, at every layer, of the entries slot-free reading found best for this
        answer (`fastmem.depth`): where the chosen entry and its runner-up part."""
        from .charts import entry_label
        from .depth import layer_profile, layer_statistics

        self.check_memory(bank)
        if not result.found:
            return []
        if self._layer_stats is None:  # reference states: training questions of the suite, once per Lab
            reads = [b.read for e in self.suite.train_experiments for b in bindings(e, self.suite.split("train")[:24])]
            self._layer_stats = layer_statistics(self.lm, reads)
        out = []
        for index, f in result.found.items():
            e = bank.entries[index]
            statement = SlottedPrompt(e.write_text, e.word_span, e.context_span, e.context)
            out += layer_profile(self.lm, self._layer_stats, list(result.encoded.ids),
                                 {"word": f.word_tokens, "context": f.context_tokens}, statement,
                                 entry_label(e.word, e.context, e.label))
        return out

    def propose_statement(self, statement: str):
        """A first guess at a typed statement's word, context and label (`fastmem.propose`), to correct."""
        from .propose import propose

        return propose(self.lm, clean_field("statement", statement, MAX_QUESTION))

    def correction_tokens(self, value: torch.Tensor, k: int = 10) -> list[tuple[str, float]]:
        """Tokens the correction promotes most: W_U @ v, logit-lens style."""
        return self.top_tokens(value.float() @ self.lm.unembedding.detach().float().cpu().T, k)

    def rekey(self, bank: MemoryBank, key_layer: int | None = None) -> MemoryBank:
        """A copy of the memory with every key read again from its write statement (values unchanged):
        keys at another key layer, or token keys at this calibration's token layer (version-1 files)."""
        key_layer = bank.key_layer if key_layer is None else self.lm.check_layer(key_layer)
        new = MemoryBank(bank.model_name, bank.hidden_size, key_layer, bank.context_layer, bank.symbol_layer,
                         bank.value_steps, token_layer=self.calibration.token_layer, disabled=set(bank.disabled))
        if bank.entries:
            prompts = [SlottedPrompt(e.write_text, e.word_span, e.context_span, e.context) for e in bank.entries]
            states = prompt_states(self.lm, new, prompts)
            tokens = [ts.at(new.token_layer) for ts in (states.word_tokens, states.context_tokens)]
            for i, e in enumerate(bank.entries):
                new.add(_with(e, key=states.word_at(key_layer)[i].clone(),
                              symbol_key=states.word_at(new.symbol_layer)[i].clone(),
                              context_key=states.context_at(new.context_layer)[i].clone(),
                              word_tokens=tokens[0][0][i][tokens[0][1][i]].clone(),
                              context_tokens=tokens[1][0][i][tokens[1][1][i]].clone()))
        return new

    # -- demo tools (presets, share) --
    def load_preset(self, bank: MemoryBank, preset, replace: bool = True) -> list[WriteResult]:
        """Write a preset scenario (`fastmem.presets`) into the memory; `replace` empties it first."""
        from .presets import get_preset

        preset = get_preset(preset)
        self.check_memory(bank)
        if replace:
            bank.clear()
        return self.write(bank, list(preset.rows))

    def preset_questions(self, preset) -> list[tuple]:
        """(suggestion, prompt) for each of a preset's suggested questions."""
        from .presets import get_preset

        return [(q, self.question(q.word, q.context)) for q in get_preset(preset).questions]

    def share(self, bank: MemoryBank, view) -> str:
        """A share document (JSON): the memory file plus the view settings (`fastmem.share.ShareView`)."""
        from .share import dump_share

        return dump_share(self.export_memory(bank), self.lm.name, view)

    def open_share(self, data) -> tuple[MemoryBank, object]:
        """(memory, view) from a share document, every part checked against this model; raises
        ShareFileError and changes nothing when anything does not fit."""
        from .share import ShareFileError, memory_bytes, parse_share

        doc = parse_share(data)
        try:
            bank = self.import_memory(memory_bytes(doc))
            check_mode(doc.view.mode)
            if doc.view.alpha is not None:
                check_alpha(doc.view.alpha)
            if doc.view.threshold != "default":
                check_threshold(doc.view.threshold)
        except ShareFileError:
            raise
        except FastmemError as exc:
            raise ShareFileError(f"The share file does not fit this model: {exc}") from None
        return bank, doc.view

def _with(obj, **changes):
    from dataclasses import replace

    return replace(obj, **changes)


__all__ = ["Lab", "AskResult", "WriteResult", "MODES", "DEFAULT_MODE", "clean_field", "explain"]
