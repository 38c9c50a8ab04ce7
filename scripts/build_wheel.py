#!/usr/bin/env python3
"""Build a platform wheel from a pure-Python package dir plus one native library.

Stdlib only (Python >= 3.8); no pip, setuptools, wheel or network needed.

    python3 scripts/build_wheel.py --package-dir python/xmem \\
        --lib src/.../publish/libxmem.so --version 0.1.0 --out dist/

The wheel contains:
  <pkg>/**.py, **.pyi, py.typed     from --package-dir (recursive; __pycache__ skipped)
  <pkg>/<lib-name>                  the native library (default lib<pkg>.so)
  <dist>-<ver>.dist-info/METADATA, WHEEL, top_level.txt, RECORD

The package loads the library through ctypes (no CPython extension module), so
the python/abi tags are py3-none; the platform tags default to
manylinux_2_36_x86_64 (glibc 2.36, Debian 12) and linux_x86_64. The output is
reproducible: entries are sorted and timestamped with SOURCE_DATE_EPOCH
(default 1980-01-01).
"""

import argparse
import base64
import csv
import hashlib
import io
import os
import re
import stat
import sys
import tempfile
import time
import zipfile

DEFAULT_PLAT_TAGS = ["manylinux_2_36_x86_64", "linux_x86_64"]
INCLUDE_SUFFIXES = (".py", ".pyi")
INCLUDE_NAMES = ("py.typed",)
GENERATOR = "xmem-build_wheel 1.0"

# PEP 440 public version (canonical-ish; enough to reject typos like "v0.1").
_VERSION_RE = re.compile(
    r"^([1-9][0-9]*!)?(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*"
    r"((a|b|rc)(0|[1-9][0-9]*))?(\.post(0|[1-9][0-9]*))?(\.dev(0|[1-9][0-9]*))?"
    r"(\+[a-z0-9]+(\.[a-z0-9]+)*)?$"
)
_TAG_RE = re.compile(r"^[a-z0-9_]+$")
_GLIBC_RE = re.compile(rb"GLIBC_2\.([0-9]+)")


def fail(msg):
    sys.stderr.write("build_wheel: error: %s\n" % msg)
    sys.exit(1)


def warn(msg):
    sys.stderr.write("build_wheel: warning: %s\n" % msg)


def record_hash(data):
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def wheel_name_component(name):
    # Binary distribution format: normalise runs of -_. to a single underscore.
    return re.sub(r"[-_.]+", "_", name)


def collect_package_files(package_dir, lib_name):
    """Return sorted [(relpath_within_package, abs_path)] of files to ship."""
    files = []
    for root, dirs, names in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for n in sorted(names):
            if n.endswith(INCLUDE_SUFFIXES) or n in INCLUDE_NAMES:
                full = os.path.join(root, n)
                rel = os.path.relpath(full, package_dir).replace(os.sep, "/")
                if rel == lib_name:
                    continue
                files.append((rel, full))
    return files


def check_elf(lib_path, plat_tags):
    with open(lib_path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF":
        fail("%s is not an ELF file" % lib_path)
    if data[4] != 2:
        fail("%s is not a 64-bit ELF" % lib_path)
    e_machine = int.from_bytes(data[18:20], "little" if data[5] == 1 else "big")
    if any(t.endswith("x86_64") for t in plat_tags) and e_machine != 62:
        fail("%s is not x86-64 (e_machine=%d) but the tags say x86_64" % (lib_path, e_machine))
    # Crude but effective: the highest GLIBC_2.N version string the library
    # references must not exceed what its manylinux tag promises.
    needed = max((int(m) for m in _GLIBC_RE.findall(data)), default=0)
    for t in plat_tags:
        m = re.match(r"^manylinux_2_([0-9]+)_", t)
        if m and needed > int(m.group(1)):
            warn("%s references GLIBC_2.%d but is tagged %s" % (lib_path, needed, t))
    return data


def zip_entry(zf, arcname, data, mode, date_time):
    info = zipfile.ZipInfo(arcname, date_time=date_time)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (stat.S_IFREG | mode) << 16
    info.create_system = 3  # unix, so external_attr permissions are honoured
    zf.writestr(info, data)


def build(args):
    package_dir = os.path.abspath(args.package_dir)
    if not os.path.isfile(os.path.join(package_dir, "__init__.py")):
        fail("%s has no __init__.py" % args.package_dir)
    pkg = os.path.basename(package_dir.rstrip("/"))
    if not pkg.isidentifier():
        fail("package dir name %r is not an importable identifier" % pkg)
    dist_name = args.name or pkg
    dist = wheel_name_component(dist_name)
    version = args.version
    if not _VERSION_RE.match(version):
        fail("version %r is not a PEP 440 version" % version)
    plat_tags = args.plat_tag or DEFAULT_PLAT_TAGS
    for t in plat_tags:
        if not _TAG_RE.match(t):
            fail("bad platform tag %r" % t)
    lib_name = args.lib_name or ("lib%s.so" % pkg)
    if "/" in lib_name:
        fail("--lib-name must be a file name")

    lib_data = check_elf(args.lib, plat_tags)
    files = collect_package_files(package_dir, lib_name)

    epoch = int(os.environ.get("SOURCE_DATE_EPOCH") or "315532800")  # 1980-01-01
    date_time = time.gmtime(max(epoch, 315532800))[:6]

    dist_info = "%s-%s.dist-info" % (dist, version)
    tag_lines = ["py3-none-%s" % t for t in plat_tags]
    wheel_file = "%s-%s-py3-none-%s.whl" % (dist, version, ".".join(plat_tags))

    metadata = [
        "Metadata-Version: 2.1",
        "Name: %s" % dist_name,
        "Version: %s" % version,
        "Summary: %s" % args.summary,
    ]
    if args.requires_python:
        metadata.append("Requires-Python: %s" % args.requires_python)
    for req in args.requires_dist or []:
        metadata.append("Requires-Dist: %s" % req)
    metadata_txt = "\n".join(metadata) + "\n"

    wheel_txt = (
        "Wheel-Version: 1.0\n"
        "Generator: %s\n"
        "Root-Is-Purelib: false\n" % GENERATOR
        + "".join("Tag: %s\n" % t for t in tag_lines)
    )

    entries = []  # (arcname, bytes, mode)
    for rel, full in files:
        with open(full, "rb") as f:
            entries.append(("%s/%s" % (pkg, rel), f.read(), 0o644))
    entries.append(("%s/%s" % (pkg, lib_name), lib_data, 0o755))
    entries.sort(key=lambda e: e[0])
    entries.append(("%s/METADATA" % dist_info, metadata_txt.encode("utf-8"), 0o644))
    entries.append(("%s/WHEEL" % dist_info, wheel_txt.encode("utf-8"), 0o644))
    entries.append(("%s/top_level.txt" % dist_info, ("%s\n" % pkg).encode("utf-8"), 0o644))

    record_io = io.StringIO()
    writer = csv.writer(record_io, lineterminator="\n")
    for arcname, data, _ in entries:
        writer.writerow([arcname, record_hash(data), str(len(data))])
    record_name = "%s/RECORD" % dist_info
    writer.writerow([record_name, "", ""])
    entries.append((record_name, record_io.getvalue().encode("utf-8"), 0o644))

    os.makedirs(args.out, exist_ok=True)
    target = os.path.join(args.out, wheel_file)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".whl", dir=args.out)
    try:
        with os.fdopen(fd, "wb") as raw:
            with zipfile.ZipFile(raw, "w") as zf:
                for arcname, data, mode in entries:
                    zip_entry(zf, arcname, data, mode, date_time)
        os.chmod(tmp, 0o644)
        verify(tmp)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return target, len(files)


def verify(path):
    """Re-read the wheel and check every RECORD hash and size."""
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        record_name = [n for n in names if n.endswith(".dist-info/RECORD")]
        if len(record_name) != 1:
            fail("expected exactly one RECORD, found %r" % record_name)
        rows = list(csv.reader(io.StringIO(zf.read(record_name[0]).decode("utf-8"))))
        listed = {r[0] for r in rows}
        if listed != set(names):
            fail("RECORD/zip mismatch: %r" % (listed ^ set(names)))
        for name, h, size in rows:
            if name == record_name[0]:
                continue
            data = zf.read(name)
            if h != record_hash(data) or int(size) != len(data):
                fail("RECORD entry for %s does not match its contents" % name)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--package-dir", required=True, help="import package dir, e.g. python/xmem")
    p.add_argument("--lib", required=True, help="native library to ship inside the package")
    p.add_argument("--version", required=True, help="PEP 440 version, e.g. 0.1.0")
    p.add_argument("--out", required=True, help="output directory for the .whl")
    p.add_argument("--name", help="distribution name (default: package dir name)")
    p.add_argument("--lib-name", help="file name inside the package (default: lib<pkg>.so)")
    p.add_argument("--plat-tag", action="append",
                   help="platform tag, repeatable (default: %s)" % " ".join(DEFAULT_PLAT_TAGS))
    p.add_argument("--summary", default="Cross-process shared-memory buffer pool")
    p.add_argument("--requires-python", default=">=3.8")
    p.add_argument("--requires-dist", action="append", help="Requires-Dist line, repeatable")
    args = p.parse_args(argv)
    if not os.path.isfile(args.lib):
        fail("--lib %s does not exist" % args.lib)
    if not os.path.isdir(args.package_dir):
        fail("--package-dir %s is not a directory" % args.package_dir)
    target, n = build(args)
    print("%s  (%d package files + %s)" % (target, n, os.path.basename(args.lib)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
