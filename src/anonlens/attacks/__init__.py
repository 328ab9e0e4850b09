"""Reconstruction attacks: what a shared gradient gives away (DLG, Inverting Gradients).

``victims`` (the classifiers attacked), ``objectives`` (the client's gradient, the distances,
the prior, iDLG), ``defences`` (noise, pruning), ``inversion`` (the optimisation and the
registered attacks with their published presets), ``run`` (attack labelled images and write the
SemSim folder layout with a record per image). Needs the ``learn`` extra (PyTorch).

>>> from anonlens.attacks.inversion import ATTACKS
>>> ATTACKS.names()
['dlg', 'inverting-gradients']
"""
