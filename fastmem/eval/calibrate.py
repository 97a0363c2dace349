"""Choose layers, train the key projector, and pick alpha and threshold per mode: training words only.

The training words are split into a fit part (projector training) and a dev part (every choice is
scored there). Test words are never seen. The result is cached (calibration_cache.py).
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field, replace

import torch

from fastmem.memory.engine import write_entries
from fastmem.errors import SettingsError, SuiteError
from fastmem.model.lm import FrozenLM, PromptStates
from fastmem.memory.bank import MemoryBank
from fastmem.eval.metrics import ProbeSet, Sweep, probe_set
from fastmem.eval.probes import lookalikes
from fastmem.memory.projector import ProjectorConfig, train_projector
from fastmem.memory.keying import key_question
from fastmem.memory.prompts import render
from fastmem.memory.modes import MODES, Query, get_mode
from fastmem.memory.retrieval import KeyGeometry, QueryKeys
from fastmem.eval.suite import Suite, bindings

ALPHAS = (0.5, 1.0, 2.0, 4.0, 8.0)
# up to 0.95 in steps of 0.05, then finer up to 0.99: slot-free reading compares token embeddings, where the
# same token scores 1 and the closest two tokens of a series (digits) about 0.94 (scripts/series_cosines.py)
THRESHOLDS = (None,) + tuple(round(0.05 * i, 2) for i in range(1, 20)) + (0.96, 0.97, 0.98, 0.99)
CALIBRATION_VERSION = 5  # bump on purpose when what calibration decides changes (calibration_reference.py)

# Operating points: each mode's alpha and threshold chosen on training words by one of two objectives.
# - post: the reference post's protocol, which measured only Write, Read, Plain and Unrelated;
# - selective: also never-written contexts and look-alike words (hard negatives), as a selective memory must.
POST, SELECTIVE = "post", "selective"
OPERATING_POINTS = (POST, SELECTIVE)


def default_point(mode) -> str:
    """The operating point a mode runs at unless asked otherwise: the post's own modes at `post`, the rest at
    `selective`."""
    return POST if get_mode(mode).post_protocol else SELECTIVE


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
    points: dict[str, dict[str, ModeSettings]]  # operating point -> mode -> settings
    projector_id: str | None
    dev_scores: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # point -> mode -> rates
    token_layer: int = -1

    def settings(self, mode: str, point: str | None = None) -> ModeSettings:
        """A mode's alpha and threshold at an operating point (default: the mode's own, `default_point`)."""
        point = point or default_point(mode)
        if point not in OPERATING_POINTS:
            raise SettingsError(f"Unknown operating point {point!r}: choose {' or '.join(OPERATING_POINTS)}.")
        return self.points.get(point, {}).get(mode, ModeSettings(1.0, None))

    @property
    def modes(self) -> dict[str, ModeSettings]:
        """Every mode's settings at its default operating point."""
        return {m: self.settings(m) for m in self.points.get(SELECTIVE, {})}

    def to_json(self) -> str:
        return json.dumps({"version": CALIBRATION_VERSION, **asdict(self)}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> "Calibration":
        raw = json.loads(text)
        if raw.pop("version", None) != CALIBRATION_VERSION:
            raise ValueError("old calibration format")
        raw["points"] = {p: {k: ModeSettings(**v) for k, v in modes.items()} for p, modes in raw["points"].items()}
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


@dataclass(frozen=True)
class TrainingPlan:
    """Every prompt calibration runs, by group, and the dev probe sets (what the cache key is made of)."""

    groups: dict[str, list]  # name -> prompts
    probes: dict[str, ProbeSet]
    dev: list  # bindings of the dev words


def training_plan(lm: FrozenLM, suite: Suite, seed: int) -> TrainingPlan:
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
    forms = suite.question_forms()  # keyed as the app keys a typed question
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
    return TrainingPlan(groups, probes, dev)


def _training(lm: FrozenLM, suite: Suite, seed: int, token_layers: tuple[int, ...], progress) -> _Training:
    """The plan's prompts run in one forward pass."""
    plan = training_plan(lm, suite, seed)
    groups, probes, dev = plan.groups, plan.probes, plan.dev
    flat = [p for g in groups.values() for p in g]
    states = lm.states(flat, progress=progress, token_layers=token_layers)
    got, at = {}, 0
    for name, prompts in groups.items():
        got[name], at = states.select(slice(at, at + len(prompts))), at + len(prompts)
    negatives = PromptStates.cat([got["plain_fit"], got["unrelated"]]) if len(probes["unrelated"]) \
        else got["plain_fit"]
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
        sym_base = negatives.word_at(ls).mean(0)
        s_pos = cos(read.word_at(ls) - sym_base, write.word_at(ls) - sym_base).clamp(min=0)
        s_neg = cos(negatives.word_at(ls) - sym_base, write.word_at(ls) - sym_base).clamp(min=0)
        for lc in candidates:
            ctx_base = negatives.context_at(lc).mean(0)
            c_pos = cos(read.context_at(lc) - ctx_base, write.context_at(lc) - ctx_base).clamp(min=0)
            c_neg = cos(negatives.context_at(lc) - ctx_base, write.context_at(lc) - ctx_base).clamp(min=0)
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
    write_entries(lm, bank, [b.write for b in ts.dev], [b.word for b in ts.dev], [b.context for b in ts.dev],
                  [b.label for b in ts.dev], states=ts.dev_write)
    return bank


def _token_layer_separation(ts: _Training, bank: MemoryBank, geometry: KeyGeometry) -> float:
    """How far the dev reads' own scores sit above the best score of any hard negative (10th vs 90th
    percentile): the layer where written and unwritten keys are furthest apart."""
    def best_scores(name):
        q = QueryKeys.from_states(ts.probe_states[name], bank, ts.probes[name].contexts)
        return get_mode("token_match").score(Query(q, bank, geometry)).scores
    own = best_scores("read").diagonal()
    negative = torch.cat([best_scores(k).max(1).values for k in ("wrong_context", "lookalike", "plain")])
    return float(own.quantile(0.1) - negative.quantile(0.9))


def _dev_metrics(lm, bank, geometry, ts, mode, alphas, thresholds) -> dict:
    """{(alpha, threshold): {metric: rate}} on the dev probe sets, retrieving once per probe set."""
    sweep = Sweep(lm, bank, geometry, mode, [(p, ts.probe_states[k]) for k, p in ts.probes.items()])
    return {(alpha, thr): sweep.rates(alpha, thr) for alpha in alphas for thr in thresholds}


def objective(rates: dict[str, float], point: str) -> float:
    """Read first; a leak or a false fire costs much more than a missed read. The post's point counts what the
    post measured; the selective point also the hard negatives."""
    score = rates["read"] + 0.5 * rates["write"] - 4 * rates["plain"] - 8 * rates.get("unrelated", 0.0)
    if point == SELECTIVE:
        score -= 4 * rates["wrong_context"] + 4 * rates["lookalike"]
    return score


def _choose(table: dict, point: str) -> tuple[float, float | None]:
    """Best objective; among ties the middle alpha, then the middle of the threshold plateau, so the
    choice sits away from the edges where test words would start to flip."""
    best = max(objective(v, point) for v in table.values())
    ties = [k for k, v in table.items() if objective(v, point) >= best - 1e-9]
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
        proj = train_projector(ts.fit_write.word_at(key_layer), ts.fit_read.word_at(key_layer),
                               ts.negatives.word_at(key_layer), cfg, show_progress=show_progress)
        read = ts.probe_states["read"]
        with torch.no_grad():
            s = proj(read.word_at(key_layer)) @ proj(ts.dev_write.word_at(key_layer)).T
        acc = (s.argmax(1) == torch.arange(len(ts.dev))).float().mean().item()
        if best is None or acc > best[0]:
            best = (acc, key_layer, proj)
    _, key_layer, projector = best
    chosen = None
    for token_layer in token_candidates:
        mean, scale = _token_statistics(ts, token_layer)
        geometry = KeyGeometry(projector, ts.negatives.word_at(symbol_layer).mean(0),
                               ts.negatives.context_at(context_layer).mean(0), mean, scale)
        bank = _dev_bank(lm, ts, key_layer, context_layer, symbol_layer, value_steps, token_layer)
        separation = _token_layer_separation(ts, bank, geometry)
        if chosen is None or separation > chosen[0]:
            chosen = (separation, token_layer, geometry, bank)
    _, token_layer, geometry, bank = chosen
    geometry = replace(geometry, **embedding_statistics(lm))
    points = {p: {} for p in OPERATING_POINTS}
    dev_scores = {p: {} for p in OPERATING_POINTS}
    for mode in (get_mode(name) for name in MODES):
        tuned = mode.retrieves and mode.controls is None
        table = _dev_metrics(lm, bank, geometry, ts, mode.name, ALPHAS, THRESHOLDS) if tuned else None
        for point in OPERATING_POINTS:
            if not mode.retrieves:
                points[point][mode.name] = ModeSettings(0.0, None)
            elif mode.controls:  # a control is never tuned: it runs with the settings of what it controls
                points[point][mode.name] = points[point][mode.controls]
            else:
                alpha, thr = _choose(table, point)
                points[point][mode.name] = ModeSettings(alpha, thr)
                dev_scores[point][mode.name] = table[(alpha, thr)]
    cal = Calibration(lm.name, key_layer, symbol_layer, context_layer, value_steps, seed, points,
                      projector.identity, dev_scores, token_layer)
    return cal, geometry
