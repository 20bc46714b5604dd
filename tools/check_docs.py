#!/usr/bin/env python3
"""Fails when a public name declared in include/offload is not mentioned in docs/.

Usage: tools/check_docs.py [--compiler clang++] [--list]

The public names come from clang's own parse of include/offload/offload.hpp (its JSON AST
dump), not from a regular expression: every class, struct, enum, enumerator, alias, concept,
function and variable in namespace offload (outside offload::detail), and every public member
function, field and nested type of those classes. A name counts as documented when it appears
as a whole word in some docs/*.md page. With --list, prints the names instead of checking.
Python 3 standard library only.
"""
import json
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

NAMED_KINDS = {
    "CXXRecordDecl", "ClassTemplateDecl", "FunctionDecl", "FunctionTemplateDecl",
    "CXXMethodDecl", "TypeAliasDecl", "TypeAliasTemplateDecl", "TypedefDecl", "EnumDecl",
    "EnumConstantDecl", "ConceptDecl", "VarDecl", "VarTemplateDecl", "FieldDecl",
}
SKIPPED_NAMESPACES = {"detail"}


def ast_chunks(compiler):
    """Runs clang on the umbrella header; yields each top-level JSON object it prints."""
    command = [compiler, "-std=c++20", "-fsyntax-only", "-I", str(ROOT / "include"),
               "-Xclang", "-ast-dump=json", "-Xclang", "-ast-dump-filter=offload",
               "-x", "c++", "-"]
    result = subprocess.run(command, input='#include <offload/offload.hpp>\n', text=True,
                            capture_output=True, check=False)
    if result.returncode != 0:
        sys.exit("check_docs: %s failed:\n%s" % (compiler, result.stderr[-2000:]))
    decoder = json.JSONDecoder()
    text, position = result.stdout, 0
    while True:
        while position < len(text) and text[position] not in "{":
            position += 1
        if position >= len(text):
            return
        chunk, position = decoder.raw_decode(text, position)
        yield chunk


def collect(node, scope, names):
    """Adds (qualified name, name) of the public declarations under namespace-level `node`."""
    kind = node.get("kind")
    name = node.get("name", "")
    if kind == "NamespaceDecl":
        if name in SKIPPED_NAMESPACES:
            return
        inner_scope = scope if name == "v0" else scope + [name]
        for child in node.get("inner", []):
            collect(child, inner_scope, names)
        return
    if is_out_of_line_member(node):
        return  # a member defined outside its class: counted (or not) with its class
    add_declaration(node, scope, names)


def is_out_of_line_member(node):
    kind = node.get("kind")
    if kind == "CXXMethodDecl":
        return True
    if kind == "FunctionTemplateDecl":
        return any(child.get("kind") == "CXXMethodDecl" for child in node.get("inner", []))
    return False


def add_declaration(node, scope, names):
    kind = node.get("kind")
    name = node.get("name", "")
    if node.get("isImplicit") or not name or name.startswith("_") or name.startswith("operator"):
        return
    if kind not in NAMED_KINDS:
        return
    names.add(("::".join(scope + [name]), name))
    if kind == "ClassTemplateDecl":
        for child in node.get("inner", []):
            if child.get("kind") == "CXXRecordDecl":
                add_members(child, scope + [name], names)
    elif kind == "CXXRecordDecl":
        add_members(node, scope + [name], names)
    elif kind == "EnumDecl":
        for child in node.get("inner", []):
            add_declaration(child, scope + [name], names)


def add_members(record, scope, names):
    """Public members of a class or struct, following its access specifiers."""
    access = "private" if record.get("tagUsed") == "class" else "public"
    for member in record.get("inner", []):
        if member.get("kind") == "AccessSpecDecl":
            access = member.get("access", access)
            continue
        if member.get("kind") in ("CXXConstructorDecl", "CXXDestructorDecl", "CXXConversionDecl"):
            continue
        if member.get("kind") == "CXXRecordDecl" and member.get("name") == scope[-1]:
            continue  # the injected class name
        if member.get("access", access) == "public":
            add_declaration(member, scope, names)


def public_names(compiler):
    names = set()
    for chunk in ast_chunks(compiler):
        if chunk.get("kind") == "NamespaceDecl" and chunk.get("name") == "offload":
            collect(chunk, [], names)
    return sorted(names)


def main(argv):
    compiler = "clang++"
    if "--compiler" in argv:
        compiler = argv[argv.index("--compiler") + 1]
    names = public_names(compiler)
    if "--list" in argv:
        for qualified, _ in names:
            print(qualified)
        return 0
    docs = "\n".join(page.read_text() for page in sorted((ROOT / "docs").glob("*.md")))
    missing = [q for q, n in names if not re.search(r"(?<![\w])%s(?![\w])" % re.escape(n), docs)]
    if missing:
        print("check_docs: %d public names are not mentioned in docs/:" % len(missing))
        for qualified in missing:
            print("  " + qualified)
        return 1
    print("check_docs: all %d public names are documented" % len(names))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
