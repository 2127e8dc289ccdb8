"""``modelviz diff``: two summaries, memory plans or profiles compared (compare, memory,
profile; files tells which a file is), as a table or Markdown (view).
"""
