"""Megalodon (Ma et al. 2024): complex EMA, timestep / sequence norms, normalised attention, the LRA
encoder and the causal LM, named as the official code (imports only torch and sibling model modules)."""

from .attention import RotaryEmbedding, SimpleRelativePositionalBias, normalize_qk, normalized_attention
from .cema import MultiHeadComplexEMA
from .encoder import MegalodonEncoder
from .layer import MegalodonAttention, MegalodonBlock, MegalodonFeedForward
from .lm import MegalodonLM, MegalodonLMAttention, MegalodonLMBlock, MegalodonLMFeedForward
from .norm import LayerNorm, RMSNorm, SequenceGroupNorm, TimestepNorm

__all__ = [
    "LayerNorm",
    "MegalodonAttention",
    "MegalodonBlock",
    "MegalodonEncoder",
    "MegalodonFeedForward",
    "MegalodonLM",
    "MegalodonLMAttention",
    "MegalodonLMBlock",
    "MegalodonLMFeedForward",
    "MultiHeadComplexEMA",
    "RMSNorm",
    "RotaryEmbedding",
    "SequenceGroupNorm",
    "SimpleRelativePositionalBias",
    "TimestepNorm",
    "normalize_qk",
    "normalized_attention",
]
