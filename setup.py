"""Build the optional C extension beside the pure-Python package (issue 23).

Everything else about the package is in pyproject.toml. The extension
(``gpumlp.fastpath._cblocks``) is ``optional``: where no C compiler works,
``pip install`` goes on without it and gpumlp runs its NumPy path instead
(:mod:`gpumlp.fastpath.cblocks`).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "gpumlp.fastpath._cblocks",
            sources=["gpumlp/fastpath/_cblocks.c"],
            depends=["gpumlp/fastpath/_cblocks_kernel.h"],
            # -O3 for the vectoriser; -ffp-contract=fast for fused multiply-adds
            # (-std=c11 turns them off); -fno-trapping-math so that it may compute both
            # sides of a select (FP exception flags are never read); no
            # -ffast-math: NaN and infinity must
            # propagate (divergence is detected from them), and sums keep
            # their order. The instruction sets are chosen inside the source.
            extra_compile_args=["-O3", "-std=c11", "-ffp-contract=fast", "-fno-trapping-math"],
            optional=True,
        )
    ]
)
