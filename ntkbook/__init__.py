"""ntkbook: the protocol of Loo et al. (NeurIPS 2022) as a tested, cached library for a
Jupyter Book.

Importing the package imports nothing heavy (the command line's help needs none of it); the
modules that compute with JAX point its persistent compilation cache into the ntkbook cache
folder (:mod:`ntkbook.compilation`), so notebook kernels and jobs share compiled programs.
"""
