"""Fails if a module of redlock-runtime uses one declared after it in lib.rs.

lib.rs declares the modules in layers, lowest first (a module may be a folder of files); each may use only those declared before
it (`__private` and `test_util` sit on top of everything). Uses are read from `crate::`
paths, with the crate root's re-exports mapped to the modules that define them. Prints the
layer list and each module's uses.
"""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "redlock-runtime" / "src"
lib = (SRC / "lib.rs").read_text()
order = re.findall(r"^(?:pub )?mod (\w+);", lib, re.M)
TOP = {"__private", "test_util"}
# What the crate root re-exports, by the module that defines it.
reexports = {}
for module, items in re.findall(r"^pub use (\w+)::\{?([^;]*?)\}?;", lib, re.M):
    for item in re.split(r"[,\s]+", items):
        if item:
            reexports[item] = module
reexports["lock_key"] = "keys"


def uses(text):
    found = set()
    for block in re.findall(r"crate::\{(.*?)\};", text, re.S):
        depth, item, items = 0, "", []
        for char in block:
            depth += char == "{"
            depth -= char == "}"
            if char == "," and depth == 0:
                items.append(item)
                item = ""
            else:
                item += char
        items.append(item)
        for item in items:
            name = re.split(r"::|\s", item.strip())[0]
            if name:
                found.add(name)
    found.update(re.findall(r"crate::(\w+)", text))
    return {reexports.get(name, name) for name in found} & set(order)


bad = []
for module in order:
    # A module is one file, or a folder whose files all count as it.
    folder = SRC / module
    paths = sorted(folder.glob("*.rs")) if folder.is_dir() else [SRC / f"{module}.rs"]
    # Comments and docs may name any item; only code is a use.
    code = re.sub(r"//.*", "", "\n".join(path.read_text() for path in paths))
    used = sorted(uses(code) - {module})
    print(f"{module:>10}: {' '.join(used) or '-'}")
    if module in TOP:
        continue
    for other in used:
        if other in TOP or order.index(other) > order.index(module):
            bad.append(f"{module} uses {other}, declared after it")
if bad:
    sys.exit("layering broken:\n" + "\n".join(bad))
print(f"{len(order)} modules, no use of a later layer: no import cycle")
