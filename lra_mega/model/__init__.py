"""The models: Mega (damped EMA, gated attention, blocks, encoders, heads, the causal LM) and, in
``megalodon/``, Megalodon (complex EMA, timestep and sequence norms, normalised attention, its
encoder and LM), with ``kernels/`` (the fused and reference attention and gating paths and their
one-time self-check) as its leaf. It imports only torch and itself: never ``data`` or the layers
above (tests/test_layers.py checks the imports)."""

from .attention import ATTENTION_FUNCTIONS, attend, laplace, relu2
from .ema import MultiDimDampedEMA
from .encoder import MegaEncoder, RealNumberEmbedding, TokenEmbedding
from .functional import build, build_mega_block, output_size, recommended_defaults
from .heads import POOLINGS, ClassificationHead, RetrievalHead, pool
from .kernels.selfcheck import report as attention_report
from .kernels.selfcheck import start_record as start_attention_record
from .layer import MegaBlock, MovingAverageGatedAttention, NormalizedFeedForward
from .lm import Mega, MegaLayer
from .norm import NORMS, SequenceNorm
from .position import REL_POS
from .megalodon import (
    MegalodonAttention,
    MegalodonBlock,
    MegalodonEncoder,
    MegalodonFeedForward,
    MegalodonLM,
    MultiHeadComplexEMA,
    SequenceGroupNorm,
    TimestepNorm,
)

__all__ = [
    "ATTENTION_FUNCTIONS",
    "NORMS",
    "POOLINGS",
    "REL_POS",
    "ClassificationHead",
    "Mega",
    "MegaBlock",
    "MegaEncoder",
    "MegaLayer",
    "MovingAverageGatedAttention",
    "MultiDimDampedEMA",
    "NormalizedFeedForward",
    "RealNumberEmbedding",
    "RetrievalHead",
    "SequenceNorm",
    "TokenEmbedding",
    "attend",
    "attention_report",
    "build",
    "build_mega_block",
    "laplace",
    "output_size",
    "pool",
    "recommended_defaults",
    "relu2",
    "start_attention_record",
    "MegalodonAttention",
    "MegalodonBlock",
    "MegalodonEncoder",
    "MegalodonFeedForward",
    "MegalodonLM",
    "MultiHeadComplexEMA",
    "SequenceGroupNorm",
    "TimestepNorm",
]
