"""Layer 2, the bridge to Hugging Face: prompts of PEFT models and adapter folders, models and their dtype, the Hub."""
