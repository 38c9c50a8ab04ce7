#!/usr/bin/env python3
"""Fails (exit 1) when include/xmem.h, the symbols libxmem.so exports, the C# entry points and the Python
declarations disagree.

Checks:
  1. the functions declared in the header, the `xmem_*` symbols `nm -D` finds in the library and the
     [UnmanagedCallersOnly(EntryPoint = "xmemi_*")] methods in src/Xmem.Native (the managed implementations behind
     the gated C wrappers of src/Xmem.Native/Gate/exports.g.c) are the same set, the wrappers are what
     src/Xmem.Native/Gate/generate_exports.py makes of the header, and the library exports no xmemi_* or
     xmem_gate_* symbol (so no caller can enter the runtime past the fork gate);
  2. each function takes as many parameters in the header, in C# and in python/xmem/_native.py (SIGNATURES);
  3. the header's XMEM_OK / XMEM_E_* numbers are exactly Xmem.XmemStatus (src/Xmem/Errors/XmemStatus.cs);
  4. XMEM_ABI_VERSION agrees with the C# AbiVersion and the Python ABI_VERSION;
  5. the header's XMEM_DTYPE_* numbers are exactly Xmem.ElementType (src/Xmem/Description/ElementType.cs) and the
     Python DTYPES (python/xmem/_description.py).

Usage: check_abi.py [--lib path/to/libxmem.so] [--root repo-root]
"""

import argparse
import os
import re
import subprocess
import sys


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def strip_c_comments(text):
    return re.sub(r"/\*.*?\*/", " ", text, flags=re.S)


def count_params(params):
    params = params.strip()
    if params in ("", "void"):
        return 0
    depth, n = 0, 1
    for ch in params:
        if ch in "(<[":
            depth += 1
        elif ch in ")>]":
            depth -= 1
        elif ch == "," and depth == 0:
            n += 1
    return n


def header_functions(text):
    code = strip_c_comments(text)
    code = re.sub(r"typedef\s+struct.*?}\s*\w+\s*;", " ", code, flags=re.S)
    funcs = {}
    for m in re.finditer(r"[\w\s\*]+?\b(xmem_\w+)\s*\(([^;{]*?)\)\s*;", code, flags=re.S):
        funcs[m.group(1)] = count_params(m.group(2))
    return funcs


def header_statuses(text):
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"#define\s+(XMEM_OK|XMEM_E_\w+)\s+(-?\d+)", text)}


def csharp_entry_points(native_dir):
    funcs = {}
    for root, _, names in os.walk(native_dir):
        if os.sep + "obj" in root or os.sep + "bin" in root:
            continue
        for n in names:
            if not n.endswith(".cs"):
                continue
            text = read(os.path.join(root, n))
            for m in re.finditer(
                    r'\[UnmanagedCallersOnly\(EntryPoint\s*=\s*"xmemi_(\w+)"\)\]\s*(?:internal|public|private)\s+static\s+[\w\*\s<>,]+?\s+\w+\s*\(([^)]*)\)',
                    text):
                name = "xmem_" + m.group(1)
                if name.startswith("xmem_dlpack_delete_"):
                    continue  # the DLPack deleters: gated in dlpack_deleters.c, handed out as pointers, not exported
                if name in funcs:
                    raise SystemExit("check_abi: %s is exported twice in C#" % name)
                funcs[name] = count_params(m.group(2))
    return funcs


def csharp_statuses(text):
    body = text[text.index("enum XmemStatus"):]
    body = re.sub(r"///.*", "", body)
    out = {}
    for m in re.finditer(r"\b([A-Z]\w*)\s*=\s*(-?\d+)\s*,", body):
        out[m.group(1)] = int(m.group(2))
    return out


def header_dtypes(text):
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"#define\s+XMEM_DTYPE_(\w+)\s+(\d+)", text)}


def csharp_dtypes(text):
    body = text[text.index("enum ElementType"):]
    body = body[:body.index("}")]
    body = re.sub(r"///.*", "", body)
    return {m.group(1).upper(): int(m.group(2)) for m in re.finditer(r"\b([A-Z]\w*)\s*=\s*(\d+)\s*,", body)}


def python_dtypes(text):
    block = text[text.index("DTYPES = {"):]
    block = block[:block.index("\n}\n")]
    out = {m.group(1).upper(): int(m.group(2)) for m in re.finditer(r'"(\w+)":\s*\((\d+),', block)}
    out["NONE"] = 0
    return out


def header_name(cs_name):
    if cs_name == "Ok":
        return "XMEM_OK"
    return "XMEM_E_" + re.sub(r"(?<!^)(?=[A-Z])", "_", cs_name).upper()


def python_signatures(text):
    block = text[text.index("SIGNATURES = {"):]
    block = block[:block.index("\n}\n")]
    out = {}
    for m in re.finditer(r'"(xmem_\w+)":\s*\((.*?),\s*\[(.*?)\]\),', block):
        out[m.group(1)] = count_params(m.group(3))
    return out


def library_exports(lib):
    res = subprocess.run(["nm", "-D", "--defined-only", lib], check=True, capture_output=True, text=True)
    names = (line.split()[-1].split("@")[0] for line in res.stdout.splitlines() if line.split())
    return {n for n in names if n.startswith("xmem")}


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=os.path.normpath(os.path.join(here, "..", "..")))
    p.add_argument("--lib", help="libxmem.so to check (default: artifacts/native/libxmem.so)")
    args = p.parse_args(argv)
    root = args.root
    lib = args.lib or os.path.join(root, "artifacts", "native", "libxmem.so")

    header_text = read(os.path.join(root, "include", "xmem.h"))
    h_funcs = header_functions(header_text)
    h_status = header_statuses(header_text)
    cs_funcs = csharp_entry_points(os.path.join(root, "src", "Xmem.Native"))
    cs_status = {header_name(k): v for k, v in csharp_statuses(read(os.path.join(root, "src", "Xmem", "Errors", "XmemStatus.cs"))).items()}
    native_py = read(os.path.join(root, "python", "xmem", "_native.py"))
    py_funcs = python_signatures(native_py)
    exports = library_exports(lib)

    problems = []

    def compare_sets(a_name, a, b_name, b):
        for n in sorted(set(a) - set(b)):
            problems.append("%s is in %s but not in %s" % (n, a_name, b_name))

    compare_sets("the header", h_funcs, "the C# entry points", cs_funcs)
    compare_sets("the C# entry points", cs_funcs, "the header", h_funcs)
    compare_sets("the header", h_funcs, "nm -D %s" % lib, exports)
    compare_sets("nm -D %s" % lib, exports, "the header", h_funcs)
    gen = subprocess.run([sys.executable, os.path.join(root, "src", "Xmem.Native", "Gate", "generate_exports.py"), "--check"],
                         capture_output=True, text=True)
    if gen.returncode != 0:
        problems.append("src/Xmem.Native/Gate/exports.g.c is stale: " + gen.stderr.strip())
    compare_sets("the header", h_funcs, "python/xmem/_native.py SIGNATURES", py_funcs)
    compare_sets("python/xmem/_native.py SIGNATURES", py_funcs, "the header", h_funcs)
    for n, k in sorted(h_funcs.items()):
        if n in cs_funcs and cs_funcs[n] != k:
            problems.append("%s takes %d parameters in the header but %d in C#" % (n, k, cs_funcs[n]))
        if n in py_funcs and py_funcs[n] != k:
            problems.append("%s takes %d parameters in the header but %d in python/xmem/_native.py" % (n, k, py_funcs[n]))

    for name in sorted(set(h_status) | set(cs_status)):
        if h_status.get(name) != cs_status.get(name):
            problems.append("status %s is %s in the header but %s in XmemStatus.cs" % (name, h_status.get(name), cs_status.get(name)))

    h_abi = re.search(r"#define\s+XMEM_ABI_VERSION\s+(\d+)", header_text)
    cs_abi = re.search(r"AbiVersion\s*=\s*(\d+)", read(os.path.join(root, "src", "Xmem.Native", "Exports", "ErrorExports.cs")))
    py_abi = re.search(r"^ABI_VERSION\s*=\s*(\d+)", native_py, flags=re.M)
    versions = {"header": h_abi and h_abi.group(1), "C#": cs_abi and cs_abi.group(1), "Python": py_abi and py_abi.group(1)}
    if len(set(versions.values())) != 1 or None in versions.values():
        problems.append("ABI versions disagree: %r" % versions)

    h_dtypes = header_dtypes(header_text)
    cs_dtypes = csharp_dtypes(read(os.path.join(root, "src", "Xmem", "Description", "ElementType.cs")))
    py_dtypes = python_dtypes(read(os.path.join(root, "python", "xmem", "_description.py")))
    for name in sorted(set(h_dtypes) | set(cs_dtypes) | set(py_dtypes)):
        vals = (h_dtypes.get(name), cs_dtypes.get(name), py_dtypes.get(name))
        if len(set(vals)) != 1:
            problems.append("element type %s is %s in the header, %s in ElementType.cs and %s in _description.py" % ((name,) + vals))

    if not h_funcs or not h_status or not h_dtypes:
        problems.append("parsed nothing from include/xmem.h")

    if problems:
        for pr in problems:
            print("check_abi: MISMATCH: " + pr, file=sys.stderr)
        return 1
    print("check_abi: ok: %d functions, %d statuses, %d element types agree across xmem.h, %s, C# and Python"
          % (len(h_funcs), len(h_status), len(h_dtypes), os.path.relpath(lib, root)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
