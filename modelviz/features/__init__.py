"""One package per thing modelviz shows: each takes a ``core.session.Prepared`` (or a
``Trace`` of one), runs its probe in the pass or works from the records, and has its own views.

Named ``features`` so that ``modelviz.summary`` stays the API function: a package
``modelviz.summary`` would replace it as an attribute once imported.
"""
