"""Mega (Moving Average Equipped Gated Attention) on the Long Range Arena."""

__version__ = "0.1.0"
