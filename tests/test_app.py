"""Every page through Streamlit's AppTest, on the real offline model (shared with the other tests)."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

pytestmark = pytest.mark.integration
APP = str(Path(__file__).resolve().parent.parent / "app.py")


@pytest.fixture(scope="module", autouse=True)
def preload(smollm2_lab):
    from pages import _shared

    _shared.PRELOADED["smollm2"] = smollm2_lab
    yield
    _shared.PRELOADED.pop("smollm2", None)


def new_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    return at


def texts(at) -> str:
    parts = [m.value for m in at.markdown] + [m.value for m in at.caption] + [str(m.value) for m in at.metric]
    parts += [e.value for e in at.error] + [w.value for w in at.warning] + [s.value for s in at.success]
    parts += [w.value for w in at.sidebar.warning] + [e.value for e in at.sidebar.error]
    return "\n".join(map(str, parts))


def test_home_falls_back_and_runs_the_worked_example():
    at = new_app()
    assert "cannot be loaded here" in texts(at)  # no network: visible notice, then smollm2
    table = at.dataframe[0].value
    assert list(table["with memory"]) == ["␣red", "␣blue"]
    assert "game A" in table["question"][0]


def test_write_ask_and_see_the_memory_answer():
    at = new_app()
    at.switch_page("pages/memory.py").run()
    at.text_input(key="one_word").input("wug")
    at.text_input(key="one_context").input("game A")
    at.text_input(key="one_label").input("green")
    at.button[0].click().run()  # the form's submit button
    assert not at.exception, at.exception
    assert len(at.session_state["bank"]) == 1
    at.text_area(key="bind_lines").input("wug, game B, blue\nzorp, game A, red green\nfep, , red")
    at.button(key="write_lines").click().run()
    bank = at.session_state["bank"]
    assert [(e.word, e.context, e.label) for e in bank.entries] == [("wug", "game A", "green"),
                                                                     ("wug", "game B", "blue")]
    errors = [e.value for e in at.error]
    assert any("Row 2" in e and "one token" in e for e in errors), errors
    assert any("Row 3" in e and "context is empty" in e for e in errors), errors

    at.switch_page("pages/inspect.py").run()
    assert not at.exception, at.exception
    at.text_input(key="question").input("Question: in game B, what is wug? Answer:").run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Answer with memory"] == "␣blue"
    assert "Top-1 is 'wug' in 'game B'" in texts(at)
    assert len(at.get("vega_lite_chart")) >= 3
    at.multiselect(key="more_q").set_value(["Question: in game A, what is wug? Answer:"]).run()
    assert not at.exception, at.exception
    at.selectbox(key="mode").set_value("raw_both_top1").run()
    assert not at.exception, at.exception


def test_memory_round_trip_delete_clear_and_bad_upload():
    at = new_app()
    at.switch_page("pages/memory.py").run()
    at.button(key="write_table").click().run()
    bank = at.session_state["bank"]
    assert len(bank) == 3
    data = bank.to_bytes()
    from fastmem import MemoryBank

    again, _ = MemoryBank.from_bytes(data)
    assert [e.slot for e in again.entries] == [e.slot for e in bank.entries]
    assert all((a.value == b.value).all() for a, b in zip(again.entries, bank.entries))
    at.selectbox(key="entry_pick").set_value(1).run()
    at.button(key="delete_entry").click().run()
    assert [e.slot for e in at.session_state["bank"].entries] == [("blicket", "game A"), ("dax", "game A")]
    assert at.button(key="clear_all").disabled
    at.checkbox(key="clear_sure").check().run()
    at.button(key="clear_all").click().run()
    assert len(at.session_state["bank"]) == 0


def test_benchmark_page_runs_small_benchmark():
    at = new_app()
    at.switch_page("pages/benchmark.py").run()
    at.multiselect(key="bench_modes").set_value(["none", "dual_key"])
    at.number_input(key="bench_words").set_value(4)
    at.button(key="bench_run").click().run()
    assert not at.exception, at.exception
    rows = at.session_state["bench_rows"]
    assert len(rows) == 2 * 5 and {r.n for r in rows if r.metric == "read"} == {8}
    assert len(at.get("vega_lite_chart")) == 1
    table = at.dataframe[0].value
    assert "post's figure" in table.columns and len(table) == 10


def test_experiments_page_shows_failures_table():
    at = new_app()
    at.switch_page("pages/experiments.py").run()
    at.number_input(key="exp_n").set_value(3)
    at.button(key="exp_run").click().run()
    assert not at.exception, at.exception
    name, mode, results, failures = at.session_state["exp_results"]
    assert len(results) == 6 and mode == "dual_key"
    assert "retrieved" in at.dataframe[0].value.columns
