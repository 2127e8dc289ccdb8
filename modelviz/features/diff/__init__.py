"""``modelviz diff``: two summaries compared (compare), as a table or Markdown (view).
"""
