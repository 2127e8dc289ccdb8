"""``modelviz graph``: the data-flow probe, the module graph built from it, DOT, Graphviz, and
torchviz's autograd view; ``draw.py`` is the entry point.
"""
