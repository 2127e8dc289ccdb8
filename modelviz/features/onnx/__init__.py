"""``modelviz export-onnx`` and ``netron``: export, the diagnosis of a failed export, the checks
and parity, the result and its table, and the server that shows a file in Netron.
"""
