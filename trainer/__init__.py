"""CR-FIQA trainer: data preparation, degradations, training, export, evaluation.

Run as ``python -m trainer {prepare,train,export,evaluate}``. Needs the ``train`` extra
(PyTorch); the serving package ``stream_gate`` never imports this.
"""
