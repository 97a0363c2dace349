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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .engine import make_entries
from .lm import FrozenLM, PromptStates
from .loading import cache_dir
from .memory import MemoryBank
from .projector import KeyProjector, ProjectorConfig, train_projector
from .prompts import render, unrelated_prompt
from .retrieval import MODES, KeyGeometry, QueryKeys, retrieve
from .suite import Suite, bindings

ALPHAS = (0.5, 1.0, 2.0, 4.0, 8.0)
THRESHOLDS = (None,) + tuple(round(0.05 * i, 2) for i in range(1, 19))
CALIBRATION_VERSION = 2


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
    return MemoryBank(lm.name, lm.hidden_size, cal.key_layer, cal.context_layer, cal.symbol_layer, cal.value_steps)


@dataclass
class _TrainingStates:
    fit_write: PromptStates
    fit_read: PromptStates
    dev: list  # bindings of dev words
    dev_write: PromptStates
    dev_read: PromptStates
    dev_plain: PromptStates
    dev_plain_words: list[str]
    unrelated: PromptStates  # training unrelated questions
    negatives: PromptStates  # context-free prompts: fit words' plain questions + training unrelated


def _training_states(lm: FrozenLM, suite: Suite, seed: int, progress) -> _TrainingStates:
    words = suite.split("train")
    if len(words) < 8:
        from .errors import SuiteError
        raise SuiteError("Calibration needs at least 8 training words in the suite.")
    order = random.Random(seed).sample(words, len(words))
    n_dev = max(4, len(words) // 4)
    dev_words, fit_words = order[:n_dev], order[n_dev:]
    fit = [b for e in suite.train_experiments for b in bindings(e, fit_words)]
    dev = [b for e in suite.train_experiments for b in bindings(e, dev_words)]
    plain = [render(suite.plain, w.word) for w in fit_words + dev_words]
    unrelated = [unrelated_prompt(q) for q in (suite.train_unrelated or suite.unrelated)]
    prompts = [b.write for b in fit] + [b.read for b in fit] + [b.write for b in dev] + [b.read for b in dev]
    states = lm.states(prompts + plain + unrelated, progress=progress)
    a, b, c, d, e = (len(fit), 2 * len(fit), 2 * len(fit) + len(dev), 2 * len(fit) + 2 * len(dev),
                     2 * len(fit) + 2 * len(dev) + len(fit_words))
    unrelated_states = states.select(slice(d + len(plain), None))
    return _TrainingStates(states.select(slice(0, a)), states.select(slice(a, b)), dev,
                           states.select(slice(b, c)), states.select(slice(c, d)),
                           states.select(slice(e, d + len(plain))), [w.word for w in dev_words],
                           unrelated_states, PromptStates.cat([states.select(slice(d, e)), unrelated_states]))


def _dual_layers(ts: _TrainingStates, baseline: PromptStates, candidates: list[int]) -> tuple[int, int]:
    """Symbol and context layers that best separate dev keys (accuracy, then margin over negatives)."""
    def cos(a, b):
        return torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T
    best, choice = None, (candidates[0], candidates[0])
    n = len(ts.dev)
    for ls in candidates:
        sym_base = baseline.word[:, ls].mean(0)
        s_pos = cos(ts.dev_read.word[:, ls] - sym_base, ts.dev_write.word[:, ls] - sym_base).clamp(min=0)
        s_neg = cos(ts.negatives.word[:, ls] - sym_base, ts.dev_write.word[:, ls] - sym_base).clamp(min=0)
        for lc in candidates:
            ctx_base = baseline.context[:, lc].mean(0)
            c_pos = cos(ts.dev_read.context[:, lc] - ctx_base, ts.dev_write.context[:, lc] - ctx_base).clamp(min=0)
            c_neg = cos(ts.negatives.context[:, lc] - ctx_base, ts.dev_write.context[:, lc] - ctx_base).clamp(min=0)
            pos, neg = s_pos * c_pos, s_neg * c_neg
            acc = (pos.argmax(1) == torch.arange(n)).float().mean().item()
            wrong = pos.masked_fill(torch.eye(n, dtype=torch.bool), -1).max(1).values
            margin = (pos.diagonal() - torch.maximum(wrong, neg.max(0).values)).quantile(0.1).item()
            if best is None or (acc, margin) > best:
                best, choice = (acc, margin), (ls, lc)
    return choice


def _dev_metrics(lm, bank, geometry, ts, mode, alphas, thresholds, unembedding):
    """{(alpha, threshold): (write, read, plain, unrelated)} on the dev part, from cached logits."""
    labels = bank.stacked()["label_id"]
    queries = {"write": (ts.dev_write, [b.context for b in ts.dev]), "read": (ts.dev_read, [b.context for b in ts.dev]),
               "plain": (ts.dev_plain, [None] * len(ts.dev_plain)),
               "unrelated": (ts.unrelated, None)}
    out = {}
    cache = {}
    for name, (states, contexts) in queries.items():
        contexts = contexts or [None] * len(states)
        q = QueryKeys.from_states(states, bank, contexts)
        scores = retrieve(mode, q, bank, geometry, None)
        base = lm.logits(states.final)
        cache[name] = (scores, base, scores.values @ unembedding.T)
    word_labels = {}
    for e in bank.entries:
        word_labels.setdefault(e.word, set()).add(e.label_id)
    all_labels = set(labels.tolist())
    for alpha in alphas:
        for thr in thresholds:
            res = []
            for name in ("write", "read", "plain", "unrelated"):
                got, base, delta = cache[name]
                on = got.chosen >= 0
                if thr is not None:
                    on = on & (got.best >= thr)
                ids = (base + alpha * delta * on.unsqueeze(1)).argmax(-1)
                if name in ("write", "read"):
                    res.append((ids == labels).float().mean().item())
                elif name == "plain":
                    res.append(sum(int(i) in word_labels.get(w, ()) for i, w in zip(ids, ts.dev_plain_words))
                               / max(1, len(ids)))
                else:
                    res.append(sum(int(i) in all_labels for i in ids) / max(1, len(ids)))
            out[(alpha, thr)] = tuple(res)
    return out


def _objective(scores: tuple[float, float, float, float]) -> float:
    write, read, plain, unrelated = scores
    # Read first; context-free and unrelated activations cost much more than a missed read.
    return read + 0.5 * write - 4 * plain - 8 * unrelated


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
    ts = _training_states(lm, suite, seed, progress)
    n = lm.n_layers
    candidates = sorted({max(1, round(n * f)) for f in (0.05, 0.1, 0.15, 0.2, 0.25, 0.33)})
    symbol_layer, context_layer = _dual_layers(ts, ts.negatives, candidates)
    best = None
    for key_layer in sorted({round(n * f) for f in (0.33, 0.5, 0.67)}):
        cfg = ProjectorConfig(lm.hidden_size, key_layer, seed=seed)
        proj = train_projector(ts.fit_write.word[:, key_layer], ts.fit_read.word[:, key_layer],
                               ts.negatives.word[:, key_layer], cfg, show_progress=show_progress)
        with torch.no_grad():
            s = proj(ts.dev_read.word[:, key_layer]) @ proj(ts.dev_write.word[:, key_layer]).T
        acc = (s.argmax(1) == torch.arange(len(ts.dev))).float().mean().item()
        if best is None or acc > best[0]:
            best = (acc, key_layer, proj)
    _, key_layer, projector = best
    geometry = KeyGeometry(projector, ts.negatives.word[:, symbol_layer].mean(0),
                           ts.negatives.context[:, context_layer].mean(0))
    bank = MemoryBank(lm.name, lm.hidden_size, key_layer, context_layer, symbol_layer, value_steps)
    for entry in make_entries(lm, bank, ts.dev_write, [b.word for b in ts.dev], [b.context for b in ts.dev],
                              [b.label for b in ts.dev], [b.write for b in ts.dev]):
        bank.add(entry)
    unembedding = lm.unembedding.detach().float().cpu()
    modes, dev_scores = {}, {}
    for mode in MODES:
        if mode == "none":
            modes[mode] = ModeSettings(0.0, None)
            continue
        table = _dev_metrics(lm, bank, geometry, ts, mode, ALPHAS, THRESHOLDS, unembedding)
        alpha, thr = _choose(table)
        w, r, p, u = table[(alpha, thr)]
        modes[mode] = ModeSettings(alpha, thr)
        dev_scores[mode] = {"write": w, "read": r, "plain": p, "unrelated": u}
    cal = Calibration(lm.name, key_layer, symbol_layer, context_layer, value_steps, seed, modes,
                      projector.identity, dev_scores)
    return cal, geometry


def _cache_folder(lm: FrozenLM, suite: Suite, value_steps: int, seed: int) -> Path:
    train = json.dumps([suite.plain, suite.train_unrelated, [w.model_dump() for w in suite.split("train")],
                        [e.model_dump() for e in suite.train_experiments], value_steps, seed, CALIBRATION_VERSION])
    tag = hashlib.sha256(train.encode()).hexdigest()[:12]
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
            return cal, KeyGeometry(projector, base["symbol"], base["context"])
        except Exception:  # noqa: BLE001 - a damaged cache is simply rebuilt
            pass
    cal, geometry = calibrate(lm, suite, value_steps, seed, progress, show_progress)
    if use_cache:  # write beside, then rename: a concurrent reader never sees half a calibration
        final, folder = folder, folder.with_name(f"{folder.name}.{os.getpid()}.{threading.get_ident()}.partial")
        folder.mkdir(parents=True, exist_ok=True)
        geometry.projector.save(folder / "projector.safetensors")
        save_file({"symbol": geometry.symbol_baseline.contiguous(), "context": geometry.context_baseline.contiguous()},
                  folder / "baselines.safetensors")
        (folder / "calibration.json").write_text(cal.to_json())
        try:
            folder.rename(final)
        except OSError:  # another process finished first: keep theirs
            shutil.rmtree(folder, ignore_errors=True)
    return cal, geometry
