"""Layer 4, the engine: prompt tuning on ``transformers.Trainer``, scoring, evaluation, run folders, metrics."""
