#!/usr/bin/env python3
"""Writes docs/python.md, the Python API reference, from the package's docstrings.

    scripts/gen-python-docs.py            rewrite docs/python.md
    scripts/gen-python-docs.py --check    exit 1 if docs/python.md is not what this would write

Needs neither torch nor a GPU nor libparallax.so: parallax_tuner imports without them, and
parallax_tuner.ops and .autograd (which need torch) are read with ast, not imported.
"""
import argparse
import ast
import difflib
import inspect
import os
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
sys.path.insert(0, os.path.join(REPO, "python"))
DOC = os.path.join(REPO, "docs", "python.md")

import parallax_tuner as plx  # noqa: E402
import parallax_tuner.compat as compat  # noqa: E402
import parallax_tuner.torch_ext as torch_ext  # noqa: E402  (imports torch only when called)

HEADER = """# Python API: `parallax_tuner`

Generated from the docstrings by `scripts/gen-python-docs.py`; the CPU test `python_docs_in_sync`
fails when this file and the code disagree. Install and first steps: the README's "Use from
PyTorch".

"""


def clean(doc):
    return inspect.cleandoc(doc or "").strip()


def entry(name, obj):
    lines = []
    if inspect.isclass(obj) and not hasattr(obj, "_fields"):
        lines.append(f"### class `{name}`\n")
        lines.append(clean(obj.__doc__) + "\n")
        for attr, member in sorted(vars(obj).items()):
            if attr.startswith("_") or not callable(member) or not member.__doc__:
                continue
            try:
                sig = str(inspect.signature(member))
            except (TypeError, ValueError):
                sig = "(...)"
            lines.append(f"- `{name}.{attr}{sig}`\n\n" + "\n".join("  " + ln if ln else ""
                                                                     for ln in clean(member.__doc__).splitlines())
                         + "\n")
    elif inspect.isclass(obj):  # a namedtuple
        lines.append(f"### `{name}({', '.join(obj._fields)})`\n")
        lines.append(clean(obj.__doc__) + "\n")
    else:
        lines.append(f"### `{name}{inspect.signature(obj)}`\n")
        lines.append(clean(obj.__doc__) + "\n")
    return "\n".join(lines)


def ops_section(module="ops"):
    path = os.path.join(REPO, "python", "parallax_tuner", module + ".py")
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    out = [f"## `parallax_tuner.{module}` (needs torch)\n", clean(ast.get_docstring(tree)) + "\n"]
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            for dec in node.decorator_list:
                if isinstance(dec, ast.Call) and getattr(dec.func, "attr", "") == "custom_op":
                    op = ast.literal_eval(dec.args[0])
                    args = ", ".join(f"{a.arg}: {ast.unparse(a.annotation)}" for a in node.args.args)
                    out.append(f"- `torch.ops.{op.replace('::', '.')}({args}) -> {ast.unparse(node.returns)}`")
            if node.name.startswith("call_"):
                out.append(f"- `{node.name}(...)`: {clean(ast.get_docstring(node))}")
    return "\n".join(out) + "\n"


def render():
    parts = [HEADER, "## `parallax_tuner`\n", clean(plx.__doc__) + "\n"]
    for name in plx.__all__:
        parts.append(entry(name, getattr(plx, name)))
    parts.append("## `parallax_tuner.compat`\n")
    parts.append(clean(compat.__doc__) + "\n")
    for name in compat.__all__:
        parts.append(entry(name, getattr(compat, name)))
    parts.append(ops_section("ops"))
    parts.append(ops_section("autograd"))
    parts.append("## `parallax_tuner.torch_ext` (the C++ fast path, needs torch)\n")
    parts.append(clean(torch_ext.__doc__) + "\n")
    for name in ("build", "load", "build_dir"):
        parts.append(entry(name, getattr(torch_ext, name)))
    return "\n".join(parts).rstrip() + "\n"


def main():
    ap = argparse.ArgumentParser(description="Writes or checks docs/python.md from the package's docstrings.")
    ap.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 on a difference")
    args = ap.parse_args()
    text = render()
    if args.check:
        have = open(DOC, encoding="utf-8").read() if os.path.exists(DOC) else ""
        if have != text:
            sys.stdout.writelines(difflib.unified_diff(have.splitlines(True), text.splitlines(True),
                                                       "docs/python.md", "generated", n=1))
            print("docs/python.md is stale: run scripts/gen-python-docs.py", file=sys.stderr)
            return 1
        return 0
    with open(DOC, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
