"""``modelviz profile``: time per module beside the engine's FLOPs and bytes (measure), the
device's peaks for the roofline (peaks), the table and its formats (view), and a Chrome /
Perfetto trace of the module calls (trace).
"""
