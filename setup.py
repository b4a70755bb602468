"""The optional native fast path (gateway/media/_fastpath.c): built when a C compiler and Python's headers are
there (scripts/setup.sh installs them), skipped with a warning otherwise; the relay then forwards in Python
(gateway/media/fastpath.py says which path runs, once, at start). Everything else is in pyproject.toml."""

import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # no compiler, no Python headers: the pure-Python path is used
            print(f"WARNING: the native fast path was not built ({exc}); packets are forwarded in Python")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            if ext.name == "bench._blaster":
                print(f"WARNING: bench/_blaster.c was not built ({exc}): bench.run --generator blaster is unavailable")
            else:
                print(f"WARNING: the native fast path was not built ({exc}); packets are forwarded in Python")


# The benchmark's load generator (bench/blaster.py, `bench.run --generator blaster`): built in place for a checkout
# (pip install -e ., scripts/setup.sh), never shipped: not in a wheel or sdist (bench is no package of them; a
# wheel built from a checkout would otherwise put a stray bench/_blaster*.so into site-packages).
SHIPPING = any(command in sys.argv for command in ("bdist_wheel", "sdist", "bdist"))
BENCH = [Extension("bench._blaster", ["bench/_blaster.c"], optional=True, extra_compile_args=["-O2"])] \
    if not SHIPPING and (Path(__file__).resolve().parent / "bench" / "_blaster.c").exists() else []

setup(
    ext_modules=[Extension("gateway.media._fastpath", ["gateway/media/_fastpath.c"], optional=True,
                           extra_compile_args=["-O2"])] + BENCH,
    cmdclass={"build_ext": OptionalBuildExt},
)
