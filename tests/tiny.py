"""Tiny random models and a word-level tokenizer, built in the test: no network, no files."""
from __future__ import annotations

import re

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM,
                          PreTrainedTokenizerFast)

from fastmem.model.lm import FrozenLM
from fastmem.eval.suite import LABELS, load_suite

BASE_WORDS = ("In game A B C D , blicket dax wug toma zib means red blue green cat dog fish Question : in what is "
              "? Answer the north south lab of capital France color sky").split()


def suite_texts() -> list[str]:
    suite = load_suite()
    out = [w.word for w in suite.words] + suite.unrelated + suite.train_unrelated + list(LABELS)
    for e in suite.experiments:
        out += [e.write, e.read] + e.contexts
    return out + [suite.plain]


def word_tokenizer(extra_texts=()) -> PreTrainedTokenizerFast:
    words = list(dict.fromkeys(["<unk>", "<pad>", "<eos>"] + BASE_WORDS
                               + [t for text in list(extra_texts) + suite_texts()
                                  for t in re.findall(r"\w+|[^\w\s]+", text)]))
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")


def tiny_neox(tokenizer, seed: int = 0, hidden: int = 32, layers: int = 4) -> FrozenLM:
    torch.manual_seed(seed)
    config = GPTNeoXConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                           num_attention_heads=4, intermediate_size=hidden * 2, max_position_embeddings=128,
                           tie_word_embeddings=False, eos_token_id=2, pad_token_id=1, bos_token_id=2)
    return FrozenLM(GPTNeoXForCausalLM(config), tokenizer, f"tiny-neox-{seed}")


def tiny_llama(tokenizer, seed: int = 0, hidden: int = 32, layers: int = 4) -> FrozenLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, intermediate_size=hidden * 2,
                         max_position_embeddings=128, tie_word_embeddings=True, eos_token_id=2, pad_token_id=1,
                         bos_token_id=2)
    return FrozenLM(LlamaForCausalLM(config), tokenizer, f"tiny-llama-{seed}")
