"""Regenerate the built-in suite files in fastmem/data/ (default, multi-token labels, phrasings, nonce words
to colours, real words with new meanings, context series with words that hold digits).

The multi-token suite measures its labels' token counts with the offline model's tokenizer (SmolLM2);
tests/test_unit_stats_suite.py checks that both shipped files are what this script writes.

    python scripts/make_suites.py
"""
from fastmem.model.lm import FrozenLM
from fastmem.eval.suite import make_builtin_suite, suite_json
from fastmem.eval.suite_library import (make_multitoken_suite, make_nonce_colour_suite, make_phrasings_suite,
                                   make_real_words_suite, make_series_suite, suite_path)


def main() -> None:
    base = make_builtin_suite()
    suites = {"builtin": base, "multitoken": make_multitoken_suite(base, FrozenLM.load("smollm2", "cpu").tokenizer),
              "phrasings": make_phrasings_suite(base), "nonce-colour": make_nonce_colour_suite(base),
              "real-words": make_real_words_suite(base), "series": make_series_suite(base)}
    for name, suite in suites.items():
        path = suite_path(name)
        with open(str(path), "w", encoding="utf-8") as f:
            f.write(suite_json(suite))
        print(f"{name}: {len(suite.words)} words -> {path}")


if __name__ == "__main__":
    main()
