"""Baselines the paper compares task prompt vectors with: SPoT and ATTEMPT."""

from tpv.compose.baselines.attempt import Attempt, train_attempt
from tpv.compose.baselines.spot import mix_tasks

__all__ = ["Attempt", "mix_tasks", "train_attempt"]
