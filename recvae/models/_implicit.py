"""What the implicit-backed models share: a clear error when implicit is missing, one BLAS thread, and a
solver that diverges named as such.

implicit parallelises its solvers itself and warns (rightly: it runs several times slower) when
OpenBLAS also spawns threads inside each of them, so its calls run under a one-thread BLAS limit.
"""

from __future__ import annotations

import contextlib

from recvae.errors import TrainingDivergedError



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


def fit_solver(solver, user_items, model_name: str, setting: str) -> None:
    """``solver.fit`` under a one-thread BLAS; implicit's NaN check (a learning rate or weight too high) is
    raised as ``TrainingDivergedError`` naming the model and its setting."""
    from implicit.recommender_base import ModelFitError

    with single_threaded_blas():
        try:
            solver.fit(user_items, show_progress=False)
        except ModelFitError as exc:
            raise TrainingDivergedError(f"{model_name} diverged at {setting} ({exc}): lower its learning rate or "
                                        "confidence weight, or raise its regularization") from None
