"""Choose layers, train the key projector, and pick alpha and threshold per mode: training words only.

The training words are split into a fit part (projector training) and a dev part (every choice is
scored there). Test words are never seen. The result is cached per model, suite and settings.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import random
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .engine import make_entries
from .errors import SuiteError
from .lm import FrozenLM, PromptStates
from .loading import cache_dir
from .memory import MemoryBank
from .metrics import ProbeSet, Sweep, probe_set
from .probes import lookalikes
from .projector import KeyProjector, ProjectorConfig, train_projector
from .keying import key_question, question_forms
from .prompts import render
from .retrieval import CONTROLS, MODES, KeyGeometry, QueryKeys, score_entries
from .suite import Suite, bindings

ALPHAS = (0.5, 1.0, 2.0, 4.0, 8.0)
# up to 0.95 in steps of 0.05, then finer up to 0.99: slot-free reading compares token embeddings, where the
# same token scores 1 and the closest two tokens of a series (digits) about 0.94 (scripts/series_cosines.py)
THRESHOLDS = (None,) + tuple(round(0.05 * i, 2) for i in range(1, 20)) + (0.96, 0.97, 0.98, 0.99)
CALIBRATION_VERSION = 3


@dataclass(frozen=True)
class ModeSettings:
    alpha: float
    threshold: float | None


@dataclass(frozen=True)
class Calibration:
    model_name: str
    key_layer: int
    symbol_layer: int
    context_layer: int
    value_steps: int
    seed: int
    modes: dict[str, ModeSettings]
    projector_id: str | None
    dev_scores: dict[str, dict[str, float]] = field(default_factory=dict)
    token_layer: int = -1

    def settings(self, mode: str) -> ModeSettings:
        return self.modes.get(mode, ModeSettings(1.0, None))

    def to_json(self) -> str:
        return json.dumps({"version": CALIBRATION_VERSION, **asdict(self)}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "Calibration":
        raw = json.loads(text)
        if raw.pop("version", None) != CALIBRATION_VERSION:
            raise ValueError("old calibration format")
        raw["modes"] = {k: ModeSettings(**v) for k, v in raw["modes"].items()}
        return cls(**raw)


def empty_bank(lm: FrozenLM, cal: Calibration) -> MemoryBank:
    return MemoryBank(lm.name, lm.hidden_size, cal.key_layer, cal.context_layer, cal.symbol_layer, cal.value_steps,
                      token_layer=cal.token_layer)


@dataclass
class _Training:
    """States of every training prompt, from one forward pass; dev probe sets score every choice."""

    fit_write: PromptStates
    fit_read: PromptStates
    negatives: PromptStates  # context-free prompts: fit words' plain questions + training unrelated
    dev: list  # bindings of dev words (their write statements make the dev memory)
    dev_write: PromptStates
    probes: dict[str, ProbeSet]  # dev probe sets by metric
    probe_states: dict[str, PromptStates]


def _training(lm: FrozenLM, suite: Suite, seed: int, token_layers: tuple[int, ...], progress) -> _Training:
    """Training words only: a fit part and a dev part. The dev part's hard negatives are the training
    words' own: never-written training contexts and look-alikes of dev words (never a test word)."""
    words = suite.split("train")
    if len(words) < 8:
        raise SuiteError("Calibration needs at least 8 training words in the suite.")
    order = random.Random(seed).sample(words, len(words))
    n_dev = max(4, len(words) // 4)
    dev_words, fit_words = order[:n_dev], order[n_dev:]
    fit = [b for e in suite.train_experiments for b in bindings(e, fit_words)]
    dev = [b for e in suite.train_experiments for b in bindings(e, dev_words)]
    forms = question_forms(suite)  # keyed as the app keys a typed question
    unrelated = [key_question(q, forms).prompt for q in suite.train_unrelated]  # never the test questions
    looks = lookalikes(lm.tokenizer, [w.word for w in dev_words], seed, avoid=[w.word for w in suite.words])
    contexts = [e.contexts[i % 2] for e in suite.train_experiments for i in range(len(looks))]
    probes = {
        "write": probe_set("write", [b.write for b in dev], [b.label for b in dev]),
        "read": probe_set("read", [b.read for b in dev], [b.label for b in dev]),
        "plain": probe_set("plain", [render(suite.plain, w.word) for w in dev_words], [w.word for w in dev_words]),
        "unrelated": probe_set("unrelated", unrelated),
        "wrong_context": probe_set("wrong_context", [render(e.read, w.word, c) for e in suite.train_experiments
                                                     for w in dev_words for c in suite.train_unseen_contexts],
                                   [w.word for e in suite.train_experiments for w in dev_words
                                    for _ in suite.train_unseen_contexts]),
        "lookalike": probe_set("lookalike", [render(suite.train_experiments[0].read, lk.word, c)
                                             for lk, c in zip(looks, contexts)]),
    }
    plain_fit = [render(suite.plain, w.word) for w in fit_words]
    groups = {"fit_write": [b.write for b in fit], "fit_read": [b.read for b in fit], "plain_fit": plain_fit,
              "dev_write": [b.write for b in dev], **{k: list(p.prompts) for k, p in probes.items()}}
    flat = [p for g in groups.values() for p in g]
    states = lm.states(flat, progress=progress, token_layers=token_layers)
    got, at = {}, 0
    for name, prompts in groups.items():
        got[name], at = states.select(slice(at, at + len(prompts))), at + len(prompts)
    negatives = PromptStates.cat([got["plain_fit"], got["unrelated"]]) if len(unrelated) else got["plain_fit"]
    return _Training(got["fit_write"], got["fit_read"], negatives, dev, got["dev_write"], probes,
                     {k: got[k] for k in probes})


def _dual_layers(ts: _Training, candidates: list[int]) -> tuple[int, int]:
    """Symbol and context layers that best separate dev keys (accuracy, then margin over negatives)."""
    def cos(a, b):
        return torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T
    best, choice = None, (candidates[0], candidates[0])
    read, write, negatives = ts.probe_states["read"], ts.dev_write, ts.negatives
    n = len(ts.dev)
    for ls in candidates:
        sym_base = negatives.word[:, ls].mean(0)
        s_pos = cos(read.word[:, ls] - sym_base, write.word[:, ls] - sym_base).clamp(min=0)
        s_neg = cos(negatives.word[:, ls] - sym_base, write.word[:, ls] - sym_base).clamp(min=0)
        for lc in candidates:
            ctx_base = negatives.context[:, lc].mean(0)
            c_pos = cos(read.context[:, lc] - ctx_base, write.context[:, lc] - ctx_base).clamp(min=0)
            c_neg = cos(negatives.context[:, lc] - ctx_base, write.context[:, lc] - ctx_base).clamp(min=0)
            pos, neg = s_pos * c_pos, s_neg * c_neg
            acc = (pos.argmax(1) == torch.arange(n)).float().mean().item()
            wrong = pos.masked_fill(torch.eye(n, dtype=torch.bool), -1).max(1).values
            margin = (pos.diagonal() - torch.maximum(wrong, neg.max(0).values)).quantile(0.1).item()
            if best is None or (acc, margin) > best:
                best, choice = (acc, margin), (ls, lc)
    return choice


def _token_statistics(ts: _Training, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and spread of every word and context token state of the fit prompts at `layer`."""
    rows = []
    for states in (ts.fit_write, ts.fit_read, ts.negatives):
        for tokens in (states.word_tokens, states.context_tokens):
            x, m = tokens.at(layer)
            rows.append(x[m])
    rows = torch.cat(rows)
    spread = rows.std(0)
    return rows.mean(0), spread.clamp(min=1e-2 * float(spread.median()) + 1e-8)


def embedding_statistics(lm: FrozenLM) -> dict[str, torch.Tensor]:
    """Mean and spread of the vocabulary's token embeddings: slot-free reading standardises its keys with them."""
    table = lm.model.get_input_embeddings().weight.detach().float().cpu()
    spread = table.std(0)
    return {"embed_mean": table.mean(0), "embed_scale": spread.clamp(min=1e-2 * float(spread.median()) + 1e-8)}


def _dev_bank(lm, ts: _Training, key_layer, context_layer, symbol_layer, value_steps, token_layer) -> MemoryBank:
    bank = MemoryBank(lm.name, lm.hidden_size, key_layer, context_layer, symbol_layer, value_steps,
                      token_layer=token_layer)
    for entry in make_entries(lm, bank, ts.dev_write, [b.word for b in ts.dev], [b.context for b in ts.dev],
                              [b.label for b in ts.dev], [b.write for b in ts.dev]):
        bank.add(entry)
    return bank


def _token_layer_separation(ts: _Training, bank: MemoryBank, geometry: KeyGeometry) -> float:
    """How far the dev reads' own scores sit above the best score of any hard negative (10th vs 90th
    percentile): the layer where written and unwritten keys are furthest apart."""
    def best_scores(name):
        q = QueryKeys.from_states(ts.probe_states[name], bank, ts.probes[name].contexts)
        return score_entries("token_match", q, bank, geometry)
    own = best_scores("read").diagonal()
    negative = torch.cat([best_scores(k).max(1).values for k in ("wrong_context", "lookalike", "plain")])
    return float(own.quantile(0.1) - negative.quantile(0.9))


def _dev_metrics(lm, bank, geometry, ts, mode, alphas, thresholds) -> dict:
    """{(alpha, threshold): {metric: rate}} on the dev probe sets, retrieving once per probe set."""
    sweep = Sweep(lm, bank, geometry, mode, [(p, ts.probe_states[k]) for k, p in ts.probes.items()])
    return {(alpha, thr): sweep.rates(alpha, thr) for alpha in alphas for thr in thresholds}


def _objective(rates: dict[str, float]) -> float:
    # Read first; a leak or a false fire costs much more than a missed read.
    return (rates["read"] + 0.5 * rates["write"] - 4 * rates["plain"] - 8 * rates.get("unrelated", 0.0)
            - 4 * rates["wrong_context"] - 4 * rates["lookalike"])


def _choose(table: dict) -> tuple[float, float | None]:
    """Best objective; among ties the middle alpha, then the middle of the threshold plateau, so the
    choice sits away from the edges where test words would start to flip."""
    best = max(_objective(v) for v in table.values())
    ties = [k for k, v in table.items() if _objective(v) >= best - 1e-9]
    alphas = sorted({a for a, _ in ties})
    alpha = alphas[(len(alphas) - 1) // 2]
    numeric = sorted(t for a, t in ties if a == alpha and t is not None)
    return alpha, (numeric[(len(numeric) - 1) // 2] if numeric else None)


def calibrate(lm: FrozenLM, suite: Suite, value_steps: int = 8, seed: int = 0, progress=None,
              show_progress: bool = True) -> tuple[Calibration, KeyGeometry]:
    n = lm.n_layers
    token_candidates = tuple(range(1, max(2, n // 10) + 1))
    ts = _training(lm, suite, seed, token_candidates, progress)
    candidates = sorted({max(1, round(n * f)) for f in (0.05, 0.1, 0.15, 0.2, 0.25, 0.33)})
    symbol_layer, context_layer = _dual_layers(ts, candidates)
    best = None
    for key_layer in sorted({round(n * f) for f in (0.33, 0.5, 0.67)}):
        cfg = ProjectorConfig(lm.hidden_size, key_layer, seed=seed)
        proj = train_projector(ts.fit_write.word[:, key_layer], ts.fit_read.word[:, key_layer],
                               ts.negatives.word[:, key_layer], cfg, show_progress=show_progress)
        read = ts.probe_states["read"]
        with torch.no_grad():
            s = proj(read.word[:, key_layer]) @ proj(ts.dev_write.word[:, key_layer]).T
        acc = (s.argmax(1) == torch.arange(len(ts.dev))).float().mean().item()
        if best is None or acc > best[0]:
            best = (acc, key_layer, proj)
    _, key_layer, projector = best
    chosen = None
    for token_layer in token_candidates:
        mean, scale = _token_statistics(ts, token_layer)
        geometry = KeyGeometry(projector, ts.negatives.word[:, symbol_layer].mean(0),
                               ts.negatives.context[:, context_layer].mean(0), mean, scale)
        bank = _dev_bank(lm, ts, key_layer, context_layer, symbol_layer, value_steps, token_layer)
        separation = _token_layer_separation(ts, bank, geometry)
        if chosen is None or separation > chosen[0]:
            chosen = (separation, token_layer, geometry, bank)
    _, token_layer, geometry, bank = chosen
    geometry = replace(geometry, **embedding_statistics(lm))
    modes, dev_scores = {}, {}
    for mode in MODES:
        if mode == "none":
            modes[mode] = ModeSettings(0.0, None)
            continue
        if mode in CONTROLS:  # a control is never tuned: it runs with the settings of what it controls
            modes[mode] = modes[CONTROLS[mode]]
            continue
        table = _dev_metrics(lm, bank, geometry, ts, mode, ALPHAS, THRESHOLDS)
        alpha, thr = _choose(table)
        modes[mode] = ModeSettings(alpha, thr)
        dev_scores[mode] = table[(alpha, thr)]
    cal = Calibration(lm.name, key_layer, symbol_layer, context_layer, value_steps, seed, modes,
                      projector.identity, dev_scores, token_layer)
    return cal, geometry


def cache_key(lm: FrozenLM, suite: Suite, value_steps: int, seed: int) -> str:
    """Everything calibration reads: the suite's training side (every word's name too: look-alikes avoid
    them; test labels are never read, so suites that differ only there share a calibration),
    the settings, and the code that computes it (any change to it recalibrates)."""
    code = b"".join(resources.files("fastmem").joinpath(f).read_bytes() for f in _CALIBRATION_CODE)
    train = json.dumps([lm.name, lm.n_layers, lm.hidden_size, suite.plain, suite.train_unrelated,
                        suite.train_unseen_contexts, [w.model_dump() for w in suite.split("train")],
                        [w.word for w in suite.words],
                        [e.model_dump() for e in suite.train_experiments], value_steps, seed, CALIBRATION_VERSION,
                        hashlib.sha256(code).hexdigest()])
    return hashlib.sha256(train.encode()).hexdigest()[:12]


_CALIBRATION_CODE = ("calibrate.py", "probes.py", "projector.py", "retrieval.py", "values.py", "engine.py",
                     "lm.py", "metrics.py", "keying.py", "readout.py", "decode.py", "codebook.py", "spans.py",
                     "prompts.py")


def _cache_folder(lm: FrozenLM, suite: Suite, value_steps: int, seed: int) -> Path:
    tag = cache_key(lm, suite, value_steps, seed)
    slug = "".join(ch if ch.isalnum() else "-" for ch in lm.name)[-60:]
    return cache_dir() / "calibration" / f"{slug}-{tag}"


def load_or_calibrate(lm: FrozenLM, suite: Suite, value_steps: int = 8, seed: int = 0, progress=None,
                      use_cache: bool = True, show_progress: bool = True) -> tuple[Calibration, KeyGeometry]:
    folder = _cache_folder(lm, suite, value_steps, seed)
    if use_cache and (folder / "calibration.json").is_file():
        try:
            cal = Calibration.from_json((folder / "calibration.json").read_text())
            projector = KeyProjector.load(folder / "projector.safetensors")
            base = load_file(folder / "baselines.safetensors")
            return cal, KeyGeometry(projector, base["symbol"], base["context"], base["token_mean"],
                                    base["token_scale"], base["embed_mean"], base["embed_scale"])
        except Exception:  # noqa: BLE001 - a damaged cache is simply rebuilt
            pass
    cal, geometry = calibrate(lm, suite, value_steps, seed, progress, show_progress)
    if use_cache:  # write beside, then rename: a concurrent reader never sees half a calibration
        final, folder = folder, folder.with_name(f"{folder.name}.{os.getpid()}.{threading.get_ident()}.partial")
        folder.mkdir(parents=True, exist_ok=True)
        geometry.projector.save(folder / "projector.safetensors")
        save_file({"symbol": geometry.symbol_baseline.contiguous(), "context": geometry.context_baseline.contiguous(),
                   "token_mean": geometry.token_mean.contiguous(), "token_scale": geometry.token_scale.contiguous(),
                   "embed_mean": geometry.embed_mean.contiguous(), "embed_scale": geometry.embed_scale.contiguous()},
                  folder / "baselines.safetensors")
        (folder / "calibration.json").write_text(cal.to_json())
        try:
            folder.rename(final)
        except OSError:  # another process finished first: keep theirs
            shutil.rmtree(folder, ignore_errors=True)
    return cal, geometry
