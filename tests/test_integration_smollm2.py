"""The real offline model (SmolLM2-135M-Instruct from its GGUF): values, a small benchmark, reload, CLI."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fastmem.eval.bench import run_bench
from fastmem.model.loading import _gguf_cache_folder, load_model, smollm2_gguf_path
from fastmem.memory.prompts import render
from fastmem.eval.suite import bindings
from fastmem.memory.values import ce_gradient, one_step_value

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parent.parent


def test_value_is_minus_ce_gradient_on_smollm2(smollm2_lab):
    lm = smollm2_lab.lm
    exp = smollm2_lab.suite.experiment("same game A/B")
    binds = bindings(exp, smollm2_lab.suite.split("test")[:3])
    states = lm.states([b.write for b in binds])
    targets = torch.tensor([lm.label_tokens(b.label)[0] for b in binds])
    W = lm.unembedding.detach().float().cpu()
    value = one_step_value(states.final, targets, W)
    grad = ce_gradient(states.final, targets, W)
    assert grad.norm(dim=-1).min() > 0
    # two float32 computations of the same formula: each row agrees to 1e-3 of its norm
    assert ((value + grad).norm(dim=-1) / grad.norm(dim=-1)).max() < 1e-3
    torch.testing.assert_close(value, -grad, rtol=1e-3, atol=1e-4)


def test_small_benchmark_on_smollm2(smollm2_lab):
    lab = smollm2_lab
    rows, _ = run_bench(lab, lab.suite, experiments=["new lab north/south"],
                        modes=["none", "dual_key", "both_top1", "token_match"], words_per_experiment=8)
    rate = {(r.mode, r.metric): r.rate for r in rows}
    n = {(r.mode, r.metric): r.n for r in rows}
    print({k: round(v, 3) for k, v in rate.items()})
    assert all(r.n == 16 for r in rows if r.metric in ("write", "read"))
    assert n[("token_match", "kept")] >= 40  # fact prompts the plain model gets right
    assert rate[("none", "read")] <= 0.125  # the plain model does not know invented words
    assert rate[("none", "unchanged")] == 1.0 and rate[("none", "kept")] == 1.0
    # the selective default: reads and every paraphrase answered, the hard negatives left alone
    assert rate[("token_match", "read")] >= 0.95 and rate[("token_match", "write")] >= 0.95
    assert all(v >= 0.9 for (m, k), v in rate.items() if m == "token_match" and k.startswith("paraphrase:"))
    assert rate[("token_match", "lookalike")] <= 0.05 and rate[("token_match", "plain")] <= 0.02
    assert rate[("token_match", "wrong_context")] <= 0.15  # 'the east lab' fires for north/south (README)
    assert rate[("token_match", "kept")] >= 0.98
    assert rate[("dual_key", "lookalike")] >= 0.1  # the old default fires on look-alikes: the metric can fail
    for mode in ("dual_key", "both_top1"):
        assert rate[(mode, "plain")] <= 0.25  # context-free questions mostly stay unanswered


def test_answer_with_continuations_on_smollm2(smollm2_lab):
    lab = smollm2_lab
    bank = lab.new_memory()
    lab.write(bank, [("wug", "game A", "green"), ("wug", "game B", "stone")])
    for context, label in (("game A", " green"), ("game B", " stone")):
        q = lab.question("wug", context)
        r = lab.ask(bank, q, max_new_tokens=4)
        assert r.answer == label and r.generation.startswith(label)
        assert r.base_generation.startswith(r.base_answer) and r.base_answer != label
        # asking first and continuing later (as the Inspect page does) gives the same text
        later = lab.continue_answer(lab.ask(bank, q), 4)
        assert (later.generation, later.base_generation) == (r.generation, r.base_generation)
        plain = lab.lm.tokenizer(q.text, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            ref = lab.lm.model.generate(plain, attention_mask=torch.ones_like(plain), do_sample=False,
                                        max_new_tokens=4)[0, plain.shape[1]:]
        assert r.base_generation == lab.lm.tokenizer.decode(ref)  # the plain side is the model's own greedy text


def test_converted_gguf_folder_reloads_equal_logits(smollm2_lab):
    folder = _gguf_cache_folder(smollm2_gguf_path())
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    model, tokenizer, _ = load_model(str(folder), device="cpu")
    lm = smollm2_lab.lm
    text = render("Question: in {context}, what is {word}? Answer:", "blicket", "game A").text
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    assert ids.tolist() == lm.tokenizer(text, return_tensors="pt")["input_ids"].tolist()
    with torch.no_grad():
        reloaded = model(input_ids=ids).logits[0, -1]
        original = lm.model(input_ids=ids.to(lm.device)).logits[0, -1].cpu()
    assert torch.equal(model.get_output_embeddings().weight, lm.unembedding.cpu())
    torch.testing.assert_close(reloaded, original, rtol=0, atol=1e-5)


def test_cli_bench_smoke():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "fastmem", "bench", "--model", "smollm2", "--words", "4",
                           "--experiments", "same game A/B", "--modes", "none", "dual_key", "--device", "cpu"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "experiment" in out and "read" in out and "unchanged" in out and "wrong_context" in out
    lines = [line for line in out.splitlines() if line.startswith("same game A/B")]
    assert len(lines) == 2 and "none" in lines[0] and "dual_key" in lines[1]
    assert "forward passes:" in out


def test_the_readme_api_example_runs_and_says_what_it_shows(smollm2_lab, tmp_path, monkeypatch, capsys):
    """The README's Python API example, run as written (Lab.load returns the already-loaded lab)."""
    import re
    from pathlib import Path

    from fastmem import Lab

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = re.search(r"## Python API\n\n```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.setattr(Lab, "load", classmethod(lambda cls, *a, **k: smollm2_lab))
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "'<|im_end|>' -> ' guinea pig'", out
    assert out[1].startswith("Found the word 'blicket' (1.00) and the context 'game A' (1.00): entry 'blicket' in "
                             "'game A' -> 'guinea pig'"), out
    assert out[2] == "' a glass of milk'", out
    assert out[3].startswith("'\\n' |") and "'blicket' is written only in 'game A', 'game B'" in out[3], out
    assert (tmp_path / "memory.safetensors").stat().st_size > 0


def test_codebook_answers_its_one_question_form_and_says_why_it_leaves_a_paraphrase(smollm2_lab):
    lab = smollm2_lab
    bank = lab.new_memory()
    lab.write(bank, [("blicket", "game A", "red"), ("blicket", "game B", "blue")])
    own = lab.ask(bank, lab.question("blicket", "game B"), mode="codebook")
    assert own.chosen == 1 and own.answer.strip() == "blue", own.reason
    other = lab.ask(bank, lab.parse_question("Question: what is blicket in game B? Answer:"), mode="codebook")
    assert other.chosen == -1 and "one question form" in other.reason
    assert lab.ask(bank, lab.parse_question("Question: what is blicket in game B? Answer:")).answer.strip() == "blue"


def test_in_context_prompts_on_smollm2_cached_or_whole_give_one_answer(smollm2_lab, monkeypatch):
    from fastmem.memory import in_context
    from fastmem.memory.in_context import build_prompts, final_states, in_context_readout
    from fastmem.eval.metrics import LabelIndex

    lab = smollm2_lab
    bank = lab.new_memory()
    lab.write(bank, [(w, c, label) for w, labels in (("blicket", ("red", "blue")), ("dax", ("green", "cat")))
                     for c, label in zip(("game A", "game B"), labels)])
    asked = [lab.question("dax", "game B"), lab.question("blicket", "game A"), lab.question("wug", "game A")]
    built = build_prompts(lab.lm, bank, "in_context_all", asked)
    text = lab.lm.tokenizer.decode(built[0].ids)
    assert "In game B, dax means cat." in text and text.endswith("Question: in game B, what is dax? Answer:")
    monkeypatch.setattr(in_context, "CACHE_ABOVE", 1)  # the statements run once, each question on their cache
    cached = final_states(lab.lm, built, batch_size=2)
    whole = torch.cat([lab.lm.model.base_model(input_ids=torch.tensor([b.ids])).last_hidden_state[:, -1]
                       for b in built]).float()
    assert torch.allclose(cached, whole, atol=1e-3), (cached - whole).abs().max()
    base = lab.lm.logits(lab.lm.states(asked).final).argmax(-1)
    got, lengths = in_context_readout(lab.lm, bank, "in_context_word", asked, base, LabelIndex.of(bank).all_ids)
    assert int(got.ids[2, 0]) == int(base[2]) and lengths[2] < lengths[0]  # an unwritten word is asked alone


def test_benchmark_verdicts_equal_what_the_app_answers(smollm2_lab):
    """One path: a sample of the benchmark's probes (read, wrong context, look-alike, plain, sibling, multi-token
    labels) scored by the benchmark, one probe at a time, and asked through Lab.ask in a memory written through
    Lab.write: every verdict is the same."""
    from fastmem.eval.probesets import experiment_probes
    from fastmem.eval.scoring import StateStore, score_probes
    from fastmem.eval.calibrate import empty_bank
    from fastmem.memory.engine import write_entries
    from fastmem.eval.metrics import LabelIndex, hit_mask, probe_set
    from fastmem.eval.suite import load_suite

    lab = smollm2_lab
    suite = load_suite("multitoken")
    exp = suite.experiment("same game A/B")
    words = suite.split("test")[::16][:4]  # labels of 1, 2, 3 and 4 tokens
    binds, sets = experiment_probes(lab.lm, suite, exp, words, lab.calibration.seed)
    app_bank = lab.new_memory()
    lab.write(app_bank, [(b.word, b.context, b.label) for b in binds])
    store = StateStore(lab.lm, empty_bank(lab.lm, lab.calibration))
    bench_bank = empty_bank(lab.lm, lab.calibration)
    write_entries(lab.lm, bench_bank, [b.write for b in binds], [b.word for b in binds], [b.context for b in binds],
                  [b.label for b in binds], states=store([b.write for b in binds]))
    labels = LabelIndex.of(app_bank)
    compared = 0
    for s in sets:
        if s.metric not in ("read", "wrong_context", "lookalike", "plain", "sibling"):
            continue
        for i in range(0, len(s), max(1, len(s) // 6)):
            one = probe_set(s.metric, [s.prompts[i]], [s.targets[i]], [s.contexts[i]])
            for mode in ("span_match", "token_match", "both_top1"):
                bench = score_probes(lab.lm, bench_bank, lab.geometry, lab.calibration, exp.name, mode, one,
                                     store(one.prompts))[0]
                r = lab.ask(app_bank, one.prompts[0], mode=mode)
                app = hit_mask(one, torch.tensor([r.answer_ids]), torch.tensor([r.base_answer_ids]), labels, lab.lm)
                assert bench.hits == int(app[0]), (mode, s.metric, one.prompts[0].text, r.answer, r.reason)
                compared += 1
    assert compared >= 60


def test_the_shipped_calibration_is_this_codes(smollm2_lab):
    """The package ships the default offline model's calibration, so a fresh clone does not calibrate. It is used
    only under its own key; a change to what calibration reads makes this fail until it is shipped anew
    (`python scripts/ship_calibration.py`)."""
    from fastmem.eval.calibration_cache import SHIPPED, _folder_name, cache_key, stale_shipped

    lm = smollm2_lab.lm
    key = cache_key(lm, smollm2_lab.suite, 8, 0)
    assert (SHIPPED / _folder_name(lm, key) / "key").read_text() == key
    assert stale_shipped(lm, key) == []  # only the current one is shipped


def test_the_shipped_calibration_gives_the_verdicts_recorded_with_it(smollm2_lab):
    """The verdicts of a fixed sample asked under the shipped calibration when it was shipped (`verdicts.json`) are
    what this code gives: a change of retrieval or reading behaviour fails here until CALIBRATION_VERSION is bumped
    and the calibration reshipped (verdicts too close to call on another CPU are not compared)."""
    import json

    from fastmem.eval.calibration_cache import SHIPPED, _folder_name, cache_key
    from fastmem.eval.calibration_reference import verdict_differences, verdicts

    lm = smollm2_lab.lm
    folder = SHIPPED / _folder_name(lm, cache_key(lm, smollm2_lab.suite, 8, 0))
    recorded = json.loads((folder / "verdicts.json").read_text())
    differences, compared = verdict_differences(verdicts(smollm2_lab), recorded)
    assert differences == [], differences[:5]
    assert compared >= 0.8 * len(recorded)
