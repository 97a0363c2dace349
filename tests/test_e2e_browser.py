"""The running app in a real browser (Chromium via Playwright): write a binding, ask, check the answer; a
preset, two questions in a row (every panel follows the second), an entry switched off. Screenshots go to a
temporary folder (the README's are written by scripts/screenshots.py, never by the tests)."""
import pytest
from browser import (BROWSER_ARGS, ROOT, chromium_path, idle, log_problems, nav, rerun_over, run_benchmark,
                     run_experiment, runs_started, streamlit_server)

pytestmark = pytest.mark.e2e
LOG = ROOT / ".pytest-streamlit.log"


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def server():
    with streamlit_server(LOG) as url:
        yield url
    assert log_problems(LOG) == []  # no error reached the server log


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=240_000)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=chromium_path(), args=BROWSER_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(server, browser):
    """A fresh browser context, so a fresh app session: every test starts from an empty memory."""
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 1600}, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(240_000)
    pg.goto(server)
    # the first page waits for the model to load (and to calibrate, after a change to what calibration reads)
    expect(pg.get_by_text("Worked example (live)")).to_be_visible(timeout=900_000)
    idle(pg)
    yield pg
    context.close()


def shot(pg, folder, name):
    path = folder / f"{name}.png"
    pg.screenshot(path=str(path))
    assert 10_000 < path.stat().st_size < 1_500_000
    return path


def metric(pg, label):
    return pg.get_by_test_id("stMetric").filter(has_text=label).get_by_test_id("stMetricValue").inner_text()


def panels(pg) -> dict[str, str]:
    """The text of every result panel of the Inspect page (chart labels are SVG text)."""
    def text(key):
        return pg.locator(f".st-key-{key}").first.text_content() or ""

    return {"answer": metric(pg, "Answer with memory"), "base answer": metric(pg, "Answer without memory"),
            "reason": text("reason_box"),
            "generation": pg.locator(".st-key-gen_mem_box [data-testid=stCode]").inner_text().strip(),
            "base generation": pg.locator(".st-key-gen_base_box [data-testid=stCode]").inner_text().strip(),
            "after": text("after_box"), "promoted": text("promoted_box"), "retrieval": text("retrieval_box")}


def ask(pg, question):
    """Ask on the Inspect page and wait for the run this question started (the panels before it look alike).
    A question already in the box starts no run: its answer is on screen once the page is idle."""
    box = pg.get_by_label("Question", exact=True)
    unchanged = box.input_value() == question
    box.fill(question)
    since = runs_started(pg)
    box.press("Enter")
    if unchanged:
        idle(pg)
    else:
        rerun_over(pg, since)
    pg.locator(".st-key-gen_mem_box [data-testid=stCode]").wait_for()


def load_blicket_preset(pg) -> None:
    """The post's blicket example on the Memory page (an empty memory: no question asked)."""
    from playwright.sync_api import expect

    nav(pg, "Memory")
    pg.get_by_role("button", name="The post's blicket example").click()
    expect(pg.get_by_text("Loaded: The post's blicket example")).to_be_visible()
    idle(pg)


def switch_off_game_b(pg) -> None:
    from playwright.sync_api import expect

    nav(pg, "Memory")
    pg.locator(".st-key-entry_switches").get_by_text("blicket · game B").click()
    idle(pg)
    expect(pg.get_by_text("(1 on, 1 off)")).to_be_visible()


def test_write_ask_and_every_page(page, shots):
    from playwright.sync_api import expect

    pg = page
    expect(pg.get_by_text("cannot be loaded here")).to_have_count(1)  # offline: the fallback notice, once
    expect(pg.get_by_text("Questions the memory should leave alone")).to_be_visible()
    expect(pg.get_by_test_id("stDataFrame").first).to_be_visible()
    idle(pg)
    shot(pg, shots, "home")

    nav(pg, "Memory")
    pg.get_by_label("Word", exact=True).fill("wug")
    pg.get_by_label("Context", exact=True).fill("game B")
    pg.get_by_label("Label", exact=True).fill("green")
    pg.get_by_role("button", name="Write binding").click()
    expect(pg.get_by_text("Wrote 1 of 1 rows")).to_be_visible()
    expect(pg.get_by_text("Entries (1)")).to_be_visible()
    idle(pg)
    shot(pg, shots, "memory")

    nav(pg, "Inspect")
    question = pg.get_by_label("Question", exact=True)
    expect(question).to_have_value("Question: in game B, what is wug? Answer:")
    with_memory = pg.get_by_test_id("stMetric").filter(has_text="Answer with memory")
    expect(with_memory.get_by_test_id("stMetricValue")).to_have_text("␣green")
    expect(pg.get_by_text("Memory used.")).to_be_visible()
    idle(pg)
    shot(pg, shots, "inspect")

    nav(pg, "Benchmark")
    run_benchmark(pg, 4)
    expect(pg.get_by_test_id("stDataFrame").first).to_be_visible()
    shot(pg, shots, "benchmark")

    nav(pg, "Experiments")
    run_experiment(pg, 3)
    shot(pg, shots, "experiments")


def test_preset_two_questions_every_panel_follows_and_switch_off(page, shots):
    from playwright.sync_api import expect

    pg = page
    load_blicket_preset(pg)
    pg.get_by_role("button", name="Ask on Inspect").first.click()  # the game A question, opened on Inspect
    idle(pg)
    expect(pg.get_by_label("Question", exact=True)).to_have_value("Question: in game A, what is blicket? Answer:")
    pg.locator(".st-key-gen_mem_box [data-testid=stCode]").wait_for()
    first = panels(pg)
    shot(pg, shots, "inspect-game-a")

    ask(pg, "Question: in game B, what is blicket? Answer:")
    second = panels(pg)
    shot(pg, shots, "inspect-game-b")

    assert (first["answer"], second["answer"]) == ("␣red", "␣blue"), (first, second)
    for got, ctx, label in ((first, "game A", "␣red"), (second, "game B", "␣blue")):
        assert ctx in got["reason"], got  # the reason names the retrieved entry's context
        assert got["generation"].startswith(got["answer"]), got  # the continuation is this question's
        assert got["base generation"].startswith(got["base answer"]), got
        assert label in got["after"] and label in got["promoted"], got  # top tokens after, correction's tokens
        assert "2 of 2 entries shown" in got["retrieval"], got
    assert first["reason"] != second["reason"] and first["generation"] != second["generation"]

    switch_off_game_b(pg)
    nav(pg, "Inspect")
    ask(pg, "Question: in game B, what is blicket? Answer:")
    off = panels(pg)
    assert off["answer"] != "␣blue" or "game B" not in off["reason"], off
    assert "switched off" in off["retrieval"], off
    shot(pg, shots, "inspect-switched-off")


def test_share_file_reopens_the_view_and_bad_json_changes_nothing(page, shots, tmp_path):
    from playwright.sync_api import expect

    pg = page
    load_blicket_preset(pg)
    switch_off_game_b(pg)
    nav(pg, "Inspect")
    ask(pg, "Question: in game B, what is blicket? Answer:")
    before = panels(pg)
    with pg.expect_download() as got:
        pg.get_by_role("button", name="Share this view").click()
    shared = tmp_path / "view.json"
    got.value.save_as(shared)
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "fastmem-share", "version": 1, "model": "x", "memory": "@@"')

    nav(pg, "Memory")
    pg.get_by_role("button", name="Conflicting contexts").click()  # a different memory: asks first
    expect(pg.get_by_text("Your memory holds")).to_be_visible()
    pg.get_by_role("button", name="Replace it").click()
    expect(pg.get_by_text("Entries (6)")).to_be_visible()
    nav(pg, "Inspect")
    ask(pg, "What does blicket mean in game A?")  # another question than the shared view's
    pg.get_by_text("Open a shared view (JSON)").click()
    upload = pg.get_by_test_id("stFileUploaderDropzoneInput")
    upload.set_input_files(str(bad))
    idle(pg)
    pg.get_by_role("button", name="Open this view").click()
    idle(pg)
    expect(pg.get_by_text("Not opened, nothing changed")).to_be_visible()
    expect(pg.get_by_label("Question", exact=True)).to_have_value("What does blicket mean in game A?")

    upload.set_input_files(str(shared))
    idle(pg)
    pg.get_by_role("button", name="Open this view").click()
    idle(pg)
    expect(pg.get_by_label("Question", exact=True)).to_have_value("Question: in game B, what is blicket? Answer:")
    expect(pg.locator(".st-key-reason_box")).to_contain_text("entry 'blicket' in 'game B' matches")
    expect(pg.locator(".st-key-reason_box")).to_contain_text("switched off")
    idle(pg)
    pg.locator(".st-key-gen_mem_box [data-testid=stCode]").wait_for()
    expect(pg.get_by_test_id("stSidebar").get_by_test_id("stMetricValue")).to_have_text("2")  # the shared memory
    after = panels(pg)
    assert after == before, (before, after)  # the same view: memory (with its switched-off entry) and settings
    shot(pg, shots, "inspect-shared")


def test_multi_token_label_and_custom_form_are_written_and_read_back(page, shots):
    from playwright.sync_api import expect

    pg = page
    nav(pg, "Memory")
    pg.get_by_label("Word", exact=True).fill("zorp")
    pg.get_by_label("Context", exact=True).fill("game A")
    pg.get_by_label("Label", exact=True).fill("guinea pig")
    pg.get_by_role("button", name="Write binding").click()
    expect(pg.get_by_text("Wrote 1 of 1 rows")).to_be_visible()
    idle(pg)
    pg.get_by_test_id("stSelectbox").filter(has_text="Statement form").click()
    pg.get_by_role("option", name="Custom form…").click()
    idle(pg)
    custom = pg.get_by_label("Custom form: {word} and {context} once each; the label follows")
    custom.fill("According to {context}, the word {word} means")
    custom.press("Enter")
    idle(pg)
    pg.get_by_label("Word", exact=True).fill("dax")
    pg.get_by_label("Context", exact=True).fill("Mia")
    pg.get_by_label("Label", exact=True).fill("a glass of milk")
    pg.get_by_role("button", name="Write binding").click()
    expect(pg.get_by_text("Wrote 1 of 1 rows")).to_be_visible()
    expect(pg.get_by_text("According to Mia, the word dax means a glass of milk").first).to_be_visible()
    idle(pg)
    shot(pg, shots, "memory-custom-form")

    nav(pg, "Inspect")
    ask(pg, "Question: in game A, what is zorp? Answer:")
    expect(pg.get_by_test_id("stMetric").filter(has_text="Answer with memory")
           .get_by_test_id("stMetricValue")).to_have_text("␣guinea␣pig")
    ask(pg, "Question: according to Mia, what does dax mean? Answer:")
    expect(pg.get_by_test_id("stMetric").filter(has_text="Answer with memory")
           .get_by_test_id("stMetricValue")).to_have_text("␣a␣glass␣of␣milk")
    assert panels(pg)["generation"].startswith("␣a␣glass␣of␣milk")
    shot(pg, shots, "inspect-multi-token")


# Every state of the Inspect page's results while a new question is computed, noted by a MutationObserver in the
# page itself, so a stale answer is caught however fast or slow the machine is.
WATCH_JS = """() => { window.__seen = []; const note = () => {
    const box = [...document.querySelectorAll('[data-testid=stMetric]')].find(m => m.innerText.includes('Answer with memory'));
    const busy = [...document.querySelectorAll('[data-testid=stAlert]')].some(a => a.innerText.includes('Computing the answer'));
    window.__seen.push({busy, answer: box ? box.querySelector('[data-testid=stMetricValue]').innerText : null}); };
  new MutationObserver(note).observe(document.body, {subtree: true, childList: true, characterData: true}); }"""


def test_marks_cleared_and_no_stale_answer_while_computing(page):
    from playwright.sync_api import expect

    pg = page
    load_blicket_preset(pg)
    nav(pg, "Inspect")
    ask(pg, "Question: in game A, what is blicket? Answer:")
    answer = pg.get_by_test_id("stMetric").filter(has_text="Answer with memory").get_by_test_id("stMetricValue")
    expect(answer).to_have_text("␣red")

    # marks: the box stays open while it is filled, and a new question clears them
    pg.get_by_text("Mark the word and context yourself (optional)").click()
    word_mark = pg.get_by_label("Word in the question", exact=True)
    word_mark.fill("blicket")
    word_mark.press("Enter")
    idle(pg)
    context_mark = pg.get_by_label("Context in the question", exact=True)
    expect(context_mark).to_be_visible()  # still open after the word was marked
    context_mark.fill("game A")
    context_mark.press("Enter")
    idle(pg)
    expect(answer).to_have_text("␣red")

    pg.evaluate(WATCH_JS)
    ask(pg, "Question: in game B, what is blicket? Answer:")  # marks for game A would make this an error
    expect(answer).to_have_text("␣blue")
    expect(pg.get_by_text("Marks cleared for the new question")).to_be_visible()
    expect(word_mark).to_have_value("")
    expect(context_mark).to_have_value("")
    seen = pg.evaluate("window.__seen")
    busy_at = [i for i, s in enumerate(seen) if s["busy"]]
    assert all(s["answer"] is None for s in seen if s["busy"]), seen  # no answer beside "computing"
    if busy_at:  # once computing is shown, the old answer never comes back
        assert "␣red" not in [s["answer"] for s in seen[busy_at[0]:]], seen
    assert seen and seen[-1]["answer"] == "␣blue", seen[-3:]


def test_inputs_and_last_answer_survive_a_change_of_page(page):
    from playwright.sync_api import expect

    pg = page
    load_blicket_preset(pg)
    nav(pg, "Inspect")
    ask(pg, "What does blicket mean in game B?")
    tokens = pg.locator(".st-key-n_gen input[type=range]")  # the slider's own input (react-aria)
    tokens.focus()
    for _ in range(3):
        tokens.press("ArrowRight")
    idle(pg)
    kept_tokens = tokens.input_value()
    assert kept_tokens == "7", kept_tokens  # moved from its default of 4
    answer = pg.get_by_test_id("stMetric").filter(has_text="Answer with memory").get_by_test_id("stMetricValue")
    expect(answer).to_have_text("␣blue")

    nav(pg, "Memory")
    pg.get_by_label("Word", exact=True).fill("zorp")  # a form's fields reach the app when it is submitted
    pg.get_by_label("Context", exact=True).fill("level 1")
    pg.get_by_label("Label", exact=True).fill("cat")
    pg.get_by_role("button", name="Write binding").click()
    expect(pg.get_by_text("Wrote 1 of 1 rows")).to_be_visible()
    idle(pg)
    nav(pg, "Benchmark")
    words = pg.get_by_label("Words per experiment", exact=True)
    words.fill("3")
    words.press("Enter")
    idle(pg)

    nav(pg, "Inspect")
    expect(pg.get_by_label("Question", exact=True)).to_have_value("What does blicket mean in game B?")
    expect(tokens).to_have_value(kept_tokens)
    expect(answer).to_have_text("␣blue")  # the answer to the kept question, with the kept settings
    nav(pg, "Memory")
    expect(pg.get_by_label("Word", exact=True)).to_have_value("zorp")  # not the form's first blicket / game A
    expect(pg.get_by_label("Context", exact=True)).to_have_value("level 1")
    nav(pg, "Benchmark")
    expect(pg.get_by_label("Words per experiment", exact=True)).to_have_value("3")
    nav(pg, "Inspect")  # and once more after a question: the slider keeps its value through the next run
    ask(pg, "What does blicket mean in game A?")
    expect(answer).to_have_text("␣red")
    expect(tokens).to_have_value(kept_tokens)


# A memory file whose words, contexts and labels hold markdown, HTML and links (all allowed by the field
# checks, which refuse only braces and control characters): the app must show them as text.
CRAFTED = [("![x](http://198.51.100.7/x.png)", "[Click to verify your account](http://example.invalid)",
            ":red[**ALERT**]")]
CRAFTED_STATEMENT = ("In https://evil.example, <img src=x onerror=alert(1)> means www.evil.example",
                     "<img src=x onerror=alert(1)>", "https://evil.example", "www.evil.example")
# Links, images and requests that leave the app's own server; elements that render ALERT red or bold.
OUTSIDE_JS = """(origin) => ({
  links: [...document.querySelectorAll('a[href]')].map(a => a.href).filter(h => !h.startsWith(origin)),
  images: [...document.querySelectorAll('img[src], image, source[srcset]')]
      .map(i => i.src || i.getAttribute('href') || i.srcset || '').filter(s => !s.startsWith(origin)
      && !s.startsWith('data:') && !s.startsWith('blob:')),
  styled: [...document.querySelectorAll('body *')].filter(e => [...e.childNodes].some(n =>
      n.nodeType === 3 && n.textContent.includes('ALERT'))).filter(e => { const s = getComputedStyle(e);
      const [r, g, b] = s.color.match(/\\d+/g).map(Number);
      return parseInt(s.fontWeight) >= 600 || (r > 180 && g < 120 && b < 120)
          || e.closest('strong, b, em, .stMarkdownColoredText, .stMarkdownColoredBackground'); })
      .map(e => e.outerHTML.slice(0, 200)),
  text: document.body.innerText.replaceAll('\\u2060', '')})"""


@pytest.fixture(scope="module")
def crafted_file(tmp_path_factory):
    from fastmem import Lab

    lab = Lab.load("smollm2", device="cpu")
    bank = lab.new_memory()
    assert [r.status for r in lab.write(bank, CRAFTED)] != ["error"]
    assert lab.write_statement(bank, *CRAFTED_STATEMENT, "replace").status != "error"
    assert len(bank) == 2, [(e.word, e.context, e.label) for e in bank.entries]
    path = tmp_path_factory.mktemp("crafted") / "crafted.safetensors"
    path.write_bytes(lab.export_memory(bank))
    return path


def outside_of(pg, server, requests) -> dict:
    seen = pg.evaluate(OUTSIDE_JS, server)
    seen["requests"] = [u for u in requests if not u.startswith((server, "data:", "blob:"))]
    return seen


def test_a_crafted_memory_file_shows_its_markdown_as_text(page, server, crafted_file, shots):
    from playwright.sync_api import expect

    pg = page
    requests = []
    pg.context.on("request", lambda r: requests.append(r.url))
    nav(pg, "Memory")
    pg.locator(".st-key-upload_memory [data-testid=stFileUploaderDropzoneInput]").set_input_files(str(crafted_file))
    idle(pg)
    pg.get_by_role("button", name="Load this memory file").click()
    expect(pg.get_by_text("Loaded 2 entries")).to_be_visible()
    idle(pg)
    expect(pg.get_by_text("(2 on, 0 off)")).to_be_visible()  # the two entries, each with its switch
    seen = outside_of(pg, server, requests)
    assert (seen["links"], seen["images"], seen["requests"], seen["styled"]) == ([], [], [], []), seen
    switches = pg.locator(".st-key-entry_switches").inner_text().replace("\u2060", "")
    for word, context, label in CRAFTED + [CRAFTED_STATEMENT[1:]]:  # word · context → label, literally
        assert f"{word} · {context} → ␣{label.replace(' ', '␣')}" in switches, switches
    assert ":red[**ALERT**]" in seen["text"] and "Click to verify your account](http" in seen["text"]
    shot(pg, shots, "memory-crafted")

    nav(pg, "Inspect")  # its first question is about the first entry: the crafted word in the crafted context
    pg.locator(".st-key-gen_mem_box [data-testid=stCode]").wait_for()
    reason = pg.locator(".st-key-reason_box").inner_text().replace("\u2060", "")
    # whether or not it matched (the question puts a comma after the context), the reason quotes it as text
    assert CRAFTED[0][1] in reason and "'![x](http://198.51.100" in reason, reason
    seen = outside_of(pg, server, requests)
    assert (seen["links"], seen["images"], seen["requests"], seen["styled"]) == ([], [], [], []), seen
    assert ":red[**ALERT**]" in seen["text"], seen["text"][-2000:]
    shot(pg, shots, "inspect-crafted")
