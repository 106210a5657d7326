"""Layer 5, composing vectors: merge methods, λ search, source selection, the one-call start, baselines, the zoo."""
