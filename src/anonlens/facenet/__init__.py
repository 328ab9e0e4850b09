"""dlib's face-identity network in PyTorch: the weights file reader (:mod:`.dlib_format`), the
network (:mod:`.network`) and the differentiable alignment for gradients (:mod:`.align`). Used by
:class:`anonlens.identity.DlibFaceEmbedder` (``engine="torch"``) and EDI's gradient oracle."""
