"""Build of the xmem wheel: the package, its compiled module (Cython) and libxmem.so. Metadata: pyproject.toml.

libxmem.so comes from $XMEM_NATIVE_LIB, else ../artifacts/native/libxmem.so (what scripts/build-native.sh
publishes); it is copied into the built package, never into the source tree.
"""

import os
import shutil

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))

# The wheel's platform tag (PEP 600): glibc 2.34 is the newest symbol version libxmem.so needs (NativeAOT's runtime:
# pthread_*, dl* moved into libc in 2.34; the extension module needs 2.17), and both link only libc, libm and the
# dynamic loader, which every manylinux policy allows. tests/python/test_packaging.py checks the installed
# libraries against this tag, so a build that needs a newer glibc fails there instead of installing where it cannot
# load.
PLATFORM_TAG = "manylinux_2_34_x86_64"


def native_library():
    path = os.environ.get("XMEM_NATIVE_LIB") or os.path.join(HERE, "..", "artifacts", "native", "libxmem.so")
    if not os.path.isfile(path):
        raise SystemExit("xmem: %s is missing. Run scripts/build-native.sh (it publishes libxmem.so and builds the "
                         "wheel), or point XMEM_NATIVE_LIB at a libxmem.so." % os.path.normpath(path))
    return path


class BuildPyWithLibrary(build_py):
    """Puts libxmem.so into the built package beside the Python modules."""

    def run(self):
        super().run()
        lib = native_library()
        dest = os.path.join(self.build_lib, "xmem", "libxmem.so")
        self.mkpath(os.path.dirname(dest))
        shutil.copyfile(lib, dest)
        os.chmod(dest, 0o755)


def extensions():
    try:
        from Cython.Build import cythonize
    except ImportError:
        raise SystemExit("xmem: building the compiled module needs Cython (Debian: apt-get install cython3; "
                         "pip: pip install cython), and --no-build-isolation to use it offline.")
    ext = Extension(
        "xmem._xmem",
        ["xmem/_xmem.pyx"],
        include_dirs=[os.path.join(HERE, "..", "include")],  # xmem.h: the prototypes the calls are checked against
        # No link against libxmem.so: the module calls the functions the ctypes loader found (XMEM_LIBRARY works).
        extra_compile_args=["-O2", "-g0", "-Wall", "-Wno-unused-function", "-Werror=incompatible-pointer-types"],
        extra_link_args=["-s"],
    )
    return cythonize([ext], language_level=3, quiet=True, build_dir="build/cython")


setup(ext_modules=extensions(), cmdclass={"build_py": BuildPyWithLibrary},
      options={"bdist_wheel": {"plat_name": PLATFORM_TAG}})
