"""The frozen model: loading, architectures, its states, greedy decoding."""
