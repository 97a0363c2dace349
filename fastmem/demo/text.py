"""User text (words, contexts, labels, statements, questions, reasons, file and model names) made safe for
Streamlit markdown: shown as typed, never as links, images, colours, icons, emoji, HTML or LaTeX."""
from __future__ import annotations

import re
import string

WORD_JOINER = "\u2060"  # invisible, and no line break: what is shown reads as typed
# Streamlit turns these into arrows and dashes in the text it has already parsed, where a backslash is gone.
_ARROWS = re.compile(r"(?<=[-<>~])(?=[->=])")
# `:smile:`, `:streamlit:` and `:material/...:` are replaced in parsed text too (and `:material/` in the raw
# source): an invisible joiner after the colon keeps them apart.
_SHORTCODE = re.compile(r":(?=[\w+\-/])")
# GFM links `www.x` and `a@b.c` in parsed text as well: a joiner inside `www.` and after `@` breaks them.
_AUTOLINK = re.compile(r"(?i)(?<=www)(?=\.)|(?<=@)")
_PUNCTUATION = re.compile("([" + re.escape(string.punctuation) + "])")  # CommonMark's escapable characters
_LINE_BREAKS = re.compile(r"\r\n|[\r\n\t\f\v]")


def md(text) -> str:
    """`text` escaped for Streamlit markdown (st.markdown, captions, alerts, widget, tab, expander and metric
    labels): every ASCII punctuation mark is backslash-escaped (links, images, autolinks, emphasis, code,
    HTML, `$`, headings, lists, tables, `:color[...]` directives), line breaks become spaces (no block can
    start), and a word joiner breaks the patterns Streamlit rewrites after parsing. What a reader sees is
    the text itself; only `md` output may be concatenated into markdown."""
    text = _LINE_BREAKS.sub(" ", str(text))
    text = _ARROWS.sub(WORD_JOINER, text)
    text = _SHORTCODE.sub(":" + WORD_JOINER, text)
    text = _AUTOLINK.sub(WORD_JOINER, text)
    return _PUNCTUATION.sub(r"\\\1", text)


def md_code(text) -> str:
    """`text` as an inline code span: a fence longer than any run of backticks in it, so it cannot close
    early (nothing inside a code span is markdown; only `:material/` is rewritten before parsing)."""
    text = _LINE_BREAKS.sub(" ", str(text)).replace(":material/", ":" + WORD_JOINER + "material/")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""  # CommonMark drops one space each side
    return f"{fence}{pad}{text}{pad}{fence}"


def plain(escaped: str) -> str:
    """The text `md` escaped, back (line breaks read as spaces): what a reader sees, for tests and checks."""
    return re.sub(r"\\(.)", r"\1", escaped).replace(WORD_JOINER, "")


def shown(rendered: str) -> str:
    """What a reader of `md` output reads, for tests: the rendered text without the invisible joiners."""
    return rendered.replace(WORD_JOINER, "")
