"""The installed package: where it loads the library from, XMEM_LIBRARY, the ImportError that says what to do."""

import os
import shutil
import subprocess
import sys

import pytest

import xmem
from conftest import REPO_ROOT


def run_python(code, env_extra=None, cwd=None):
    env = dict(os.environ)
    env.pop("XMEM_LIBRARY", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env, cwd=cwd)


def test_package_ships_the_library_and_type_information():
    here = os.path.dirname(xmem.__file__)
    assert os.path.isfile(os.path.join(here, "libxmem.so"))
    assert os.path.isfile(os.path.join(here, "py.typed"))
    if "XMEM_LIBRARY" not in os.environ:
        assert os.path.samefile(xmem.library_path, os.path.join(here, "libxmem.so"))
    assert xmem.__version__ == "0.1.0"


@pytest.mark.skipif(os.environ.get("XMEM_EXPECT_INSTALLED") != "1", reason="only meaningful against the installed wheel")
def test_imported_from_the_installed_wheel_not_the_source_tree():
    where = os.path.realpath(xmem.__file__)
    assert not where.startswith(os.path.join(REPO_ROOT, "python") + os.sep)
    assert "site-packages" in where


@pytest.mark.skipif(os.environ.get("XMEM_EXPECT_INSTALLED") != "1", reason="only meaningful against the installed wheel")
def test_wheel_metadata_is_complete_under_the_distribution_name_xmem_shm():
    from importlib import metadata
    md = metadata.metadata("xmem-shm")  # the name "xmem" on the public index belongs to another project
    assert md["Name"] == "xmem-shm" and md["Version"] == xmem.__version__
    assert "shared-memory" in md["Summary"]
    assert md["Requires-Python"] == ">=3.8"
    assert md["License"] == "MIT"
    assert md["Description-Content-Type"] == "text/markdown"
    assert md.get_payload().startswith("# xmem for Python")  # python/README.md as the long description
    classifiers = md.get_all("Classifier")
    assert "License :: OSI Approved :: MIT License" in classifiers and "Typing :: Typed" in classifiers
    urls = dict(u.split(", ", 1) for u in md.get_all("Project-URL"))
    assert set(urls) >= {"Homepage", "Source", "Issues"}
    assert metadata.files("xmem-shm") and any(str(f) == "xmem/__init__.py" for f in metadata.files("xmem-shm"))
    shown = subprocess.run([sys.executable, "-m", "pip", "show", "xmem-shm"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "Name: xmem-shm" in shown.stdout, shown.stderr


def test_public_api_is_annotated_and_documented():
    for obj in (xmem.BufferPool, xmem.BufferGuard, xmem.BufferPool.acquire_cpu, xmem.BufferPool.get,
                xmem.BufferGuard.numpy, xmem.BufferGuard.forget, xmem.BufferPool.open):
        assert obj.__doc__ and len(obj.__doc__) > 20
    assert "return" in xmem.BufferPool.open.__annotations__
    # The compiled acquire_cpu has no __annotations__ (a method descriptor): its text signature comes from the
    # annotated Python definition, which the ctypes implementation runs.
    import inspect
    params = list(inspect.signature(xmem.BufferPool.acquire_cpu).parameters)
    assert params == ["self", "size", "timeout", "shape", "dtype", "strides", "seq", "content_type", "producer"]
    if xmem.implementation == "ctypes":
        assert "return" in xmem.BufferPool.acquire_cpu.__annotations__


def test_xmem_library_points_at_another_build(tmp_path):
    copy = tmp_path / "libxmem-other.so"
    shutil.copy(xmem.library_path, copy)
    res = run_python("import xmem; print(xmem.library_path)", {"XMEM_LIBRARY": str(copy)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(copy)


@pytest.mark.parametrize("what", ["missing", "not-a-library"])
def test_bad_xmem_library_is_an_import_error_that_says_what_to_do(tmp_path, what):
    path = tmp_path / "libxmem.so"
    if what == "not-a-library":
        path.write_text("not an ELF file")
    res = run_python("import xmem", {"XMEM_LIBRARY": str(path)})
    assert res.returncode != 0
    assert "ImportError" in res.stderr and "XMEM_LIBRARY" in res.stderr
    assert "scripts/build-native.sh" in res.stderr


def test_missing_packaged_library_is_an_import_error_that_says_what_to_do(tmp_path):
    pkg = tmp_path / "xmem"
    shutil.copytree(os.path.dirname(xmem.__file__), pkg, ignore=shutil.ignore_patterns("libxmem.so", "__pycache__"))
    res = run_python("import xmem", {"PYTHONPATH": str(tmp_path)}, cwd=str(tmp_path))
    assert res.returncode != 0
    assert "ImportError" in res.stderr and "missing" in res.stderr and "build-native.sh" in res.stderr


def test_abi_of_the_loaded_library():
    from xmem import _native
    assert _native.lib.xmem_abi_version() == _native.ABI_VERSION
    assert _native.lib.xmem_version() == xmem.__version__.encode()


def test_header_exports_csharp_and_python_agree():
    script = os.path.join(REPO_ROOT, "tests", "c", "check_abi.py")
    res = subprocess.run([sys.executable, script, "--lib", xmem.library_path, "--root", REPO_ROOT],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


def test_sources_are_python_3_8_syntax():
    import ast
    here = os.path.dirname(xmem.__file__)
    for name in sorted(os.listdir(here)):
        if name.endswith(".py"):
            with open(os.path.join(here, name)) as f:
                ast.parse(f.read(), filename=name, feature_version=(3, 8))


# Libraries a manylinux wheel may link without bundling them (PEP 600: the system's glibc and its parts).
_MANYLINUX_LIBS = {"libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1", "ld-linux-x86-64.so.2"}


@pytest.mark.skipif(os.environ.get("XMEM_EXPECT_INSTALLED") != "1", reason="only meaningful against the installed wheel")
@pytest.mark.skipif(not shutil.which("objdump") or not shutil.which("readelf"), reason="needs binutils (objdump, readelf)")
def test_the_wheel_tag_is_the_glibc_baseline_its_libraries_need():
    import glob
    import importlib.metadata
    import re
    tags = [line.split(":", 1)[1].strip() for line in importlib.metadata.distribution("xmem-shm").read_text("WHEEL").splitlines()
            if line.startswith("Tag:")]
    assert len(tags) == 1, tags
    m = re.fullmatch(r"cp3\d+-cp3\d+-manylinux_(\d+)_(\d+)_x86_64", tags[0])
    assert m, "the wheel is tagged %s, not manylinux_<glibc>_x86_64" % tags[0]
    baseline = (int(m.group(1)), int(m.group(2)))
    libs = glob.glob(os.path.join(os.path.dirname(xmem.__file__), "*.so"))
    assert any(os.path.basename(p) == "libxmem.so" for p in libs) and len(libs) >= (2 if xmem.implementation == "compiled" else 1)
    newest = (0, 0)
    for lib in libs:
        symbols = subprocess.run(["objdump", "-T", lib], capture_output=True, text=True, check=True).stdout
        for major, minor in re.findall(r"\bGLIBC_(\d+)\.(\d+)", symbols):
            newest = max(newest, (int(major), int(minor)))
        needed = set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                                subprocess.run(["readelf", "-d", lib], capture_output=True, text=True, check=True).stdout))
        assert needed <= _MANYLINUX_LIBS, "%s links %s, which a manylinux wheel must bundle" % (lib, needed - _MANYLINUX_LIBS)
    # Honest both ways: no symbol newer than the tag says, and the tag no older than the symbols need.
    assert newest == baseline, "the libraries need glibc %d.%d; the wheel says %d.%d" % (newest + baseline)
