"""Evaluation: baseline forecasters and the accuracy report that compares the twin with them.

- ``baselines``: persistence, ARX, subspace and a direct GRU, fitted on the same frames.
- ``report``: forecast accuracy per horizon step against the baselines, as JSON, Markdown, PNG.
"""
