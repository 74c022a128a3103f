"""Builds jadam's optional fused-Adam CPU kernel (see jadam/_fused.py).

Everything else is declared in pyproject.toml. The kernel is a plain C++17 shared library
registered with XLA through `jax.ffi` at run time; it needs only the XLA FFI headers vendored
in jadam/csrc/xla. When no working C++ compiler is found the build prints a warning and the
package installs without it: `fused=True` then falls back to the pure-JAX path.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

_GCC_LIKE_FLAGS = [
    "-std=c++17",
    "-O3",
    # Exact IEEE arithmetic, as XLA's CPU backend computes it: no FMA contraction, no
    # fast-math. (errno and trap semantics are irrelevant here and block vectorization.)
    "-ffp-contract=off",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-isystem",  # the vendored XLA headers, without their warnings
    "jadam/csrc",
]
_MSVC_FLAGS = ["/std:c++17", "/O2", "/fp:precise", "/Ijadam/csrc"]


class BuildFusedKernel(build_ext):
    """build_ext with per-compiler flags; a failed build is a warning, not an error."""

    def build_extensions(self) -> None:
        flags = _MSVC_FLAGS if self.compiler.compiler_type == "msvc" else _GCC_LIKE_FLAGS
        for ext in self.extensions:
            ext.extra_compile_args = list(flags)
        super().build_extensions()

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as error:  # no compiler, unsupported flags, ...
            print(
                f"WARNING: jadam's fused kernel was not built ({error}); "
                "fused=True will use the pure-JAX path."
            )

    def get_export_symbols(self, ext: Extension) -> list[str]:
        return ["JadamFusedAdam"]  # a plain library loaded with ctypes, not a Python module


setup(
    ext_modules=[
        Extension(
            "jadam._fused_adam_kernel",
            sources=["jadam/csrc/fused_adam.cc"],
            language="c++",
            optional=True,
        )
    ],
    cmdclass={"build_ext": BuildFusedKernel},
)
