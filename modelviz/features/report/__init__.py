"""``modelviz report``: every part from one pass into one folder (build), typed (parts), as a page
(html) and a table (view).
"""
