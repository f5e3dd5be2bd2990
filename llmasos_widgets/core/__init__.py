"""Model access: the loaded model and its architecture adapter, the Trace, hooks and the model lock.

Also the argument checks, result files and the sample corpus that analyses and views share.
"""
