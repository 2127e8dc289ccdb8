"""``modelviz summary``: the layer table (``summary.py``) and its renderers: the Rich table,
torchsummary's classic text, Markdown, JSON and CSV.
"""
