"""Block parser for the offline engine: Markdown, reStructuredText-ish and HTML headings.

``parse(text)`` turns a guideline document into sections and blocks
(paragraphs, list items, block quotes, table rows). Code (fenced and
indented), HTML comments, front matter, link reference definitions,
thematic breaks and directives never become blocks. Inline markup is removed
by ``strip_inline``; everything else stays verbatim.

Everything here is linear in the size of the input: regexes are anchored or
use bounded character classes, so a 1 MB single line cannot backtrack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

# --- inline markup -------------------------------------------------------------------------

_NEEDS_INLINE = re.compile(r"[*_`\[<&\\~]")
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_RST_LINK = re.compile(r"`([^`<\n]+?)\s*<[^`>\n]*>`__?")
_RST_ROLE = re.compile(r":[A-Za-z][\w:.+-]{0,40}:(?=`)")
_CODE = re.compile(r"(`{1,2})([^`]+)\1")
# bracket classes exclude the opening bracket too, so each scan stops at the next
# opener: "[[[[..." or "](](](..." stays linear instead of quadratic
_IMAGE = re.compile(r"!\[([^\[\]\n]*)\]\([^()\n]*\)")
_LINK = re.compile(r"\[([^\[\]\n]*)\]\([^()\n]*\)")
_REF_LINK = re.compile(r"\[([^\[\]\n]+)\]\[[^\[\]\n]*\]")
_FOOTNOTE = re.compile(r"\[\^[^\[\]\n]*\]")
_AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^<>\s]+)>", re.IGNORECASE)
_HTML_TAG = re.compile(
    r"</?(?:a|abbr|b|big|blockquote|br|caption|center|cite|code|col|colgroup|dd|del|details|"
    r"dfn|div|dl|dt|em|figcaption|figure|font|h[1-6]|hr|i|img|input|ins|kbd|label|li|mark|"
    r"ol|p|pre|q|s|samp|section|small|span|strong|sub|summary|sup|table|tbody|td|tfoot|th|"
    r"thead|tr|tt|u|ul|var|article|aside|header|footer|main|nav)\b[^<>\n]*/?>",
    re.IGNORECASE,
)
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_STRONG_STAR = re.compile(r"\*\*([^*\n]+)\*\*")
_STRONG_UNDER = re.compile(r"(?<!\w)__([^_\n]+)__(?!\w)")
_EM_STAR = re.compile(r"(?<![\w*])\*(?![\s*])([^*\n]+)(?<![\s*])\*(?![\w*])")
_EM_UNDER = re.compile(r"(?<![\w_])_(?![\s_])([^_\n]+)(?<![\s_])_(?![\w_])")
_STRIKE = re.compile(r"~~([^~\n]+)~~")
_ENTITY = re.compile(r"&(amp|lt|gt|quot|apos|nbsp|#39);")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'", "nbsp": " ", "#39": "'"}
_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
_SPACES = re.compile(r"[ \t\n]+")


def strip_inline(s: str) -> str:
    """Remove inline Markdown/rST/HTML markup; collapse whitespace; keep the rest verbatim."""
    if "  " in s or "\t" in s or "\n" in s:
        s = _SPACES.sub(" ", s)  # first: no regex below meets a long whitespace run
    s = s.strip()
    if _NEEDS_INLINE.search(s) is None:
        return s
    kept: list[str] = []

    def _keep(value: str) -> str:
        kept.append(value)
        return f"\ue000{len(kept) - 1}\ue001"

    if "\\" in s:
        s = _ESCAPE.sub(lambda m: _keep(m.group(1)), s)
    if "`" in s:
        s = _RST_LINK.sub(lambda m: m.group(1), s)
        s = _RST_ROLE.sub("", s)
        s = _CODE.sub(lambda m: _keep(m.group(2).strip()), s)
    if "[" in s:
        s = _IMAGE.sub(lambda m: m.group(1), s)
        s = _LINK.sub(lambda m: m.group(1), s)
        s = _REF_LINK.sub(lambda m: m.group(1), s)
        s = _FOOTNOTE.sub("", s)
    if "<" in s:
        s = _AUTOLINK.sub(lambda m: m.group(1), s)
        s = _BR.sub(" ", s)
        s = _HTML_TAG.sub("", s)
    if "*" in s:
        s = _STRONG_STAR.sub(lambda m: m.group(1), s)
        s = _EM_STAR.sub(lambda m: m.group(1), s)
    if "_" in s:
        s = _STRONG_UNDER.sub(lambda m: m.group(1), s)
        s = _EM_UNDER.sub(lambda m: m.group(1), s)
    if "~~" in s:
        s = _STRIKE.sub(lambda m: m.group(1), s)
    if "&" in s:
        s = _ENTITY.sub(lambda m: _ENTITIES[m.group(1)], s)
    if kept:

        def _restore(m: re.Match[str]) -> str:
            i = int(m.group(1))
            return kept[i] if i < len(kept) else m.group(0)

        s = _PLACEHOLDER.sub(_restore, s)
    return _SPACES.sub(" ", s).strip()


# --- blocks -------------------------------------------------------------------------------


@dataclass(slots=True)
class Block:
    kind: str  # "para", "quote", "item" or "row"
    text: str  # inline markup removed, whitespace collapsed
    section: int  # index into Parsed.sections, -1 before the first heading
    depth: int = 0  # list nesting (items)
    ordered: bool = False  # numbered list item
    parent: int = -1  # index of the parent item block (items)
    intro: bool = False  # a paragraph that ends with ':' right before a list
    cells: list[str] = field(default_factory=list)  # table row cells
    header: list[str] = field(default_factory=list)  # the table's header cells


@dataclass
class Parsed:
    front_title: str | None
    sections: list[str]
    blocks: list[Block]


_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?=[ \t]|$)")
_HTML_HEADING = re.compile(r"<h([1-6])\b[^<>\n]*>(.*?)</h\1\s*>", re.IGNORECASE)
_LIST = re.compile(r"^([ \t]*)([-*+•·○●■□▪◦]|\d{1,9}[.)])(?:[ \t]+|$)")
_ADMONITION = re.compile(r"\[![A-Za-z]{1,20}\][ \t]*")
_LIST_START = frozenset("-*+•·○●■□▪◦")
_CHECKBOX = re.compile(r"^\[[ xX]\][ \t]+")
_LINK_DEF = re.compile(r"^ {0,3}\[[^\]\n]{1,999}\]:[ \t]*\S")
_DIRECTIVE = re.compile(r"^\.\.(?:[ \t]|$)")
_LI_TAG = re.compile(r"^<li\b", re.IGNORECASE)
_ONLY_TAGS = re.compile(r"^(?:[ \t]*</?[A-Za-z][^<>\n]*>)+[ \t]*$")
_ADORN_CHARS = frozenset("=-~^*#+:.'\"_`")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_CODE_DIRECTIVE = re.compile(
    r"^\.\.[ \t]+(?:code-block|code|sourcecode|highlight|literalinclude|raw|math)::", re.IGNORECASE
)
_FM_TITLE = re.compile(r"^title[ \t]*[:=][ \t]*(.*)$", re.IGNORECASE)


def _indent(line: str) -> int:
    n = 0
    for ch in line:
        if ch == " ":
            n += 1
        elif ch == "\t":
            n += 4 - n % 4
        else:
            break
    return n


def _adornment(stripped: str) -> str | None:
    """The repeated punctuation character if the line is an underline/overline, else None."""
    if len(stripped) < 2:
        return None
    ch = stripped[0]
    if ch not in _ADORN_CHARS or stripped.count(ch) != len(stripped):
        return None
    return ch


def _thematic(stripped: str) -> bool:
    compact = stripped.replace(" ", "").replace("\t", "")
    return len(compact) >= 3 and compact[0] in "-*_" and compact.count(compact[0]) == len(compact)


def _split_cells(line: str) -> list[str]:
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|") and not s.endswith("\\|"):
        s = s[:-1]
    return [strip_inline(c.replace("\\|", "|")) for c in _CELL_SPLIT.split(s)]


def _is_delimiter_row(line: str) -> bool:
    s = line.strip()
    return "-" in s and "|" in s and not s.strip("|:- \t")


def _is_grid_border(stripped: str) -> bool:
    return (
        len(stripped) >= 3
        and stripped[0] == "+"
        and stripped[-1] == "+"
        and not stripped.strip("+-=: ")
    )


def _front_matter(lines: list[str]) -> tuple[int, str | None]:
    """(lines to skip, title) for YAML ``---`` or TOML ``+++`` front matter at the top."""
    if not lines:
        return 0, None
    fence = lines[0].strip()
    if fence not in ("---", "+++"):
        return 0, None
    closers = ("---", "...") if fence == "---" else ("+++",)
    title: str | None = None
    for i in range(1, min(len(lines), 500)):
        s = lines[i].strip()
        if s in closers:
            return i + 1, title
        m = _FM_TITLE.match(s)
        if m and title is None:
            value = m.group(1).strip().strip("\"'").strip()
            title = strip_inline(value) or None
    return 0, None


def _remove_comments(text: str) -> str:
    if "<!--" not in text:
        return text
    out: list[str] = []
    pos = 0
    closed = True  # False once a comment never closes: later ones cannot close either
    while True:
        start = text.find("<!--", pos)
        if start < 0:
            out.append(text[pos:])
            break
        end = text.find("-->", start + 4) if closed else -1
        if end < 0:  # unclosed: drop the rest of that line only
            closed = False
            eol = text.find("\n", start)
            out.append(text[pos:start])
            if eol < 0:
                break
            pos = eol
            continue
        out.append(text[pos:start])
        out.append("\n" * text.count("\n", start, end))
        pos = end + 3
    return "".join(out)


class _Parser:
    def __init__(self) -> None:
        self.sections: list[str] = []
        self.blocks: list[Block] = []
        self.section = -1
        self.para: list[str] = []
        self.para_kind = "para"
        # open list item: lines, and the stack of (marker indent, content indent, block index)
        self.item: list[str] = []
        self.item_meta: tuple[int, bool, int] = (0, False, -1)  # depth, ordered, parent
        self.stack: list[tuple[int, int, int]] = []

    # -- flushing
    def flush_para(self) -> None:
        if self.para:
            text = strip_inline(" ".join(self.para))
            if text:
                self.blocks.append(Block(self.para_kind, text, self.section))
            self.para = []
        self.para_kind = "para"

    def flush_item(self) -> None:
        if self.item:
            text = strip_inline(" ".join(self.item))
            text = _CHECKBOX.sub("", text)
            depth, ordered, parent = self.item_meta
            self.blocks[self.stack[-1][2]] = Block(
                "item", text, self.section, depth=depth, ordered=ordered, parent=parent
            )
            self.item = []

    def flush(self) -> None:
        self.flush_para()
        self.flush_item()

    def end_list(self) -> None:
        self.flush_item()
        self.stack = []

    def text_line(self, stripped: str, ind: int, was_blank: bool) -> None:
        """A line of prose: lazy continuation of a list item, or paragraph text."""
        if self.para_kind == "quote":
            self.flush_para()
        if self.stack:
            if self.item and not was_blank:
                self.item.append(stripped)  # lazy continuation
                return
            if was_blank and ind >= min(self.stack[-1][1], 2):
                # a continuation paragraph of the open item
                if self.item:
                    self.item.append(stripped)
                else:
                    blk = self.blocks[self.stack[-1][2]]
                    blk.text = (blk.text + " " + strip_inline(stripped)).strip()
                return
            self.end_list()
        self.para.append(stripped)

    def heading(self, raw: str) -> None:
        self.flush()
        self.end_list()
        raw = raw.rstrip()
        if raw.endswith("}") and "{#" in raw:  # "Title {#anchor}"
            raw = raw[: raw.rfind("{#")]
        name = strip_inline(raw)
        if name:
            self.sections.append(name)
            self.section = len(self.sections) - 1

    def start_item(self, marker_indent: int, content_indent: int, ordered: bool, text: str) -> None:
        self.flush()
        # previous block ended with ':' and introduces this list
        if not self.stack and self.blocks:
            last = self.blocks[-1]
            if last.kind == "para" and last.text.endswith(":") and last.section == self.section:
                last.intro = True
        while self.stack and self.stack[-1][0] >= marker_indent:
            self.stack.pop()
        parent = self.stack[-1][2] if self.stack else -1
        depth = len(self.stack)
        self.blocks.append(Block("item", "", self.section))  # placeholder, filled on flush
        self.stack.append((marker_indent, content_indent, len(self.blocks) - 1))
        self.item_meta = (depth, ordered, parent)
        self.item = [text] if text else []
        if not text:
            self.item = [""]


def parse_uncached(text: str) -> Parsed:
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _remove_comments(text)
    lines = text.split("\n")
    start, front_title = _front_matter(lines)
    p = _Parser()
    fence: str | None = None
    in_icode = False
    lit_block = False
    in_table = False
    table_header: list[str] = []
    prev_blank = True
    n = len(lines)
    i = start
    while i < n:
        line = lines[i]
        i += 1
        stripped = line.strip()
        # fenced code
        if fence is not None:
            if stripped.startswith(fence) and not stripped.strip(fence[0]):
                fence = None
            continue
        if lit_block:
            if not stripped or _indent(line) >= 1:
                continue
            lit_block = False
        if not stripped:
            if p.para and p.para[-1].endswith("::"):
                lit_block = True
            p.flush_para()
            if p.item:
                p.flush_item()
            in_table = False
            prev_blank = True
            continue
        ind = _indent(line)
        if in_icode:
            if ind >= 4:
                continue
            in_icode = False
        was_blank = prev_blank
        prev_blank = False
        if ind < 4 and not in_table and stripped[0].isalpha() and "|" not in stripped:
            p.text_line(stripped, ind, was_blank)  # fast path: plain prose
            continue
        # an underline under a one-line paragraph: setext or rST heading (before fences:
        # "Title\n~~~~~" is a heading, not a code fence)
        c0 = stripped[0]
        adorn = _adornment(stripped) if ind < 4 and c0 in _ADORN_CHARS else None
        if adorn is not None and p.para and p.para_kind == "para" and not p.item:
            title = " ".join(s.strip() for s in p.para)
            if (adorn in "=-" and len(p.para) <= 2 and len(title) <= 120) or (
                len(p.para) == 1 and len(stripped) >= len(title)
            ):
                p.para = []
                p.heading(title)
                continue
        m = _FENCE.match(line) if c0 in "`~" else None
        if m:
            p.flush()
            fence = m.group(1)
            continue
        # indented code: after a blank line, outside lists, or at the top
        if ind >= 4 and was_blank and not p.stack and not p.para:
            p.flush()
            in_icode = True
            continue
        if p.stack and ind >= p.stack[-1][1] + 4 and was_blank:
            in_icode = True
            continue
        # rST overline + title + underline
        if adorn is not None and not p.para and i + 1 < n:
            title_line = lines[i].strip()
            under = lines[i + 1].strip()
            if (
                title_line
                and under
                and _adornment(under) == adorn
                and len(under) >= len(title_line)
                and _adornment(title_line) is None
            ):
                p.heading(title_line)
                i += 2
                continue
        if adorn is not None or (c0 in "-*_" and _thematic(stripped)):
            p.flush()
            p.end_list()
            continue
        if c0 == "+" and _is_grid_border(stripped):
            p.flush()
            p.end_list()
            in_table = True
            table_header = []
            continue
        m = _ATX.match(line) if c0 == "#" else None
        if m:
            raw = line[m.end() :].strip()
            # closing sequence of #s
            stripped_hash = raw.rstrip("#")
            if not stripped_hash or stripped_hash[-1] in " \t":
                raw = stripped_hash.strip()
            p.heading(raw)
            in_table = False
            continue
        if stripped[:2].lower() == "<h" and (hm := _HTML_HEADING.match(stripped)):
            p.heading(hm.group(2))
            rest = stripped[hm.end() :]
            if strip_inline(rest):
                p.para = [rest]
            continue
        if (c0 == "[" and _LINK_DEF.match(line)) or (c0 == "." and _DIRECTIVE.match(stripped)):
            p.flush()
            if _CODE_DIRECTIVE.match(stripped):
                lit_block = True
            continue
        # tables
        if in_table and "|" in stripped:
            if _is_delimiter_row(stripped):
                continue
            cells = _split_cells(stripped)
            if any(cells):
                p.blocks.append(
                    Block(
                        "row",
                        " | ".join(c for c in cells if c),
                        p.section,
                        cells=cells,
                        header=table_header,
                    )
                )
            continue
        if "|" in stripped and i < n and _is_delimiter_row(lines[i]) and not p.item:
            p.flush()
            p.end_list()
            table_header = _split_cells(stripped)
            in_table = True
            i += 1
            continue
        in_table = False
        # block quotes
        if stripped.startswith(">") and ind < 4:
            content = stripped
            while content.startswith(">"):
                content = content[1:].lstrip()
            if content.startswith("[!") and (am := _ADMONITION.match(content)):
                content = content[am.end() :]  # GitHub "> [!NOTE]" marker
            if p.item or p.para_kind != "quote":
                p.flush()
                p.end_list()
            p.para_kind = "quote"
            if not content:
                p.flush_para()
                p.para_kind = "quote"
                continue
            lm = _LIST.match(content)
            if lm:
                p.flush_para()
                p.para_kind = "quote"
                content = content[lm.end() :]
            else:
                am = _ATX.match(content)
                if am:
                    p.flush_para()
                    p.para_kind = "quote"
                    content = content[am.end() :].strip().rstrip("#").strip()
            p.para.append(content)
            continue
        if p.para_kind == "quote":
            p.flush_para()
        # lists
        lm = _LIST.match(line) if c0 in _LIST_START or c0.isdigit() else None
        if lm is None and c0 == "<" and _LI_TAG.match(stripped):
            p.flush()
            p.start_item(ind, ind + 2, False, stripped)
            continue
        if lm:
            marker_indent = _indent(lm.group(1))
            content = line[lm.end() :]
            content_indent = marker_indent + len(lm.group(2)) + 1
            p.start_item(marker_indent, content_indent, lm.group(2)[0].isdigit(), content.strip())
            continue
        if c0 == "<" and _ONLY_TAGS.match(stripped) and not strip_inline(stripped):
            p.flush()
            continue
        p.text_line(stripped, ind, was_blank)
    p.flush()
    p.end_list()
    blocks = [b for b in p.blocks if b.text or b.kind == "row"]
    # re-map parent indexes after dropping empty placeholders
    if len(blocks) != len(p.blocks):
        remap: dict[int, int] = {}
        j = 0
        for k, b in enumerate(p.blocks):
            if b.text or b.kind == "row":
                remap[k] = j
                j += 1
        for b in blocks:
            if b.parent >= 0:
                b.parent = remap.get(b.parent, -1)
    return Parsed(front_title, p.sections, blocks)


@lru_cache(maxsize=2)
def parse(text: str) -> Parsed:
    """Parse once per text: summary and checklist stages share the result (read-only)."""
    return parse_uncached(text)
