#!/usr/bin/env python3
"""Generate docs/api.md from the comments in include/mm.h.

    tools/gen_api_docs.py                 # rewrite docs/api.md
    tools/gen_api_docs.py --check         # exit 1 if docs/api.md differs from what would be written
    tools/gen_api_docs.py -o FILE HEADER  # other paths

The header is read as paragraphs (runs of lines without a blank line). A paragraph holds comments,
`#define MM_*` macros and declarations ending in ';'. A comment whose text is framed by dashes
(or a "---- section: NAME ----" marker) starts a section. Every other paragraph that declares
something becomes one entry: a heading naming each declared symbol, the declarations verbatim,
and the comment text. A public function without a comment in its paragraph is an error: the
header comment is the documentation.
"""
import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def paragraphs(text):
    """Split the body into paragraphs of lines, dropping include-guard/linkage/MM_API plumbing."""
    out, current, depth_if = [], [], 0
    skipping = 0  # inside the MM_API #if block
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            directive = re.match(r"#\s*(\w+)", stripped).group(1)
            if directive in ("if", "ifdef", "ifndef"):
                depth_if += 1
                if re.match(r"#\s*if\s+defined\(_WIN32\)", stripped):
                    skipping = depth_if
                continue
            if directive == "endif":
                if skipping == depth_if:
                    skipping = 0
                depth_if -= 1
                continue
            if skipping or directive in ("else", "elif", "include"):
                continue
            if directive == "define" and re.match(r"#define\s+MM_\w+\s+\S", stripped):
                current.append(line)
            continue
        if skipping or stripped in ('extern "C" {', "}"):
            continue
        if not stripped:
            if current:
                out.append(current)
            current = []
            continue
        current.append(line)
    if current:
        out.append(current)
    return out


def split_items(lines):
    """A paragraph -> list of ('comment', text) / ('code', text) in order."""
    items, i = [], 0
    text = "\n".join(lines)
    pos = 0
    while pos < len(text):
        while pos < len(text) and text[pos] in " \t\n":
            pos += 1
        if pos >= len(text):
            break
        if text.startswith("/*", pos):
            end = text.index("*/", pos) + 2
            items.append(("comment", text[pos:end]))
            pos = end
        elif text.startswith("#define", pos):
            end = text.find("\n", pos)
            end = len(text) if end < 0 else end
            items.append(("code", text[pos:end]))
            pos = end
        else:
            # a declaration: up to ';' at brace depth 0, plus a trailing same-line comment
            depth, j = 0, pos
            while j < len(text):
                c = text[j]
                if text.startswith("/*", j):
                    j = text.index("*/", j) + 2
                    continue
                if c == "{":
                    depth += 1
                elif c == "}":
                    depth -= 1
                elif c == ";" and depth == 0:
                    break
                j += 1
            end = j + 1
            rest = text[end:].split("\n", 1)[0]
            if rest.strip().startswith("/*") and rest.strip().endswith("*/"):
                end += len(rest)
            items.append(("code", text[pos:end]))
            pos = end
        i += 1
    return items


def comment_text(comment):
    """'/* a\n * b */' -> 'a\nb' (leading stars and the common indent removed)."""
    body = comment[2:-2]
    lines = [re.sub(r"^\s*\* ?", "", l) if re.match(r"^\s*\*", l) else l.strip()
             for l in body.split("\n")]
    return "\n".join(lines).strip()


def code_symbols(code):
    """Names a declaration or macro introduces."""
    code_nc = re.sub(r"/\*.*?\*/", "", code, flags=re.S)
    m = re.match(r"#define\s+(\w+)", code_nc)
    if m:
        return [m.group(1)], "macro"
    m = re.search(r"\(\s*\*\s*(\w+)\s*\)", code_nc)
    if code_nc.lstrip().startswith("typedef") and m:
        return [m.group(1)], "type"
    if code_nc.lstrip().startswith("typedef"):
        return [re.findall(r"(\w+)\s*;\s*$", code_nc.strip())[0]], "type"
    if code_nc.lstrip().startswith("MM_API"):
        return [re.search(r"(\w+)\s*\(", code_nc).group(1)], "function"
    raise SystemExit("gen_api_docs: cannot read declaration:\n" + code)


def section_title(text):
    m = re.match(r"-+\s*section:\s*(.*?)\s*-+$", text)
    if m:
        title = re.sub(r"\s*\(.*\)$", "", m.group(1))
        return title[:1].upper() + title[1:], ""
    lines = [l for l in text.split("\n") if not re.fullmatch(r"-+", l.strip())]
    title = lines[0].strip() if lines else ""
    return title, "\n".join(lines[1:]).strip()


def prose(text):
    """Header comment text as Markdown: keep line structure where it matters (lists)."""
    out = []
    for line in text.split("\n"):
        if re.match(r"\s*- ", line) or not out:
            out.append(line.strip())
        elif re.match(r"\s+", line) and out and re.match(r"- ", out[-1]):
            out[-1] += " " + line.strip()
        elif line.strip() == "":
            out.append("")
        else:
            if out[-1] == "":
                out.append(line.strip())
            else:
                out[-1] += " " + line.strip()
    return "\n".join(out)


def generate(header_path):
    text = open(header_path, encoding="utf-8").read()
    first = text.index("/*")
    intro = comment_text(text[first:text.index("*/", first) + 2])
    body = text[text.index("*/", first) + 2:]
    rel = os.path.relpath(header_path, ROOT)
    out = [
        "# libmm API reference",
        "",
        f"Generated from the comments in `{rel}` by `tools/gen_api_docs.py`; do not edit by hand",
        "(change the header and run the script; `tests/check_api_docs.sh` checks that this file",
        "is current and names every exported symbol).",
        "",
    ]
    intro_title, intro_rest = intro.split("\n", 1)
    out += [intro_title.strip(), "", prose(intro_rest.strip()), ""]
    toc_at = len(out)
    toc, errors, symbols = [], [], []
    for para in paragraphs(body):
        items = split_items(para)
        comments = [comment_text(t) for k, t in items if k == "comment"]
        if not any(k == "code" for k, _ in items):
            if len(comments) == 1 and ("---" in comments[0]):
                title, desc = section_title(comments[0])
                anchor = re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")
                toc.append(f"- [{title}](#{anchor})")
                out += [f"## {title}", ""]
                if desc:
                    out += [prose(desc), ""]
            else:
                out += [prose(c) for c in comments] + [""]
            continue
        # chunks: the comments, then the declarations they describe
        chunks = []
        for kind, t in items:
            if kind == "comment" and (not chunks or chunks[-1][1]):
                chunks.append(([], []))
            elif not chunks:
                chunks.append(([], []))
            chunks[-1][0 if kind == "comment" else 1].append(t)
        names = []
        for chunk_comments, chunk_codes in chunks:
            for code in chunk_codes:
                n, kind = code_symbols(code)
                names += n
                if kind == "function" and not chunk_comments:
                    errors.append("undocumented: " + ", ".join(n))
        symbols += names
        if not toc:
            toc.append("- [Macros](#macros)")
            out += ["## Macros", ""]
        out += ["### " + ", ".join(f"`{n}`" for n in names), ""]
        for chunk_comments, chunk_codes in chunks:
            out += ["```c"] + [c.strip("\n") for c in chunk_codes] + ["```", ""]
            for c in chunk_comments:
                out += [prose(comment_text(c)), ""]
    out[toc_at:toc_at] = ["Contents:", ""] + toc + [""]
    return "\n".join(out).rstrip("\n") + "\n", symbols, errors


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("header", nargs="?", default=os.path.join(ROOT, "include", "mm.h"))
    ap.add_argument("-o", "--output", default=os.path.join(ROOT, "docs", "api.md"))
    ap.add_argument("--check", action="store_true", help="compare instead of writing")
    args = ap.parse_args()
    doc, _, errors = generate(args.header)
    if errors:
        print("\n".join(f"gen_api_docs: {e}" for e in errors), file=sys.stderr)
        return 1
    if args.check:
        current = open(args.output, encoding="utf-8").read() if os.path.exists(args.output) else ""
        if current != doc:
            print(f"{args.output} is out of date: run tools/gen_api_docs.py", file=sys.stderr)
            return 1
        return 0
    with open(args.output, "w", encoding="utf-8") as f:
        f.write(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
