"""``modelviz visdom``: a model pushed to a running Visdom server (push); what it shows (view)."""
