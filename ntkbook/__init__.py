"""ntkbook: the protocol of Loo et al. (NeurIPS 2022) as a tested, cached library for a
Jupyter Book.

Importing it points JAX's persistent compilation cache into the ntkbook cache folder
(:mod:`ntkbook.compilation`), so notebook kernels and jobs share compiled programs.
"""

from ntkbook import compilation as _compilation
from ntkbook.store import default_root as _default_root

_compilation.enable_persistent_cache(_default_root())
