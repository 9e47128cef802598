"""Pretraining recipes that produce the zoo's checkpoints (InfoAlign for molecules).

`python -m train.infoalign --help` lists the commands: build the context graph, train
(under `torchrun` for DDP), publish the model folder to the Hugging Face Hub.
"""
