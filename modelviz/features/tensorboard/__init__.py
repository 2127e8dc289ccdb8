"""``modelviz tensorboard``: a TensorBoard run from one pass (log) and what it wrote (view).
"""
