"""The pipeline every command shares: parse what the user typed (specs), load the model
(loading, zoo, weights, untrusted), build its inputs (inputs, image_input), prepare them on a
device (session, devices), run one instrumented pass (engine, flops) and record it (records).

Nothing here imports a feature or the facade; features import from here.
"""
