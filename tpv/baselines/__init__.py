"""Baselines the paper compares task prompt vectors with: SPoT and ATTEMPT."""

from .attempt import Attempt, train_attempt
from .spot import mix_tasks

__all__ = ["Attempt", "mix_tasks", "train_attempt"]
