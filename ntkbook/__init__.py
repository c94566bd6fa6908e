"""ntkbook: the protocol of Loo et al. (NeurIPS 2022) as a tested, cached library for a Jupyter Book."""
