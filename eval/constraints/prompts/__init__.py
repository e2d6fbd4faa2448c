"""Prompt templates (string.Template files) for the LLM-based soft constraints; shipped as package data."""
