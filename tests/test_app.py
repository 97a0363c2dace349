"""Every page through Streamlit's AppTest, on the real offline model (shared with the other tests)."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from fastmem.demo.text import plain
from fastmem.memory.file import from_bytes, to_bytes

pytestmark = pytest.mark.integration
APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture(scope="module", autouse=True)
def preload(smollm2_lab):
    from pages import _shared

    _shared.PRELOADED["smollm2", "auto"] = smollm2_lab
    yield
    _shared.PRELOADED.pop(("smollm2", "auto"), None)


def new_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    return at


def texts(at) -> str:
    parts = [m.value for m in at.markdown] + [m.value for m in at.caption] + [str(m.value) for m in at.metric]
    parts += [e.value for e in at.error] + [w.value for w in at.warning] + [s.value for s in at.success]
    parts += [i.value for i in at.info]
    parts += [w.value for w in at.sidebar.warning] + [e.value for e in at.sidebar.error]
    return plain("\n".join(map(str, parts)))  # as a reader sees it: the escapes of user text undone


def test_home_falls_back_and_runs_the_worked_example():
    at = new_app()
    notice = [w.value for w in at.sidebar.warning]
    assert len(notice) == 1 and "cannot be loaded here" in notice[0]  # no network: visible notice, then smollm2
    assert notice[0].count("offline model") == 1  # said once
    table = at.dataframe[0].value
    assert list(table["with memory"]) == ["␣red", "␣blue"]
    assert "game A" in table["question"][0]
    left = [m.value for m in at.info] + [m.value for m in at.warning]
    assert any("Wrong context" in v and "game Z" in v for v in left), left  # shown live, whatever it answers
    assert any("Look-alike" in v and "flicket" in v for v in left), left


def test_write_ask_and_see_the_memory_answer():
    at = new_app()
    at.switch_page("pages/memory.py").run()
    at.text_input(key="one_word").input("wug")
    at.text_input(key="one_context").input("game A")
    at.text_input(key="one_label").input("green")
    next(b for b in at.button if b.label == "Write binding").click().run()  # the form's submit button
    assert not at.exception, at.exception
    assert len(at.session_state["bank"]) == 1
    long_label = " ".join("abcdefghijklmnopqrstuvwxyzabcdefghijklmn")  # 40 one-letter words
    at.text_area(key="bind_lines").input(f"wug, game B, blue\nzorp, game A, guinea pig\nfep, , red\n"
                                         f"wug, game C, {long_label}")
    at.button(key="write_lines").click().run()
    bank = at.session_state["bank"]
    assert [(e.word, e.context, e.label) for e in bank.entries] == [("wug", "game A", "green"),
                                                                     ("wug", "game B", "blue"),
                                                                     ("zorp", "game A", "guinea pig")]
    errors = [e.value for e in at.error]
    assert any("Row 3" in e and "context is empty" in e for e in errors), errors
    assert any("Row 4" in e and "40 tokens" in e and "at most 8" in e for e in errors), errors

    at.switch_page("pages/inspect.py").run()
    assert not at.exception, at.exception
    at.text_input(key="question").input("Question: in game B, what is wug? Answer:").run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Answer with memory"] == "␣blue"
    assert "game B" in "".join(s.value for s in at.success)  # the reason, shown prominently
    assert len(at.get("vega_lite_chart")) >= 3
    generations = [c.value for c in at.code]
    assert len(generations) == 2 and generations[1].startswith("␣blue")
    at.text_input(key="question").input("Question: in game A, what is zorp? Answer:").run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Answer with memory"] == "␣guinea␣pig", metrics  # both label tokens, each with its correction
    assert "guinea pig" not in metrics["Answer without memory"].replace("␣", " ")
    at.text_input(key="question").input("Question: in game A, what is wug? Answer:").run()
    assert {m.label: m.value for m in at.metric}["Answer with memory"] == "␣green"
    again = [c.value for c in at.code]
    assert again[1].startswith("␣green") and again != generations  # the boxes follow the new question
    at.multiselect(key="more_q").set_value(["Question: in game B, what is wug? Answer:"]).run()
    assert not at.exception, at.exception
    at.selectbox(key="mode").set_value("raw_both_top1").run()
    assert not at.exception, at.exception


def test_preset_suggested_question_toggle_and_shared_view():
    from fastmem.demo.share import ShareView

    at = new_app()
    at.switch_page("pages/memory.py").run()
    at.button(key="preset_failures").click().run()
    assert not at.exception, at.exception
    bank = at.session_state["bank"]
    assert [(e.word, e.context, e.label) for e in bank.entries] == [("blicket", "game A", "red"),
                                                                     ("blicket", "game B", "blue")]
    assert "Suggested questions" in texts(at)
    at.button(key="preset_ask_failures_2").click().run()  # the wrong-context question, opened on Inspect
    assert not at.exception, at.exception
    assert at.text_input(key="question").value == "Question: in game Z, what is blicket? Answer:"
    assert [w.value for w in at.info] or [s.value for s in at.success]  # the reason, whichever it is

    at.switch_page("pages/memory.py").run()
    at.toggle(key="entry_on::blicket::game B").set_value(False).run()
    assert not at.exception, at.exception
    assert not at.session_state["bank"].is_enabled(1) and at.session_state["bank"].is_enabled(0)
    at.switch_page("pages/inspect.py").run()
    at.text_input(key="question").input("Question: in game B, what is blicket? Answer:").run()
    off = {m.label: m.value for m in at.metric}["Answer with memory"]
    assert off != "␣blue", texts(at)  # the switched-off entry is never retrieved: the answer changes
    at.switch_page("pages/memory.py").run()
    at.toggle(key="entry_on::blicket::game B").set_value(True).run()
    assert at.session_state["bank"].is_enabled(1)

    view = ShareView(mode="dual_key", alpha=3.0, threshold=None,
                     question="Question: in game B, what is blicket? Answer:")
    at.session_state["_pending_view"] = view  # what "Open this view" leaves for the page
    at.switch_page("pages/inspect.py").run()
    assert not at.exception, at.exception
    assert at.text_input(key="question").value == view.question
    assert at.selectbox(key="thr_choice").value == "off" and at.slider(key="alpha_dual_key").value == 3.0
    assert {m.label: m.value for m in at.metric}["Answer with memory"] == "␣blue"
    assert "threshold=None" in texts(at)


def test_memory_round_trip_delete_clear_and_bad_upload():
    at = new_app()
    at.switch_page("pages/memory.py").run()
    at.button(key="write_table").click().run()
    bank = at.session_state["bank"]
    assert len(bank) == 3
    data = to_bytes(bank)

    again, _ = from_bytes(data)
    assert [e.slot for e in again.entries] == [e.slot for e in bank.entries]
    assert all((a.value == b.value).all() for a, b in zip(again.entries, bank.entries))
    at.selectbox(key="entry_pick").set_value(1).run()
    at.button(key="delete_entry").click().run()
    assert [e.slot for e in at.session_state["bank"].entries] == [("blicket", "game A"), ("dax", "game A")]
    assert at.button(key="clear_all").disabled
    at.checkbox(key="clear_sure").check().run()
    at.button(key="clear_all").click().run()
    assert len(at.session_state["bank"]) == 0


def run_bench(at, experiments=None, modes=("none", "dual_key"), words=4):
    at.switch_page("pages/benchmark.py").run()
    if experiments:
        at.multiselect(key="bench_experiments").set_value(list(experiments))
    at.multiselect(key="bench_modes").set_value(list(modes))
    at.number_input(key="bench_words").set_value(words)
    at.button(key="bench_run").click().run()
    assert not at.exception, at.exception
    return at.session_state["bench_job"]


def test_benchmark_survives_widget_changes_and_shows_the_posts_layout():
    at = new_app()
    job = run_bench(at)
    assert job.running and at.button(key="bench_run").disabled
    at.number_input(key="bench_seed").set_value(3).run()  # a widget change during the run
    at.multiselect(key="bench_modes").set_value(["none"]).run()
    assert not at.exception, at.exception
    assert at.session_state["bench_job"] is job
    assert job.wait(900) and job.status == "done", (job.status, job.error)
    at.run()
    rows = at.session_state["bench_rows"]
    metrics = list(dict.fromkeys(r.metric for r in rows))
    assert {r.mode for r in rows} == {"none", "dual_key"} and len(rows) == 2 * len(metrics)
    assert {r.n for r in rows if r.metric == "read"} == {8}
    table = at.dataframe[0].value
    assert list(table["mode"]) == ["none", "dual_key"]  # one row per (experiment, mode)
    assert "plain ↓" in table.columns and "read" in table.columns  # one column per metric, lower-is-better marked
    assert len(table.columns) == 2 + 5  # the compact table: the five headline metrics
    full = at.dataframe[1].value  # every metric with its interval, one click away
    assert len(full.columns) > len(table.columns) and "lookalike ↓" in full.columns
    legend = next(m.value for m in at.markdown if "What each column counts" in m.value)
    assert "wrong_context ↓" in legend and "kept" in legend and "paraphrase:*" in legend
    assert len(at.get("vega_lite_chart")) == 1 and not at.button(key="bench_run").disabled
    assert any("Done" in s.value for s in at.success)


def test_benchmark_stop_keeps_finished_rows():
    at = new_app()
    job = run_bench(at, experiments=["same game A/B", "new game C/D", "new lab north/south"],
                    modes=["none", "dual_key"], words=16)
    at.button(key="bench_stop").click().run()
    assert job.wait(600) and job.status == "stopped", job.status
    at.run()
    assert not at.exception, at.exception
    rows = at.session_state["bench_rows"]
    assert rows is job.rows and len({r.experiment for r in rows}) < 3  # stopped early, finished rows kept
    assert any("Stopped after" in w.value for w in at.warning)
    assert not at.button(key="bench_run").disabled


def test_benchmark_runs_the_baselines_as_bindings_grow_and_charts_them():
    at = new_app()
    at.switch_page("pages/benchmark.py").run()
    at.multiselect(key="baselines_sizes").set_value([2, 10])
    at.multiselect(key="baselines_modes").set_value(["token_match", "in_context_all", "in_context_word"])
    at.number_input(key="baselines_questions").set_value(4)
    at.button(key="baselines_run").click().run()
    assert not at.exception, at.exception
    job = at.session_state["baselines_job"]
    assert job.wait(900) and job.status == "done", (job.status, job.error)
    at.run()
    assert not at.exception, at.exception
    assert {(r.experiment, r.mode) for r in job.rows if r.metric == "read"} == {
        (f"{n} bindings", m) for n in (2, 10) for m in ("token_match", "in_context_all", "in_context_word")}
    assert {c.size for c in job.timing} == {2, 10} and all(c.fits for c in job.timing)
    assert len(at.get("vega_lite_chart")) == 1
    table = next(c.value for c in at.code if "tokens/question" in c.value)
    assert "in_context_word" in table and "ms/question" in table


def test_benchmark_runs_the_capacity_curve():
    at = new_app()
    at.switch_page("pages/benchmark.py").run()
    at.multiselect(key="capacity_sizes").set_value([100])
    at.number_input(key="capacity_questions").set_value(4)
    at.button(key="capacity_run").click().run()
    job = at.session_state["capacity_job"]
    assert job.wait(900) and job.status == "done", (job.status, job.error)
    at.run()
    assert not at.exception, at.exception
    assert {r.metric for r in job.rows} == {"read", "wrong_context", "lookalike", "kept"}
    assert [t.size for t in job.timing] == [100] and len(at.get("vega_lite_chart")) == 1
    assert any("retrieval ms/question" in c.value for c in at.code)


def test_experiments_page_shows_failures_table():
    at = new_app()
    at.switch_page("pages/experiments.py").run()
    at.number_input(key="exp_n").set_value(3)
    at.button(key="exp_run").click().run()
    assert not at.exception, at.exception
    name, mode, results, failures = at.session_state["exp_results"]
    from fastmem import DEFAULT_MODE

    assert len(results) == 6 and mode == DEFAULT_MODE
    assert "retrieved" in at.dataframe[0].value.columns


def test_write_a_custom_form_and_a_free_statement_then_read_both_back():
    at = new_app()
    at.switch_page("pages/memory.py").run()
    at.selectbox(key="one_form").set_value("Custom form…").run()
    at.text_input(key="one_custom").input("On planet {context}, the word {word} means")
    at.text_input(key="one_word").input("wug")
    at.text_input(key="one_context").input("Zog")
    at.text_input(key="one_label").input("guinea pig")
    next(b for b in at.button if b.label == "Write binding").click().run()
    assert not at.exception, at.exception
    at.text_input(key="free_statement").input("According to Mia, dax means a glass of milk")
    at.text_input(key="free_word").input("dax")
    at.text_input(key="free_context").input("Mia")
    at.text_input(key="free_label").input("a glass of milk")
    next(b for b in at.button if b.label == "Write statement").click().run()
    assert not at.exception, at.exception
    bank = at.session_state["bank"]
    assert [(e.word, e.context, e.label, e.write_text) for e in bank.entries] == [
        ("wug", "Zog", "guinea pig", "On planet Zog, the word wug means"),
        ("dax", "Mia", "a glass of milk", "According to Mia, dax means")]

    at.switch_page("pages/inspect.py").run()
    at.text_input(key="question").input("Tell me, what could wug mean on planet Zog?").run()
    assert any("Read as typed" in c.value for c in at.caption)  # the default mode needs no form and no marks
    assert {m.label: m.value for m in at.metric}["Answer with memory"] == "␣guinea␣pig"
    at.selectbox(key="mode").set_value("token_match").run()  # a mode that needs slots says when it has none
    warned = [plain(w.value) for w in at.warning]
    assert any("No known question form matches" in w and "'Zog'" in w for w in warned), warned  # never silent
    at.text_input(key="mark_word").input("wug")
    at.text_input(key="mark_context").input("Zog").run()
    assert any("Keyed on your marks: word 'wug', context 'Zog'" in plain(c.value) for c in at.caption)
    assert {m.label: m.value for m in at.metric}["Answer with memory"] == "␣guinea␣pig"
    at.text_input(key="mark_word").input("")
    at.text_input(key="mark_context").input("")
    at.text_input(key="question").input("Question: according to Mia, what does dax mean? Answer:").run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Answer with memory"] == "␣a␣glass␣of␣milk", metrics


def test_marks_belong_to_their_question_and_a_mode_change_says_what_it_brings():
    at = new_app()
    at.switch_page("pages/inspect.py").run()
    at.text_input(key="question").input("What does blicket mean in game A?").run()
    at.text_input(key="mark_word").input("blicket").run()
    assert at.text_input(key="mark_word").value == "blicket"
    at.text_input(key="question").input("And in game B, what is blicket?").run()
    assert not at.exception, at.exception
    assert at.text_input(key="mark_word").value == ""  # the marks were made for the previous question
    assert any("Marks cleared for the new question" in c.value and "'blicket'" in plain(c.value) for c in at.caption)
    at.selectbox(key="mode").set_value("dual_key").run()
    assert any("Its calibrated settings" in c.value for c in at.caption), [c.value for c in at.caption]
    assert not at.exception and not any("Session State API" in w.value for w in at.warning)


def test_inspect_reads_at_another_key_layer_without_touching_the_memory():
    at = new_app()
    at.switch_page("pages/memory.py").run()
    at.text_area(key="bind_lines").input("wug, game A, green\nwug, game B, blue")
    at.button(key="write_lines").click().run()
    bank = at.session_state["bank"]
    layer = bank.key_layer
    at.switch_page("pages/inspect.py").run()
    at.selectbox(key="mode").select("raw_both_top1").run()
    at.text_input(key="question").input("Question: in game B, what is wug? Answer:").run()
    assert not at.number_input(key="key_layer").disabled  # raw_both_top1 reads the key layer
    at.number_input(key="key_layer").set_value(3).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert "key layer 3" in texts(at)
    assert "Answer with memory" in {m.label for m in at.metric}
    assert at.session_state["bank"] is bank and bank.key_layer == layer  # the user's memory keeps its own keys


def test_the_sidebar_switches_the_weights_and_keeps_the_memory(smollm2_lab):
    """bfloat16 weights from the sidebar: the app loads and says them, and the user's memory (written with
    float32) is read through them. The bfloat16 lab borrows float32's calibration here, so that the test
    does not calibrate; a user's first bfloat16 load calibrates its own."""
    from fastmem import Lab
    from fastmem.model.lm import FrozenLM
    from pages import _shared

    half = FrozenLM.load("smollm2", "cpu", "bfloat16")
    _shared.PRELOADED["smollm2", "bfloat16"] = Lab(half, smollm2_lab.calibration, smollm2_lab.geometry,
                                                   smollm2_lab.suite)
    try:
        at = new_app()
        assert "(float32 weights)" in "".join(c.value for c in at.sidebar.caption)
        assert at.selectbox(key="model_weights").options[1:] == ["float32", "bfloat16"]
        bank = smollm2_lab.new_memory()  # the user's memory, written with float32 weights
        smollm2_lab.write(bank, [("wug", "game A", "green"), ("wug", "game B", "blue")])
        # a session whose sidebar says bfloat16 (set before its first run: AppTest shows a first run's sidebar only)
        at = AppTest.from_file(APP, default_timeout=180)
        at.session_state["model_weights"], at.session_state["bank"] = "bfloat16", bank
        at.run()
        assert not at.exception, at.exception
        assert "(bfloat16 weights)" in "".join(c.value for c in at.sidebar.caption)
        assert {m.label: m.value for m in at.sidebar.metric}["Entries"] == "2"  # the memory is usable with them
        at.switch_page("pages/inspect.py").run()
        at.text_input(key="question").input("Question: in game B, what is wug? Answer:").run()
        assert not at.exception, at.exception
        assert at.session_state["lab_weights"] == "bfloat16" and at.session_state["bank"] is bank
        assert {m.label: m.value for m in at.metric}["Answer with memory"] == "␣blue"
    finally:
        _shared.PRELOADED.pop(("smollm2", "bfloat16"), None)


def test_the_model_box_says_the_same_for_any_path_outside_the_model_folder():
    """A visitor's path in the Other box: one message, whether it exists or not, and the offline model."""
    from pages._shared import CUSTOM

    seen = []
    for typed in ("/etc/shadow", "/nonexistent/x", "../../etc", "/etc"):
        at = AppTest.from_file(APP, default_timeout=180)
        at.session_state["model_choice"], at.session_state["model_custom"] = CUSTOM, typed
        at.run()
        assert not at.exception, at.exception
        assert at.session_state["_resolved_spec"] == "smollm2"
        seen.append([plain(e.value) for e in at.sidebar.error])
    assert all(s == seen[0] for s in seen) and len(seen[0]) == 1, seen
    assert seen[0][0].startswith("Not a model the app can load") and "etc" not in seen[0][0], seen
