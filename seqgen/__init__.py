"""seqgen: train character-level sequence models on your own text or tunes, and sample from them."""

__version__ = "0.1.0"
