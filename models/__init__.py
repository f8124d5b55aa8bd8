"""The training side of rvqstream: the corpus, tokenizer training, model training and the ONNX export
of the shipped bundle. Needs the ``train`` extra (torch); not shipped in the wheel, which holds only
the runtime package ``rvqstream``."""
