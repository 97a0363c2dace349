"""The high-level API the app and notebooks use: one shared model, one memory per user.

`Lab` holds the frozen model, its calibration and key geometry (read-only, shared by all sessions). Every call
takes the user's `MemoryBank` explicitly and never keeps it, so sessions stay apart. The Lab writes, asks and
moves memories in and out of files; `lab.demo` holds the app's demo tools (presets, share documents, the
pictures behind an answer) and `lab.runs` the measurement runs (benchmark, capacity, baselines, experiments).
"""
from __future__ import annotations

from dataclasses import replace

import torch

from fastmem.memory.explain import explain, found_entries
from fastmem.errors import BindingError, FastmemError, LabelError, MemoryFileError, SettingsError
from fastmem.eval.calibrate import Calibration, empty_bank
from fastmem.eval.calibration_cache import load_or_calibrate
from fastmem.eval.suite import Suite, load_suite
from fastmem.fields import (MAX_CONTEXT, MAX_FORM_TOKENS, MAX_LABEL, MAX_QUESTION, MAX_TEXT_TOKENS, MAX_WORD,
                            check_count, check_steps, check_tokens, clean_field, clean_form, clean_question,
                            stored_text)
from fastmem.memory import file as memory_file
from fastmem.memory.bank import DENSE_KEYS, TOKEN_KEYS, MemoryBank
from fastmem.memory.engine import answer, check_alpha, ensure_keys, prompt_states, write_entries
from fastmem.memory.forms import READ_TEMPLATE, WRITE_TEMPLATE, write_forms
from fastmem.memory.keying import KeyedQuestion, key_question
from fastmem.memory.modes import DEFAULT_MODE, MODES, Mode, get_mode, mode_names
from fastmem.memory.prompts import SlottedPrompt, render, statement_prompt, template_fields
from fastmem.memory.readout import answers, decoded
from fastmem.memory.retrieval import KeyGeometry, check_threshold
from fastmem.model.decode import next_tokens
from fastmem.model.lm import FrozenLM
from fastmem.records import AskResult, WriteResult


class Lab:
    def __init__(self, lm: FrozenLM, calibration: Calibration, geometry: KeyGeometry, suite: Suite | None = None):
        from fastmem.demo.tools import DemoTools
        from fastmem.eval.runs import Runs

        self.lm, self.calibration, self.geometry = lm, calibration, geometry
        self.suite = suite or load_suite()
        self.question_forms = self.suite.question_forms()
        self.write_forms = write_forms([e.write for e in self.suite.experiments])
        self.demo, self.runs = DemoTools(self), Runs(self)

    @classmethod
    def load(cls, model: str = "smollm2", device: str = "auto", suite: Suite | None = None, value_steps: int = 8,
             seed: int = 0, progress=None, show_progress: bool = False, dtype: str = "auto") -> "Lab":
        """The model (`dtype`: float32, bfloat16, or auto: bfloat16 on a GPU, float32 on a CPU), its
        calibration (cached per model, weights' type and suite) and the suite."""
        lm = FrozenLM.load(model, device, dtype)
        suite = suite or load_suite()
        cal, geometry = load_or_calibrate(lm, suite, value_steps, seed, progress, show_progress=show_progress)
        return cls(lm, cal, geometry, suite)

    @staticmethod
    def modes(answering: bool = False) -> list[Mode]:
        """The registered modes (each with its name and a one-line summary); with `answering`, the baselines
        that answer without retrieval too."""
        return [get_mode(name) for name in mode_names(answering)]

    # -- memories -----------------------------------------------------------------------------
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
        """The memory as a file (`memory.file`: values and what was written, with a digest) that
        `import_memory` reads back exactly; one version of the memory, even while another thread writes. A
        memory of another model exports too (to keep it)."""
        if not isinstance(bank, MemoryBank):
            raise SettingsError(f"Expected a MemoryBank, not {type(bank).__name__}.")
        return memory_file.to_bytes(bank)

    def import_memory(self, data: bytes) -> MemoryBank:
        """A new memory from a file; raises MemoryFileError (and changes nothing) unless it fits this model."""
        return self.open_memory(data)[0]

    def open_memory(self, data: bytes) -> tuple[MemoryBank, list[str]]:
        """(memory, notes for the user) from a file, every field checked against this model. Keys are not read
        at import: they are read again from the statements when a mode first needs them."""
        bank, notes = memory_file.from_bytes(data, expect_hidden_size=self.lm.hidden_size)
        try:
            self.check_memory(bank)
            vocab = int(self.lm.unembedding.shape[0])
            for e in bank.entries:
                if any(not 0 <= i < vocab for i in e.label_ids):
                    raise MemoryFileError(f"The entry {e.word!r} in {e.context!r} stores label ids "
                                          f"{list(e.label_ids)}, outside this model's vocabulary ({vocab} tokens).")
                if self._label_ids(e.label) != e.label_ids:
                    raise MemoryFileError(f"The entry {e.word!r} in {e.context!r} stores label {e.label!r} with token "
                                          f"ids {list(e.label_ids)}, which are not that label's tokens for this model.")
                prompt = SlottedPrompt(e.write_text, e.word_span, e.context_span, e.context)
                check_tokens(f"statement of {e.word!r} in {e.context!r}", self.lm.token_count(prompt),
                             MAX_TEXT_TOKENS)  # as on write: re-keying reads it
        except (SettingsError, BindingError) as exc:
            raise MemoryFileError(str(exc)) from None
        return self._with_layers(bank, self.calibration.key_layer), notes

    def _with_layers(self, bank: MemoryBank, key_layer: int) -> MemoryBank:
        """The memory at this calibration's layers (and `key_layer`), keeping the keys already at them."""
        cal = self.calibration
        layers = {"key_layer": key_layer, "context_layer": cal.context_layer, "symbol_layer": cal.symbol_layer,
                  "token_layer": cal.token_layer}
        keep = {"key": bank.key_layer == key_layer, "context_key": bank.context_layer == cal.context_layer,
                "symbol_key": bank.symbol_layer == cal.symbol_layer}
        keep.update(dict.fromkeys(TOKEN_KEYS, bank.token_layer == cal.token_layer))
        entries = [replace(e, **{f: None for f in DENSE_KEYS + TOKEN_KEYS if not keep[f]}) for e in bank.entries]
        return MemoryBank(bank.model_name, bank.hidden_size, layers["key_layer"], layers["context_layer"],
                          layers["symbol_layer"], bank.value_steps, entries, layers["token_layer"], bank.disabled)

    def rekey(self, bank: MemoryBank, key_layer: int | None = None, progress=None) -> MemoryBank:
        """A copy of the memory with its word keys at another key layer (values unchanged), read again from
        the write statements."""
        self.check_memory(bank)
        key_layer = bank.key_layer if key_layer is None else self.lm.check_layer(key_layer)
        new = self._with_layers(bank.snapshot(), key_layer)
        ensure_keys(self.lm, new, DENSE_KEYS, progress)  # `new` is this call's own: it adopts its keys
        return new

    def keyed_at(self, bank: MemoryBank, key_layer: int) -> MemoryBank:
        """The memory with its word keys at `key_layer`: itself at its own layer, else a re-keyed copy (`rekey`)
        kept with this version of the memory, so it is read again only after a change; a switch on or off
        carries over to the copy."""
        key_layer = self.lm.check_layer(key_layer)
        if key_layer == bank.key_layer:
            return bank
        snap = bank.snapshot()  # built from the version it is kept with, whatever another thread changes
        rekeyed = snap.cached(f"rekeyed:{self.lm.name}:{key_layer}", lambda _: self.rekey(snap, key_layer))
        if rekeyed.disabled != snap.disabled:
            for i, entry in enumerate(rekeyed.entries):
                rekeyed.set_enabled(i, entry.slot not in snap.disabled)
        return rekeyed

    # -- writing ------------------------------------------------------------------------------
    def write(self, bank: MemoryBank, rows, template: str = WRITE_TEMPLATE, on_duplicate: str = "replace",
              progress=None, value_steps: int | None = None) -> list[WriteResult]:
        """Write (word, context, label) rows; a bad row gets an error and the others are still written.
        `value_steps` (1 = the post's one-step value) overrides the memory's refinement steps for these rows."""
        self.check_memory(bank)
        value_steps = check_steps(value_steps)
        if rows is None or isinstance(rows, str | bytes | dict) or not hasattr(rows, "__iter__"):
            raise BindingError("Rows must be a list of (word, context, label) rows.")
        template = self._form(template)
        _check_duplicate_rule(on_duplicate)
        results: list[WriteResult | None] = []
        good = []
        for row in list(rows):
            ok_row = isinstance(row, tuple | list) and len(row) == 3
            word, context, label = row if ok_row else (None, None, None)
            try:
                if not ok_row:
                    raise BindingError(f"A row must be (word, context, label), not {str(row)[:60]!r}.")
                w, c, lab = self._fields(word, context, label)
                prompt = self._statement(render(template, w, c))
                good.append((len(results), w, c, lab, prompt))
                results.append(None)
            except FastmemError as exc:
                results.append(WriteResult(str(word), str(context), str(label), "error", str(exc)))
        return self._commit(bank, results, good, on_duplicate, progress, value_steps)

    def preview_statement(self, template: str, word: str, context: str, label: str) -> str:
        """The statement `write` makes of one row with this form (checks the form as `write` does)."""
        template = self._form(template)
        return f"{render(template, word, context).text} {label.strip()}"

    def write_statement(self, bank: MemoryBank, statement: str, word: str, context: str, label: str,
                        on_duplicate: str = "replace", value_steps: int | None = None) -> WriteResult:
        """Write one free statement with its word, context and label marked by the user, e.g.
        `According to Mia, dax means a glass of milk` with word `dax`, context `Mia`, label `a glass of
        milk`. The word and context must come before the label. A bad statement gets status 'error'."""
        self.check_memory(bank)
        value_steps = check_steps(value_steps)
        _check_duplicate_rule(on_duplicate)
        try:
            text = clean_field("statement", statement, MAX_QUESTION)
            w, c, lab = self._fields(word, context, label)
            prompt = self._statement(statement_prompt(text, w, c, lab))
        except FastmemError as exc:
            return WriteResult(str(word), str(context), str(label), "error", str(exc))
        return self._commit(bank, [None], [(0, w, c, lab, prompt)], on_duplicate, None, value_steps)[0]

    def _form(self, template) -> str:
        """A write form held to what its statements must pass on import (`_statement`), checked once per call."""
        template = clean_form(template)
        if "context" not in template_fields(template):
            raise BindingError(f"The write template {template!r} needs a {{context}} slot.")
        check_tokens("write form", len(self.lm.tokenizer(template, add_special_tokens=False)["input_ids"]),
                     MAX_FORM_TOKENS)
        return template

    def _statement(self, prompt: SlottedPrompt) -> SlottedPrompt:
        """A write statement as import reads it back (`fields.stored_text`), of at most MAX_TEXT_TOKENS tokens."""
        stored_text("statement", prompt.text, MAX_QUESTION)
        check_tokens("statement", self.lm.token_count(prompt), MAX_TEXT_TOKENS)
        self.lm.encode(prompt)
        return prompt

    def _fields(self, word, context, label) -> tuple[str, str, str]:
        w, c = clean_field("word", word, MAX_WORD), clean_field("context", context, MAX_CONTEXT)
        lab = clean_field("label", label, MAX_LABEL)
        self._label_ids(lab)
        return w, c, lab

    def _commit(self, bank: MemoryBank, results: list, good: list, on_duplicate: str, progress,
                value_steps: int | None = None) -> list[WriteResult]:
        """Encode the checked rows `good` ((result index, word, context, label, prompt)) in one batch and add
        them as one change; `results` holds the rows already refused (None where a row of `good` goes)."""
        last = {(w, c): i for i, w, c, _, _ in good}  # the same slot twice in one batch: the last row wins
        batch = [g for g in good if last[(g[1], g[2])] == g[0]]
        for i, w, c, lab, _ in good:
            if last[(w, c)] != i:
                results[i] = WriteResult(w, c, lab, "error", f"'{w}' in '{c}' appears again later in this batch; "
                                                             "that row is used.")
        if batch:
            statuses = write_entries(self.lm, bank, [g[4] for g in batch], [g[1] for g in batch],
                                     [g[2] for g in batch], [g[3] for g in batch], value_steps, on_duplicate,
                                     progress=progress)
            for (i, w, c, lab, _), status in zip(batch, statuses):
                results[i] = WriteResult(w, c, lab, status)
        return results  # type: ignore[return-value]

    def _label_ids(self, label: str) -> tuple[int, ...]:
        """The label's token ids; the unknown token and special tokens are not labels."""
        ids = self.lm.label_tokens(label)
        tok = self.lm.tokenizer
        bad = [i for i in ids if i == tok.unk_token_id or i in set(tok.all_special_ids)]
        if bad:
            raise LabelError(f"The label {label!r} is not in this model's vocabulary (it reads as "
                             f"{tok.convert_ids_to_tokens(bad)[0]!r}).")
        return ids

    # -- asking -------------------------------------------------------------------------------
    def question(self, word: str, context: str | None = None) -> SlottedPrompt:
        word = clean_field("word", word, MAX_WORD)
        if context is None or not str(context).strip():
            return render(self.suite.plain, word)
        return render(READ_TEMPLATE, word, clean_field("context", context, MAX_CONTEXT))

    def parse_question(self, text: str, word: str | None = None, context: str | None = None) -> SlottedPrompt:
        """Slots of a typed question (`key_question`)."""
        return self.key_question(text, word, context).prompt

    def key_question(self, text: str, word: str | None = None, context: str | None = None) -> KeyedQuestion:
        """Slots of a typed question by the one keying rule (`memory.keying`): the user's marks, else a known
        question form, else the last word before '?'; the result says which rule applied. Slot-free reading
        (the default mode) searches the whole question and uses only marks."""
        text = clean_question(text, MAX_QUESTION)
        for name, value in (("word", word), ("context", context)):
            if value is not None and not isinstance(value, str):
                raise BindingError(f"The marked {name} must be text, not {type(value).__name__}.")
        word = clean_field("marked word", word, MAX_WORD) if word and word.strip() else None
        context = clean_field("marked context", context, MAX_CONTEXT) if context and context.strip() else None
        return key_question(text, self.question_forms, word, context)

    def ask(self, bank: MemoryBank, prompt: SlottedPrompt | str, mode: str = DEFAULT_MODE, alpha: float | None = None,
            threshold: float | None = "default", max_new_tokens: int = 0, point: str | None = None) -> AskResult:
        """Answer one question with and without memory, with everything needed to explain it. Alpha and the
        threshold default to the mode's calibrated settings at `point` (default: the mode's own)."""
        self.check_memory(bank)
        if isinstance(prompt, str):  # typed as a person would: keyed by the one keying rule
            prompt = self.key_question(prompt).prompt
        if not isinstance(prompt, SlottedPrompt):
            raise BindingError(f"Ask with a typed question or one from key_question, not {type(prompt).__name__}.")
        mode = get_mode(mode)
        defaults = self.calibration.settings(mode.name, point)
        alpha = check_alpha(defaults.alpha if alpha is None else alpha)
        threshold = defaults.threshold if isinstance(threshold, str) and threshold == "default" \
            else check_threshold(threshold)
        check_count(max_new_tokens, 0)
        if mode.needs_projector and bank.key_layer != self.calibration.key_layer:
            raise SettingsError(f"Mode {mode.name} uses the projector trained at layer {self.calibration.key_layer}; "
                                f"this memory's keys are at layer {bank.key_layer}. Use raw_both_top1 or dual_key.")
        check_tokens("question", self.lm.token_count(prompt), MAX_TEXT_TOKENS)  # + at most 32 continued
        encoded = self.lm.encode(prompt)
        # one version of the memory throughout, whatever another thread writes; a memory from a file gets its
        # keys read again from that version's statements
        bank = ensure_keys(self.lm, bank, mode.keys)
        got = answer(self.lm, bank, self.geometry, prompt_states(self.lm, bank, [prompt]), [prompt.context], mode,
                     alpha, threshold)
        r = got.retrieved
        chosen, source = int(r.chosen[0]), int(r.injected[0])  # `source`: whose values (the shuffled control)
        found = found_entries(bank, prompt.text, encoded.offsets, r.spans.select(0), chosen) \
            if r.spans is not None else None
        reason = explain(bank, prompt, mode, r.scores[0], chosen, threshold, found)
        values = bank.entries[source].values if source >= 0 else torch.zeros(1, bank.hidden_size)
        # as many tokens as the injected label, each with its own correction; the plain answer as long
        said = answers(self.lm, bank, [encoded.ids], got.ids, got.base_ids, r.injected, alpha)
        mem, base = decoded(said.ids[0]), decoded(said.base_ids[0])
        decode = self.lm.tokenizer.decode
        result = AskResult(prompt, encoded, mode.name, alpha, threshold, r.scores[0], chosen, float(r.best[0]),
                           reason, got.base_logits[0], got.logits[0], r.values[0], decode(base), decode(mem),
                           values=values, answer_ids=tuple(mem), base_answer_ids=tuple(base), injected=source,
                           found=found, point=point or "",
                           chosen_slot=bank.entries[chosen].slot if chosen >= 0 else None)
        return self.continue_answer(result, max_new_tokens) if max_new_tokens > 0 else result

    def continue_answer(self, result: AskResult, max_new_tokens: int = 4) -> AskResult:
        """The answer with greedy continuations (at most 32 tokens) without and with memory, decoded as
        one batch. Separate from `ask` so an app can show the answer first and the continuations after."""
        check_count(max_new_tokens, 1)
        firsts = [int(next_tokens(result.base_logits)), int(next_tokens(result.logits))]
        steps = min(int(max_new_tokens), 32) - 1
        tail = torch.zeros(2, steps, self.lm.hidden_size)
        if result.values is not None and steps > 0:  # the memory row gets its label's later corrections
            later = result.values[1:1 + steps]
            tail[1, :len(later)] = later
        # the injected label ends its word (decode.greedy): `values` holds one correction per label token
        ends = [-1, len(result.values) - 1] if result.injected >= 0 and result.values is not None else None
        base, new = self.lm.continuations(result.encoded.ids, firsts, steps + 1, tail, result.alpha, ends)
        return replace(result, base_generation=self.lm.tokenizer.decode(base),
                       generation=self.lm.tokenizer.decode(new))


def _check_duplicate_rule(on_duplicate: str) -> None:
    if on_duplicate not in ("replace", "keep"):
        raise SettingsError("on_duplicate must be 'replace' or 'keep'.")


__all__ = ["Lab", "AskResult", "WriteResult", "MODES", "DEFAULT_MODE", "clean_field"]
