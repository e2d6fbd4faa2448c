"""sustain-suite: SustainScore (arXiv 2601.22047) on every checkpoint of SFT and GRPO runs.

One import root: `sustain.eval` (the repo's eval/ folder) runs on any model and never imports
`sustain.train` (the repo's train/ folder), which holds the TRL entry points and imports eval.
"""
