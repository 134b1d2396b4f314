"""What the implicit-backed models share: a clear error when implicit is missing, and one BLAS thread.

implicit parallelises its solvers itself and warns (rightly: it runs several times slower) when
OpenBLAS also spawns threads inside each of them, so its calls run under a one-thread BLAS limit.
"""

from __future__ import annotations

import contextlib



def import_implicit():
    try:
        import implicit.cpu.als
        import implicit.cpu.bpr
    except ImportError as exc:
        raise ImportError(f"this model needs the implicit package ({exc}); pip install implicit") from None
    return implicit


@contextlib.contextmanager
def single_threaded_blas():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
