"""sustain-suite eval: SustainScore (arXiv 2601.22047) on any model, checkpoint or endpoint.

Floors, imports only point down:
  ground   errors, records, generators/, sandbox
  above    tasks/, constraints/, scoring, failures, attention/, report/
  above    pipeline
  top      cli
"""
