"""Where the label ranks in the logit lens W_U v of its value, one step vs refined (the Inspect page's figure,
over many bindings): why the post's one-step value fails on a tied-embedding model.

    python scripts/value_ranks.py [--model smollm2] [--words 64] [--steps 1 8]
"""
import argparse
import statistics

from fastmem import Lab
from fastmem.eval.suite import bindings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--words", type=int, default=64)
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 8])
    args = ap.parse_args()
    lab = Lab.load(args.model)
    exp = lab.suite.experiments[0]
    binds = bindings(exp, lab.suite.split("test")[:args.words])
    memory = lab.new_memory()
    lab.write(memory, [(b.word, b.context, b.label) for b in binds], template=exp.write)
    ranks = [lab.demo.label_ranks(memory, i, args.steps) for i in range(len(memory))]
    print(f"{lab.lm.name}, {exp.name}, {len(memory)} bindings (test words); rank 1 = the label is W_U v's top token")
    print("| value steps | median rank | label first | label in top 10 |")
    print("|---|---|---|---|")
    for n in args.steps:
        got = [r[n] for r in ranks]
        print(f"| {n} | {statistics.median(got):,.0f} | {sum(r == 1 for r in got) / len(got):.3f} "
              f"| {sum(r <= 10 for r in got) / len(got):.3f} |")


if __name__ == "__main__":
    main()
