"""Dense Cholesky kernels (LAPACK's ``dpotrf``, BLAS's ``dtrsm`` and ``dsyrk``) callable from
jitted code, taken from SciPy's ``cython_lapack`` / ``cython_blas``.

Each is registered with LLVM under a name of its own and declared to numba as an external
function, so that jitted callers can be cached (a ctypes pointer in their code could not).
Arguments follow the Fortran convention: every one a pointer, matrices column-major.
"""
from __future__ import annotations

import llvmlite.binding as llvm
from numba import types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic


def _external(module: str, name: str, arguments: int) -> types.ExternalFunction:
    symbol = f"resgraph_{name}"
    llvm.add_symbol(symbol, get_cython_function_address(f"scipy.linalg.cython_{module}", name))
    return types.ExternalFunction(symbol, types.void(*([types.voidptr] * arguments)))


#: dpotrf(uplo, n, a, lda, info)
dpotrf = _external("lapack", "dpotrf", 5)
#: dtrsm(side, uplo, transa, diag, m, n, alpha, a, lda, b, ldb)
dtrsm = _external("blas", "dtrsm", 11)
#: dsyrk(uplo, trans, n, k, alpha, a, lda, beta, c, ldc)
dsyrk = _external("blas", "dsyrk", 10)


@intrinsic
def address(typingctx, array):
    """The address of ``array``'s first element, as a ``void *``."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(context.make_array(array)(context, builder, args[0]).data, cgutils.voidptr_t)
    return types.voidptr(array), codegen
