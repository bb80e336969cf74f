"""Training engines behind one interface (:class:`~alp_train.engines.base.Engine`).

``single`` (one process), ``ddp`` (torch DistributedDataParallel) and ``deepspeed``
(DeepSpeed's own engine, ZeRO 1-3) register through the ``alp_engines`` hook like a
third-party engine would; ``train.engine: {name: ..., ...}`` chooses one.
"""
