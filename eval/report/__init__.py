"""Reports derived from run folders only: console tables, curves, plots, markdown, W&B."""
