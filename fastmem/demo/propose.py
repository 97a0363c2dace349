"""A first guess at the word, the context and the label of a statement typed in any form, for the user to correct.

`Over in level 3, people use zorp to mean a cold drink` -> word `zorp`, context `level 3`, label `a cold drink`:
- the word is the one the model finds most surprising (the sum of its tokens' surprisal, -log p, given what
  comes before): an invented word is rare and splits into pieces the model does not expect;
- the label is what follows the last "meaning" phrase after the word (`means`, `to mean`, `stands for`, `is`, ...);
- the context is the phrase after a preposition (`in`, `on`, `at`, `for`, `among`, `according to`, ...) outside
  the word and the label, up to the next comma or clause.

Only a proposal: the Memory page shows it in editable fields, and writing uses what the user confirms.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

MEANING = (r"is defined as|is a word for|is used to mean|is used for|stands for|refers to|translates to|"
           r"to mean|means|meant|mean|denotes|signifies|is called|is|are|was|=|:")
PREPOSITION = r"according to|in|on|at|for|among|within|inside|during|from|with|by"
_WORD = re.compile(r"[^\W_][\w'-]*", re.UNICODE)


@dataclass(frozen=True)
class Proposal:
    word: str | None
    context: str | None
    label: str | None
    surprisal: tuple[tuple[str, float], ...]  # every word of the statement with its surprisal (nats), in order


@torch.inference_mode()
def word_surprisal(lm, text: str) -> list[tuple[str, int, float]]:
    """(word, character start, surprisal) of every word: the sum of -log p of its tokens given the text before
    (the first token after the tokenizer's start token, or a newline where it has none)."""
    tok = lm.tokenizer
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = [start] + list(enc["input_ids"])
    logits = lm.model(input_ids=torch.tensor([ids], device=lm.device)).logits[0].float().cpu()
    logp = logits.log_softmax(-1)
    token_cost = [-float(logp[i, ids[i + 1]]) for i in range(len(ids) - 1)]
    out = []
    for m in _WORD.finditer(text):
        cost = sum(c for c, (s, e) in zip(token_cost, enc["offset_mapping"]) if e > m.start() and s < m.end())
        out.append((m.group(), m.start(), cost))
    return out


def propose(lm, statement: str) -> Proposal:
    """The model's guess at the statement's invented word, its context and its label."""
    text = statement.strip()
    words = word_surprisal(lm, text) if text else []
    if not words:
        return Proposal(None, None, None, ())
    content = [w for w in words if not re.fullmatch(rf"(?:{PREPOSITION}|{MEANING}|the|a|an)", w[0], re.IGNORECASE)]
    cues = list(re.finditer(rf"(?<!\w)(?:{MEANING})(?!\w)", text, re.IGNORECASE))
    before = [w for w in content if cues and w[1] < cues[-1].start()]  # the word comes before what it means
    word, at, _ = max(before or content or words, key=lambda w: w[2])
    after = text[at + len(word):]
    label = None
    cues = list(re.finditer(rf"(?<!\w)(?:{MEANING})(?!\w)", after, re.IGNORECASE))
    label_at = len(text)
    if cues:
        cue = cues[0] if after[:cues[0].start()].strip(" ,") == "" else cues[-1]
        label = after[cue.end():].strip(" .,!;:\"'") or None
        label_at = at + len(word) + cue.start()
    context = _context(text[:label_at], at, len(word))
    return Proposal(word, context, label, tuple((w, round(c, 2)) for w, _, c in words))


def _context(text: str, word_at: int, word_len: int) -> str | None:
    """The phrase after the first preposition outside the word, up to a comma, the word or a clause's end."""
    for m in re.finditer(rf"(?<!\w)(?:{PREPOSITION})\s+", text, re.IGNORECASE):
        if word_at <= m.start() < word_at + word_len:
            continue
        rest = text[m.end():]
        stop = len(rest)
        for pattern in (r"[,;.!?]", r"\s(?:people|we|they|you|i|the word|it|he|she)\s"):
            hit = re.search(pattern, rest, re.IGNORECASE)
            if hit:
                stop = min(stop, hit.start())
        if m.end() <= word_at:  # stop before the word
            stop = min(stop, word_at - m.end())
        phrase = rest[:stop].strip()
        if phrase and phrase.lower() not in ("the", "a", "an"):
            return phrase
    return None
