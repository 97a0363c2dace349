"""Questions as people type them, on the real offline model: forms built at random that no code has seen, the
model's own chat turn, siblings and look-alikes, and the statement proposal."""
import random

import pytest

from fastmem.eval.typed import chat_turn

pytestmark = pytest.mark.integration

OPENERS = ["", "Hey, ", "Quick question: ", "So ", "Okay so, ", "Hi! ", "Sorry to ask, but ", "Random thought - "]
ASKS = ["what does {w} mean {where}", "{where}, what's {w}", "{w} - what is that {where}", "explain {w} {where}",
        "what is meant by {w} {where}", "tell me the meaning of {w} {where}", "{where} what would {w} be",
        "define {w} {where}", "I wonder what {w} is {where}", "any idea what {w} refers to {where}"]
WHERE = ["in {c}", "when playing {c}", "for {c}", "over in {c}", "inside {c}"]
FILLERS = ["", " exactly", " again", " really", " here", " now", " please"]
ENDS = ["?", "??", "", ".", "!?", " ?"]


def random_form(rng: random.Random) -> str:
    """A question form put together from pieces at random: an opener, a way to ask, a way to place the context,
    a filler and an ending, each chosen independently (the code registers none of them)."""
    ask = rng.choice(ASKS).replace("{where}", rng.choice(WHERE))
    text = rng.choice(OPENERS) + ask + rng.choice(FILLERS) + rng.choice(ENDS)
    return text[:1].upper() + text[1:] if rng.random() < 0.5 else text


@pytest.fixture(scope="module")
def memory(smollm2_lab):
    lab = smollm2_lab
    words = lab.suite.split("test")[:8]
    rows = [(w.word, c, w.labels[i]) for w in words for i, c in enumerate(["game A", "game B"])]
    bank = lab.new_memory()
    lab.write(bank, rows)
    return bank, rows


def test_a_question_form_built_at_random_is_read(smollm2_lab, memory):
    lab, (bank, rows) = smollm2_lab, memory
    seed = random.SystemRandom().randrange(10 ** 6)  # a new form every run; the seed is in the message
    rng = random.Random(seed)
    for _ in range(3):
        form = random_form(rng)
        got = [lab.ask(bank, lab.key_question(form.format(w=w, c=c)).prompt).answer.strip() == label
               for w, c, label in rows]
        assert sum(got) >= 0.75 * len(got), (seed, form, got)
        wrong = [lab.ask(bank, lab.key_question(form.format(w=w, c="game C")).prompt).chosen for w, _, _ in rows[::2]]
        assert wrong == [-1] * len(wrong), (seed, form, "fired in a never-written sibling context")


def test_a_chat_turn_gets_the_label_in_its_answer(smollm2_lab, memory):
    """The answer after the assistant's turn opens: the label within the first 12 generated tokens with memory,
    and not without it."""
    import re

    lab, (bank, rows) = smollm2_lab, memory
    with_memory = without = 0
    for w, c, label in rows:
        prompt = lab.key_question(chat_turn(lab.lm.tokenizer, f"What does {w} mean in {c}?")).prompt
        r = lab.ask(bank, prompt, max_new_tokens=12)
        said = re.compile(rf"(?<!\w){re.escape(label)}(?!\w)", re.IGNORECASE)
        with_memory += bool(said.search(r.generation))
        without += bool(said.search(r.base_generation))
    assert with_memory >= 0.75 * len(rows) and without <= 1, (with_memory, without)


def test_siblings_and_digit_look_alikes_are_left_alone(smollm2_lab):
    lab = smollm2_lab
    bank = lab.new_memory()
    lab.write(bank, [("zorp", "level 1", "cat"), ("zorp", "level 2", "dog"), ("zq56x", "room 101", "fish"),
                     ("wug", "the north lab", "milk"), ("fep", "Monday", "red")])
    for text in ["In level 4, what is zorp?", "What does zorp mean in level 12?", "In room 101, what is zq65x?",
                 "In room 101, what is zq57x?", "In room 103, what is zq56x?", "What is wug in the east lab?",
                 "What is wug in the lab north?", "On Wednesday, what is fep?", "What is zorp?"]:
        r = lab.ask(bank, lab.key_question(text).prompt)
        assert r.chosen == -1, (text, r.reason)
    for text, label in [("In level 2, what is zorp?", "dog"), ("what's zq56x in room 101?", "fish"),
                        ("what is wug in north lab?", "milk"), ("ON MONDAY WHAT IS FEP?", "red")]:
        r = lab.ask(bank, lab.key_question(text).prompt)
        assert r.chosen >= 0 and bank.entries[r.chosen].label == label, (text, r.reason)


def test_a_typed_statement_gets_a_proposal_of_its_parts(smollm2_lab):
    got = smollm2_lab.demo.propose_statement("Over in level 3, people use zorp to mean a cold drink")
    assert (got.word, got.context, got.label) == ("zorp", "level 3", "a cold drink")
