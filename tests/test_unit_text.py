"""fastmem.demo.text.md: user text escaped for Streamlit markdown reads as typed and builds nothing.
What Streamlit's own renderer does with it is checked in the browser (tests/test_e2e_browser.py)."""
import html
import re
import string

import pytest
from markdown_it import MarkdownIt

from fastmem.demo.text import WORD_JOINER, md, md_code, plain, shown

CRAFTED = ["![x](http://198.51.100.7/x.png)", "[Click to verify your account](http://example.invalid)",
           "https://evil.example", "HTTP://evil.example", "www.evil.example", "WWW.evil.example",
           "mail a@evil.example", "<https://evil.example>", ":red[**ALERT**]", ":blue-background[bg]",
           ":material/home: icon", ":smile: :streamlit: :+1:", "**bold** __b__ _it_ *it* ~~del~~", "`code` ``x``",
           "<b>html</b> <img src=x onerror=alert(1)>", "$x^2$ and $$y$$", "# heading", "## h2", "- item",
           "+ item", "* item", "1. one", "2) two", "> quote", "| a | b |\n|---|---|\n| 1 | 2 |",
           "back\\slash \\* \\", "a -> b <- c <-> d -- e >= f <= g ~= h", "&amp; &lt; &#58;", "[ref]: http://x.example",
           "x\n# h2\n    code\n\n---", "line  \nbreak", "tab\there", "#notaheading", "[a]: <b>", "a_b_c", "2*3*4"]


def commonmark(text: str) -> str:
    return MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(text)


@pytest.mark.parametrize("text", CRAFTED)
def test_escaped_text_renders_as_one_plain_paragraph_of_the_same_text(text):
    rendered = commonmark(md(text))
    assert re.fullmatch(r"<p>[^<>]*</p>\n", rendered), rendered  # no link, image, emphasis, code, html, block
    said = shown(html.unescape(rendered[3:-5]))
    assert said == re.sub(r"\r\n|[\r\n\t]", " ", text)  # the text as typed (line breaks read as spaces)


@pytest.mark.parametrize("text", CRAFTED)
def test_every_punctuation_mark_is_escaped_and_streamlits_text_rewrites_are_broken(text):
    out = md(text)
    unescaped = re.sub(r"\\.", "", out)
    assert not any(ch in string.punctuation for ch in unescaped), out
    assert "\n" not in out and "\t" not in out
    plain = out.replace("\\", "")
    # what Streamlit rewrites after the markdown is parsed: shortcodes, material icons, arrows, GFM autolinks
    assert not re.search(r":[\w+\-/]", plain), plain
    assert not re.search(r"(^|\s)(<->|->|<-|--|>=|<=|~=)(\s|$)", plain), plain
    assert not re.search(r"(?i)www\.|@\w", plain), plain


def test_ordinary_text_is_unchanged():
    for text in ("blicket", "guinea pig", "game A", "a glass of milk", "level 3", "Über café"):
        assert md(text) == text
    assert md("game B.") == r"game B\."  # escaped, and read as "game B."
    assert WORD_JOINER not in md("12 o'clock, a-b, x=y")


def test_not_text_is_shown_as_its_string():
    assert md(3) == "3" and md(None) == "None"


@pytest.mark.parametrize("text", CRAFTED + ["a`b", "`", "x``y`", "``"])
def test_a_code_span_holds_the_text_and_nothing_else(text):
    rendered = commonmark("before " + md_code(text) + " after")
    inner = re.fullmatch(r"<p>before <code>([^<>]*)</code> after</p>\n", rendered)
    assert inner, rendered
    assert shown(html.unescape(inner.group(1))) == re.sub(r"\r\n|[\r\n\t]", " ", text)


@pytest.mark.parametrize("text", CRAFTED)
def test_plain_undoes_md(text):
    assert plain(md(text)) == re.sub(r"\r\n|[\r\n\t]", " ", text)
