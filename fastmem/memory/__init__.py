"""The mechanism: prompts and keying, values, keys and modes, the memory and its file."""
