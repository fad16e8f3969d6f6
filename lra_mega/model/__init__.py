"""Mega model: damped EMA, gated attention, blocks, encoders and heads (imports only torch)."""

from .attention import ATTENTION_FUNCTIONS, attend, laplace, relu2
from .ema import MultiDimDampedEMA
from .encoder import MegaEncoder, RealNumberEmbedding, TokenEmbedding
from .functional import build, build_mega_block, output_size, recommended_defaults
from .heads import POOLINGS, ClassificationHead, RetrievalHead, pool
from .layer import MegaBlock, MovingAverageGatedAttention, NormalizedFeedForward
from .lm import Mega, MegaLayer
from .norm import NORMS, SequenceNorm
from .position import REL_POS

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
    "build",
    "build_mega_block",
    "laplace",
    "output_size",
    "pool",
    "recommended_defaults",
    "relu2",
]
