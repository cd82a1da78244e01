"""Experiments that compose the whole library: the demo (pretrain, SimXIR, paired evaluation) and
the bridging paper's Table 3 ablation (trains one model per row)."""
