"""Small models for the tests, the README and the demo.

Use them as MODEL from the repository root, e.g. ``sample_models.seeds:Net`` or
``sample_models/llama.py:llama_7b``.
"""
