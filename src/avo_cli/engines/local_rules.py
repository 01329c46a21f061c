"""Rule classifier of the offline engine: is a statement a rule, and is it required?

``classify(sentence, in_list=...)`` returns True (a requirement), False (a
recommendation) or None (not a rule: explanation, history, example, question,
description). English is decided by the governing modal verb (RFC 2119
keywords first), then imperative mood and constraint wording; Korean by the
sentence-final predicate.
"""

from __future__ import annotations

import re


def _words(s: str) -> list[str]:
    return s.split()


_SENTENCE_SPLIT = re.compile(r"(?<=[.!?。！？])[ \t]+(?=[^a-z\s])")


_SPLIT_HINTS = (". ", "! ", "? ", ".\t", "!\t", "?\t", "。", "！", "？")
_ABBREVIATIONS = ("e.g.", "i.e.", "etc.", "vs.", "cf.", "approx.", "mr.", "dr.", "no.", "fig.")


def split_sentences(text: str) -> list[str]:
    if not any(p in text for p in _SPLIT_HINTS):
        return [text] if text else []
    parts = _SENTENCE_SPLIT.split(text)
    if len(parts) == 1:
        return parts if text else []
    out: list[str] = []
    for part in parts:
        if not part:
            continue
        if out and out[-1][-6:].lower().endswith(_ABBREVIATIONS):
            out[-1] = f"{out[-1]} {part}"  # "e.g. Foo" does not end a sentence
        else:
            out.append(part)
    return out


# --- English --------------------------------------------------------------------------------

_NOT_RULE_START = re.compile(
    r"^(?:for example|for instance|e\.g\.|i\.e\.|example:|examples:|eg:|this is because|"
    r"that is because|because |the reason|historically|in the past|we adopted|"
    r"예를 들어|예를 들면|예:|예\)|예시|이는 |왜냐하면|그 이유는|역사적으로|과거에는)",
    re.IGNORECASE,
)
_SUBORDINATE = re.compile(
    r"^(?:if|when|whenever|unless|where|wherever|although|though|while|before|after|once|"
    r"since|until|as long as|in case)\b",
)
# governing cues; group name tells the strength
_MODAL = re.compile(
    r"\b(?:(?P<strong>must|mustn't|shall|shan't|"
    r"(?<!no )(?<!not )(?<!n't )(?:needs?\s+to|has\s+to|have\s+to)|"
    r"(?:is|are|be|been|being|was|were)\s+(?:\w+\s+)?required|required to|mandatory|compulsory|"
    r"(?:is|are|isn't|aren't|be)\s+not\s+(?:allowed|permitted)|(?:isn't|aren't)\s+(?:allowed|permitted)|"
    r"prohibited|forbidden|disallowed|banned|(?:is|are)\s+expected\s+to|(?:is|are)\s+limited\s+to|"
    r"requires?|not\s+acceptable|unacceptable|"
    r"(?<!no )(?<!not )(?<!n't )needs?\s+(?:a|an|at\s+least|one|two|three|\d+)\b|"
    r"(?:will\s+not|won't)\s+be\s+(?:merged|accepted|approved|deployed)|"
    r"(?:is|are)\s+not\s+(?:accepted|merged)|"
    r"(?:it's|it\s+is)\s+(?:important|essential|crucial|critical|vital|necessary)\s+(?:to|that))"
    r"|(?P<weak>should|shouldn't|ought\s+to|recommended|recommend|advisable|advised|"
    r"encouraged|discouraged|optional|(?:it's|it\s+is)\s+better|better\s+to|suggested|suggest|"
    r"ideally|preferably|"
    r"may(?!\s+(?:be|cause|lead|result|happen|take|seem|appear|vary|fail|break|not\s+work|"
    r"differ|change|contain|include|also\s+be)\b)))\b"
)
_ONLY_MAY = re.compile(r"^only\b.*\b(?:may|can)\b|^(?:every|each|all|any)\b[^,;]*\bneeds?\b")
_STRONG_START = re.compile(
    r"^(?:please\s+|you\s+|we\s+)?(?:never|always|(?:do\s+not|don't|dont)(?!\s+(?:need|have)\b)|"
    r"do\s+never)\b"
    r"|^no\s+(?!one\b|longer\b|matter\b|need\b|doubt\b|problem\b)\w"  # "No force pushes."
)
_NEVER = re.compile(
    r"\bnever\b|\b(?:we|you)\s+(?:always|(?:do\s+not|don't)(?!\s+(?:need|have)\b))\b"
)
_WEAK_VERB = re.compile(
    r"\b(?:avoid|prefer|consider)\b|^(?:please\s+)?try\s+(?:not\s+)?to\b|"
    r"\b(?:you|we)\s+(?:should\s+)?try\s+(?:not\s+)?to\b"
)

_VERBS = frozenset(
    _words(
        """
        accept add adhere align allocate annotate append apply approve ask assert assign
        attach avoid back backport be bump call catch check choose clean clone close comment
        commit compare configure confirm consider contact copy cover create declare default
        define delete deploy describe disable discuss do document double-check drop emit
        enable encrypt ensure escape exclude explain export expose extract favor favour fetch
        file fill fix flag follow fork format free generate give group guard handle hash hide
        honor honour import include indent inform install isolate keep label leave limit link
        lint list load lock log make mark measure mention merge migrate minimize mock move
        name nest normalize notify obey omit open order pass pick pin place post prefer prefix
        prepend preserve prevent print protect provide push put quote raise read rebase record
        reduce refactor reference reject release remember remove rename reply report request
        require rerun reserve resolve respect respond restrict return reuse review rotate run
        sanitize save scope search select send separate set share sign simplify skip sort
        specify split squash start state stay stick store strip structure submit suffix supply
        support switch sync tag take target test think throw treat trim try turn type unpin
        update upgrade use validate verify version wait wrap write
        paginate adopt announce archive audit authenticate authorize automate benchmark bind
        cancel cap centralize clear collect combine communicate compile compress comply
        consolidate convert correct debug decide decouple defer delegate deprecate design detect
        downgrade edit eliminate encapsulate encode enforce estimate evaluate expire fail flush
        forward freeze gate ignore implement inject inspect introduce invalidate maintain manage
        minimise monitor mount parameterize parametrize parse patch persist plan poll prioritize
        profile promote publish purge query redact refer register reload render replace
        reproduce reset restart restore retry revert revoke rewrite salt schedule scan serialize
        serve ship stage standardize stream stub subscribe summarize suppress track translate
        trigger truncate unify upload watch allowlist wire show display associate highlight
        disclose justify localize optimize harden sandbox prepare focus caption announce
        attribute credit cite link unlink propagate emit instrument expose export trace
        reserve delegate inherit embed vendor retire sunset enforce grant revoke
        page roll escalate hand ping tell
        wake declare rotate tidy clarify copy document drain reboot repeat rerun snapshot
        """
    )
)
_FINITE = frozenset(
    _words("is are was were has have had will can could would should must may does did")
)
_OBJECT_START = frozenset(
    _words("the a an every each all any your our their this that these those it them no")
)
_NOT_VERBS = frozenset(
    _words(
        """
        often usually after before during for in on at by with from to if when while because
        unless since as then also only even just once here there now today below above under
        over between through per via about like we you they it he she i everyone nobody
        somebody someone anyone everything nothing one both either neither such what which
        who why how where whether but and or nor yet so not never always sometimes almost
        however therefore meanwhile otherwise instead later afterwards hence thus still yes
        of off out up down into onto upon without within across against among around behind
        beyond near toward towards until despite except inside outside most many much more
        some few several other another same new old good bad best worst first last next
        yesterday tomorrow tonight
        """
    )
)
_NOUN_NEXT = frozenset(
    _words(
        """
        is are was were has have had will can could would should must may does did of 's
        """
    )
)
_DETERMINERS = frozenset(
    _words(
        """
        the a an your our their all every each this that these those it them any no
        """
    )
)
_LEAD_SKIP = frozenset(
    _words(
        """
        please also then first next finally and so just now kindly only simply explicitly
        carefully briefly clearly immediately regularly consistently manually
        """
    )
)
_WORD = re.compile(r"[a-z][a-z'’-]*")
_RELATIVE_TAIL = re.compile(r"\b(?:that|which|who|whose)\s+(?:\S+\s+)?$")
_ONLY_AFTER = re.compile(r"\bonly\s+(?:with|if|when|after|for|by|through|via|from|in)\b")
_UPPER_KEYWORDS = ("MUST", "SHALL", "SHOULD", "REQUIRED", "RECOMMENDED", "MAY", "OPTIONAL")
_RFC_UPPER = re.compile(
    r"(?<![\"“'‘])\b(MUST|SHALL|REQUIRED|SHOULD|RECOMMENDED|MAY|OPTIONAL)\b(?![\"”'’])"
)
_BOILERPLATE = re.compile(r"\b(?:rfc\s?2119|bcp\s?14)\b")
_HELP_START = re.compile(r"^(?:please\s+)?(?:ask|contact|reach\s+out|ping|talk\s+to)\b")
_HELP_HINT = re.compile(r"#[a-z]|\bchannel\b|\bquestions?\b|\bneed\s+access\b")
_ADVICE_LABELS = frozenset(["tip", "tips", "hint", "suggestion", "recommendation", "pro tip"])
_ONLY_STARTS = ("only", "every", "each", "all", "any")
# the words without which _MODAL, _STRONG_START/_NEVER and _WEAK_VERB cannot match
_MODAL_TRIGGERS = frozenset(
    _words(
        """
        must mustn't shall shan't need needs has have required mandatory compulsory allowed
        permitted prohibited forbidden disallowed banned expected limited require requires
        acceptable unacceptable will won't not important essential crucial critical vital
        necessary should shouldn't ought recommended recommend advisable advised
        encouraged discouraged optional better suggested suggest may ideally preferably
        """
    )
)
_STRONG_TRIGGERS = frozenset(["never", "always", "do", "don't", "dont", "no"])
_WEAK_TRIGGERS = frozenset(["avoid", "prefer", "consider", "try"])


def _imperative(lower: str, words: list[str] | None = None) -> bool | None:
    """True/False if the clause starts with an imperative verb (False: advice verbs)."""
    if words is None:
        words = _WORD.findall(lower[:160])
    if not words:
        return None
    # the first word must open the clause (no leading number, code or quote)
    head = lower.lstrip(" \t\"'“‘(*-–—")
    if not head.startswith(words[0]):
        return None
    k = 0
    while k < len(words) - 1 and words[k] in _LEAD_SKIP:
        k += 1
    if len(words) - k < 2 and not lower.rstrip().endswith((".", "!")):
        return None  # a lone word ("fix") is a label, not an instruction
    if k == 0 and head[len(words[0]) : len(words[0]) + 1] == ":":
        return None  # "Tip: the portal ...", "Note: ...": a label, not a verb
    w0 = words[k].replace("’", "'")
    w1 = words[k + 1] if k + 1 < len(words) else ""
    w2 = words[k + 2] if k + 2 < len(words) else ""
    if w0 in ("don't", "dont") or (w0 == "do" and w1 == "not"):
        return True
    # an unknown word right before an object ("Associate every input ...") is most
    # likely a verb; nouns, adverbs and prepositions are ruled out by list and form
    if (
        w0 not in _VERBS
        and not (w0[:2] in ("un", "re") and w0[2:] in _VERBS)
        and not (
            w1 in _OBJECT_START
            and w0 not in _NOT_VERBS
            and not w0.endswith(("s", "ed", "ing", "ly", "'s"))
            and len(w0) > 2
        )
    ):
        return None
    if w1 in _NOUN_NEXT or (w2 in _FINITE and w1 not in _DETERMINERS):
        return None  # "Use of globals...", "Test coverage is..."
    return w0 not in ("avoid", "prefer", "consider", "try")  # advice verbs: optional


def _english(s: str) -> bool | None:
    lower = s.lower().replace("’", "'")
    if _NOT_RULE_START.match(lower) or (
        ("2119" in lower or "bcp" in lower) and _BOILERPLATE.search(lower)
    ):
        return None
    if _HELP_START.match(lower) and _HELP_HINT.search(lower):
        return None  # "Ask in #releases if you need access.": a pointer, not a rule
    if any(k in s for k in _UPPER_KEYWORDS):
        m = _RFC_UPPER.search(s)  # RFC 2119 capitals are unambiguous
        if m is not None:
            return m.group(1) in ("MUST", "SHALL", "REQUIRED")
    clauses = [lower]
    if _SUBORDINATE.match(lower) and "," in lower:
        clauses.insert(0, lower.split(",", 1)[1].strip())
    for clause in clauses:
        verdict = _english_clause(clause)
        if verdict is not None:
            return verdict
    return None


def _english_clause(lower: str) -> bool | None:
    # a cheap word-set test gates every unanchored regex search
    word_list = _WORD.findall(lower)
    words = set(word_list)
    if lower.startswith(_ONLY_STARTS) and _ONLY_MAY.match(lower):
        return True
    if not words.isdisjoint(_MODAL_TRIGGERS):
        m = _MODAL.search(lower)
        if m is not None:
            # "Code that must run on 3.8 should avoid X": the relative clause's modal
            # does not govern; the next one (the main verb's) does
            if _RELATIVE_TAIL.search(lower, max(0, m.start() - 40), m.start()):
                m2 = _MODAL.search(lower, m.end())
                if m2 is not None:
                    m = m2
            if m.group(0) == "may" and _ONLY_AFTER.search(lower, m.end(), m.end() + 120):
                return True  # "X may do Y only with a ticket": a restriction
            return m.group("strong") is not None
    if not words.isdisjoint(_STRONG_TRIGGERS) and (
        _STRONG_START.match(lower) or _NEVER.search(lower)
    ):
        return True
    verdict = _imperative(lower, word_list)
    if verdict is not None:
        return verdict
    # "Naming: use snake_case", "...; consider splitting it"
    for sep in (":", ";", " — ", " – ", " - "):
        if sep in lower:
            head, _, rest = lower.partition(sep)
            if sep == ";" or len(head.split()) <= 4:
                verdict = _imperative(rest.strip())
                if verdict is not None:
                    # "Tip: use the portal" is advice, "Naming: use snake_case" a rule
                    return verdict and head.strip(" *") not in _ADVICE_LABELS
    if not words.isdisjoint(_WEAK_TRIGGERS) and _WEAK_VERB.search(lower):
        return False
    return None


# --- Korean ---------------------------------------------------------------------------------

_HANGUL = re.compile(r"[가-힣]")
_LETTER = re.compile(r"[^\W\d_]")
_KO_OPTIONAL_END = re.compile(
    r"(?:(?:것이|게|편이|편이\s*더|면|으면)\s*(?:좋습니다|좋다|좋아요|좋겠습니다|바람직합니다|바람직하다|"
    r"낫습니다|낫다|안전합니다|안전하다)|바람직합니다|바람직하다|"
    r"(?:권장|권고|추천|지양|지향)(?:합니다|됩니다|한다|된다|해요|함|됨|하세요|하십시오|해\s*주세요|할\s*것|"
    r"사항입니다|사항|)|고려(?:하세요|하십시오|해\s*주세요|해\s*보세요|해보세요|할\s*것|합니다|한다)|"
    r"(?:해도|어도|아도|도)\s*(?:됩니다|된다|좋습니다|괜찮습니다)|선택\s*사항(?:입니다|이다|)|"
    r"것도\s*(?:좋은\s*)?방법(?:이다|입니다))$"
)
_KO_REQUIRED_END = re.compile(
    r"(?:(?:야|어야|아야|여야)\s*(?:합니다|한다|함|해요|됩니다|된다)|"
    r"세요|십시오|시오|바랍니다|말\s*것|맙시다|합시다|도록\s*(?:합니다|한다)|"
    r"원칙(?:으로\s*(?:합니다|한다)|입니다|이다)|필요가\s*있(?:습니다|다)|"
    r"(?:금지|필수|불가)(?:합니다|됩니다|한다|된다|입니다|이다|임|함|)|"
    r"(?:허용|허락)(?:되지|하지)\s*않(?:습니다|는다|음)|안\s*(?:됩니다|된다|돼요|됨)|"
    r"하지\s*않(?:습니다|는다)|필요(?:합니다|하다|함)|의무(?:입니다|이다|))$"
)
# list items in 합니다체/한다체/해요체: "리뷰어를 지정합니다", "이름은 PascalCase로 지어요"
_KO_LIST_DECL = re.compile(
    r"(?<!의미)(?<!해당)(?<!지원)(?<!설명)(?<!위치)(?<!존재)(?:합니다|한다|해요)$|"
    r"(?![있없되좋같])[가-힣](?:어요|아요)$"
)
_KO_LIST_NOUN = re.compile(
    r"(?:작성|사용|포함|확인|추가|삭제|제거|적용|유지|명시|기재|설정|검토|실행|지정|준수|제공|기록|표시|"
    r"통일|분리|금지|필수|하기)$"
)
_KO_ONLY_CAN = re.compile(r"만\s.*수\s*있(?:다|습니다|음)$")
_KO_META_SUBJECT = re.compile(
    r"^(?:이|본|아래|다음)\s*(?:문서|가이드|도구|스크립트|섹션|장|절|표|규칙은)"
)
_KO_DESCRIPTIVE_VERB = ("의미한다", "뜻한다", "해당한다", "속한다", "지원한다", "설명한다", "된다")
_KO_POINTER_END = re.compile(
    r"(?:참고|참조|문의|물어)(?:하세요|하십시오|해\s*주세요|하시기\s*바랍니다|보세요|봐\s*주세요)$"
)
_KO_STRONG_WORD = re.compile(r"반드시|절대로|절대")
_KO_TRAIL = " \t.!。…\"'”’)]*~"


def _rieul_final(ch: str) -> bool:
    code = ord(ch) - 0xAC00
    return 0 <= code < 11172 and code % 28 == 8


def _bnida_verb(k: str) -> bool:
    """A ~ㅂ니다 verb ending other than 입니다/습니다/됩니다: 봅니다, 둡니다, 씁니다."""
    if len(k) < 3 or not k.endswith("니다"):
        return False
    prev = k[-3]
    if prev in "입습됩":
        return False
    code = ord(prev) - 0xAC00
    return 0 <= code < 11172 and code % 28 == 17  # final consonant ㅂ


def _plain_present(k: str) -> bool:
    """A plain-style present-tense verb ending (~ㄴ다/~는다), the rule register of 한다체."""
    if len(k) < 3 or not k.endswith("다") or k.endswith(_KO_DESCRIPTIVE_VERB):
        return False
    prev = k[-2]
    if prev == "는":
        return True
    code = ord(prev) - 0xAC00
    return 0 <= code < 11172 and code % 28 == 4  # final consonant ㄴ: 한다, 돌린다, 따른다


def _korean(s: str, in_list: bool) -> bool | None:
    if _NOT_RULE_START.match(s):
        return None
    k = s.rstrip(_KO_TRAIL)
    if _KO_POINTER_END.search(k[-20:]):
        return None  # "자세한 내용은 운영 가이드를 참고하세요": a pointer, not a rule
    if k.endswith(")") or k.endswith("）"):
        cut = max(k.rfind("("), k.rfind("（"))
        if cut > 0:
            k = k[:cut].rstrip(_KO_TRAIL)
    tail = k[-40:]
    if _KO_OPTIONAL_END.search(tail):
        return False
    if _KO_REQUIRED_END.search(tail):
        return True
    if tail.endswith("것") and len(tail) >= 2:  # "테스트를 작성할 것"
        prev = tail[:-1].rstrip()
        if prev and _rieul_final(prev[-1]):
            return True
    if in_list and (_KO_LIST_DECL.search(tail) or _KO_LIST_NOUN.search(tail) or _bnida_verb(tail)):
        return True
    if _KO_ONLY_CAN.search(tail):  # "태그는 담당자만 생성할 수 있다"
        return True
    if _plain_present(tail) and not _KO_META_SUBJECT.match(
        s
    ):  # 한다체: "제목은 50자 이내로 작성한다"
        return True
    if _KO_STRONG_WORD.search(k) and _HANGUL.search(tail[-1:] or ""):
        return True
    return None


_LEVEL_TAG = re.compile(
    r"^[\[(【「]\s*(필수|권장|선택|강제|required|mandatory|must|recommended|optional|should|may)"
    r"\s*[\])】」]|^(필수|권장|required|mandatory|must|recommended|optional|should)\s*:\s*\S",
    re.IGNORECASE,
)
_TAG_REQUIRED = frozenset(["필수", "강제", "required", "mandatory", "must"])


# --- entry points ---------------------------------------------------------------------------


def _ends_in_hangul(s: str) -> bool:
    for ch in reversed(s):
        if ch.isalnum():
            return "가" <= ch <= "힣"
    return False


def classify(sentence: str, *, in_list: bool = False) -> bool | None:
    """True = required rule, False = optional rule, None = not a rule."""
    s = sentence.strip()
    if not s or s.endswith("?") or s.endswith("？"):
        return None
    if not s[0].isalpha() and _LETTER.search(s) is None:
        return None
    tag = _LEVEL_TAG.match(s)  # "[필수] ...", "(Recommended) ...", "MUST: ..."
    if tag is not None:
        return (tag.group(1) or tag.group(2)).lower() in _TAG_REQUIRED
    if not s.isascii() and _HANGUL.search(s):
        verdict = _korean(s, in_list)
        if verdict is not None or _ends_in_hangul(s):
            return verdict
    return _english(s)


def classify_text(text: str, *, in_list: bool = False) -> bool | None:
    """Classify a multi-sentence statement: the first rule sentence decides."""
    for sentence in split_sentences(text):
        verdict = classify(sentence, in_list=in_list)
        if verdict is not None:
            return verdict
    return None
