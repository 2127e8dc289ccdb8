"""``modelviz activations``: which layers (select), their statistics from the pass (stats,
measure), their pictures (pictures) and the table (view).
"""
