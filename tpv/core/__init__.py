"""Layer 1, the core: task prompt vectors, origins, cosine similarity and their files.

Imports torch, numpy and safetensors only; holds no model and knows nothing of PEFT or the Hub.
"""
