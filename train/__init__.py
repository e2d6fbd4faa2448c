"""sustain-suite training: TRL SFT and GRPO entry points, rewards, the per-checkpoint eval callback, tiny offline models."""
