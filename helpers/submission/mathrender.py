"""Formulas: LaTeX drawn by matplotlib's mathtext (:func:`render`), and readable Unicode text where mathtext cannot
draw it (:func:`latex_to_text`)."""



from __future__ import annotations

import io
import re
from dataclasses import dataclass
from functools import lru_cache

MATH_DPI = 300  # formulas are drawn by mathtext at this resolution

_GREEK = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "epsilon": "ε", "varepsilon": "ε", "zeta": "ζ",
    "eta": "η", "theta": "θ", "vartheta": "ϑ", "iota": "ι", "kappa": "κ", "lambda": "λ", "mu": "μ", "nu": "ν",
    "xi": "ξ", "pi": "π", "rho": "ρ", "sigma": "σ", "tau": "τ", "upsilon": "υ", "phi": "φ", "varphi": "φ",
    "chi": "χ", "psi": "ψ", "omega": "ω", "Gamma": "Γ", "Delta": "Δ", "Theta": "Θ", "Lambda": "Λ", "Xi": "Ξ",
    "Pi": "Π", "Sigma": "Σ", "Phi": "Φ", "Psi": "Ψ", "Omega": "Ω",
}
_SYMBOLS = {
    "cdot": "·", "times": "×", "div": "÷", "pm": "±", "mp": "∓", "le": "≤", "leq": "≤", "ge": "≥", "geq": "≥",
    "neq": "≠", "ne": "≠", "approx": "≈", "sim": "∼", "simeq": "≃", "propto": "∝", "equiv": "≡", "infty": "∞",
    "partial": "∂", "nabla": "∇", "sum": "∑", "prod": "∏", "int": "∫", "in": "∈", "notin": "∉", "subset": "⊂",
    "subseteq": "⊆", "cup": "∪", "cap": "∩", "forall": "∀", "exists": "∃", "to": "→", "rightarrow": "→",
    "leftarrow": "←", "Rightarrow": "⇒", "Leftarrow": "⇐", "Leftrightarrow": "⇔", "iff": "⇔", "implies": "⇒",
    "mapsto": "↦", "ldots": "…", "cdots": "⋯", "dots": "…", "odot": "⊙", "otimes": "⊗", "oplus": "⊕",
    "circ": "∘", "langle": "⟨", "rangle": "⟩", "|": "‖", "Vert": "‖", "lVert": "‖", "rVert": "‖", "vert": "|",
    "lvert": "|", "rvert": "|", "mid": "|", "top": "⊤", "emptyset": "∅", "ell": "ℓ", "star": "⋆", "ast": "∗",
    "lfloor": "⌊", "rfloor": "⌋", "lceil": "⌈", "rceil": "⌉", "prime": "′", "quad": "  ", "qquad": "    ",
    ",": " ", ";": " ", ":": " ", " ": " ", "!": "", "\\": " ", "{": "{", "}": "}", "$": "$", "%": "%", "&": "&",
    "#": "#", "_": "_", "cdotp": "·", "lt": "<", "gt": ">", "colon": ":",
}
_SKIP = {"left", "right", "big", "Big", "bigg", "Bigg", "bigl", "bigr", "Bigl", "Bigr", "displaystyle",
         "textstyle", "limits", "nolimits", "nonumber"}
_TEXTLIKE = {"text", "textrm", "textbf", "textit", "mathrm", "mathbf", "mathit", "mathsf", "mathtt", "texttt",
             "boldsymbol", "bm", "operatorname", "mathcal", "mathscr", "mathfrak", "emph"}
_BLACKBOARD = {"R": "ℝ", "N": "ℕ", "Z": "ℤ", "Q": "ℚ", "C": "ℂ", "E": "𝔼", "P": "ℙ"}
_ACCENTS = {"hat": "\u0302", "widehat": "\u0302", "bar": "\u0304", "overline": "\u0305", "tilde": "\u0303",
            "widetilde": "\u0303", "vec": "\u20d7", "dot": "\u0307", "ddot": "\u0308"}
_SUP = dict(zip("0123456789+-=()niTt", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ⁿⁱᵀᵗ", strict=True))
_SUB = dict(zip("0123456789+-=()aeoxhklmnpstijr", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₐₑₒₓₕₖₗₘₙₚₛₜᵢⱼᵣ", strict=True))


def _latex_group(s: str, i: int) -> tuple[str, int]:
    """The argument starting at s[i] ({...}, a command or one character) and the index after it."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return "", i
    if s[i] == "{":
        depth = 0
        for j in range(i, len(s)):
            depth += {"{": 1, "}": -1}.get(s[j], 0) if (j == 0 or s[j - 1] != "\\") else 0
            if depth == 0:
                return s[i + 1:j], j + 1
        return s[i + 1:], len(s)
    if s[i] == "\\":
        m = re.match(r"\\([A-Za-z]+|.)", s[i:])
        assert m is not None
        return m.group(0), i + len(m.group(0))
    return s[i], i + 1


def _script(text: str, table: dict[str, str], mark: str) -> str:
    if text and all(c in table for c in text):
        return "".join(table[c] for c in text)
    return mark + text if len(text) == 1 else f"{mark}({text})"


def latex_to_text(s: str) -> str:
    """LaTeX math -> readable Unicode text (``\\alpha`` -> α, ``x^2`` -> x², ``\\frac{a}{b}`` -> a/b).

    Unknown commands keep their name without the backslash; never raises.
    """
    out: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            m = re.match(r"\\([A-Za-z]+\*?|.?)", s[i:])
            assert m is not None
            cmd = m.group(1).rstrip("*")
            i += len(m.group(0))
            if cmd in _TEXTLIKE:
                arg, i = _latex_group(s, i)
                out.append(latex_to_text(arg))
            elif cmd == "mathbb":
                arg, i = _latex_group(s, i)
                out.append("".join(_BLACKBOARD.get(ch, ch) for ch in arg))
            elif cmd in ("frac", "dfrac", "tfrac"):
                a, i = _latex_group(s, i)
                b, i = _latex_group(s, i)
                a, b = latex_to_text(a), latex_to_text(b)
                a, b = (t if re.fullmatch(r"[\w.′]+", t) else f"({t})" for t in (a, b))
                out.append(f"{a}/{b}")
            elif cmd == "sqrt":
                if i < len(s) and s[i] == "[":
                    j = s.find("]", i)
                    i = j + 1 if j > 0 else i
                arg, i = _latex_group(s, i)
                arg = latex_to_text(arg)
                out.append("√" + (arg if len(arg) == 1 else f"({arg})"))
            elif cmd in _ACCENTS:
                arg, i = _latex_group(s, i)
                out.append(latex_to_text(arg) + _ACCENTS[cmd])
            elif cmd in _SKIP:
                continue
            elif cmd in ("begin", "end"):  # environments (aligned, cases, ...): their content only
                _, i = _latex_group(s, i)
                out.append(" ")
            elif cmd in _GREEK:
                out.append(_GREEK[cmd])
            elif cmd in _SYMBOLS:
                out.append(_SYMBOLS[cmd])
            else:
                out.append(cmd)  # \log, \max, \exp, unknown commands: their name
        elif c in "^_":
            arg, i = _latex_group(s, i + 1)
            arg = latex_to_text(arg)
            out.append(_script(arg, _SUP if c == "^" else _SUB, c))
        elif c == "{":
            arg, i = _latex_group(s, i)
            out.append(latex_to_text(arg))
        elif c == "}":
            i += 1
        elif c == "~":
            out.append(" ")
            i += 1
        elif c == "&":  # an alignment point
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class Formula:
    """A formula drawn by mathtext: a PNG (white background) and its size in mm; the baseline lies ``depth`` mm
    above the image's bottom edge, so ``height - depth`` of it stands above the line of text."""

    png: bytes
    width: float
    height: float
    depth: float

    @property
    def ascent(self) -> float:
        return self.height - self.depth


_MATHTEXT_SPELLING = [  # LaTeX that mathtext spells differently (or not at all): rewritten before drawing
    (re.compile(r"\\tfrac(?![A-Za-z])"), r"\\frac"),
    (re.compile(r"\\(d?frac)\s*([A-Za-z0-9])\s*([A-Za-z0-9])"), r"\\\1{\2}{\3}"),  # \frac23
    (re.compile(r"\\(mathbb|mathbf|mathrm|mathcal|mathit|mathsf)\s+([A-Za-z0-9])"), r"\\\1{\2}"),  # \mathbb 1
    (re.compile(r"\\[lr]Vert(?![A-Za-z])"), r"\\|"),
    (re.compile(r"\\[lr]vert(?![A-Za-z])"), "|"),
]


_INLINE_LIMITS = [  # in a line of text, limits go beside the operator (LaTeX's text style): mathtext sets \sum's
    # and \max's below and above, its Unicode characters' and \operatorname's beside
    (re.compile(r"\\sum(?![A-Za-z])"), "\u2211"),
    (re.compile(r"\\prod(?![A-Za-z])"), "\u220f"),
    (re.compile(r"\\(max|min|sup|inf|lim)(?=\s*_)"), r"\\operatorname{\1}"),
]


def _mathtext_spelling(tex: str, inline: bool = False) -> str:
    for pattern, repl in _MATHTEXT_SPELLING + (_INLINE_LIMITS if inline else []):
        tex = pattern.sub(repl, tex)
    return tex


@lru_cache(maxsize=1024)
def render(tex: str, size: float = 12.0, color: tuple[int, int, int] = (0, 0, 0), dpi: int = MATH_DPI,
           inline: bool = False) -> Formula | None:
    """LaTeX math (without the ``$``) drawn by matplotlib's mathtext at ``size`` points, or None when mathtext
    cannot parse it (environments such as ``aligned``, ``\\\\`` line breaks, unsupported commands): the caller then
    writes :func:`latex_to_text` instead. The metrics come from mathtext's own layout, at ``dpi``. ``inline``: a
    formula in a line of text, with the limits of sums, products, max, min, ... beside the operator."""
    tex = " ".join(tex.strip().split())
    if not tex:
        return None
    try:
        from matplotlib import rc_context
        from matplotlib.figure import Figure
        from matplotlib.font_manager import FontProperties
        from matplotlib.mathtext import MathTextParser
    except ImportError:
        return None
    s = f"${_mathtext_spelling(tex, inline)}$"
    buf = io.BytesIO()
    try:  # DejaVu, as the body text, whatever style a notebook set
        with rc_context({"mathtext.fontset": "dejavusans", "mathtext.default": "it", "text.usetex": False}):
            prop = FontProperties(family="DejaVu Sans", size=size)
            width, height, depth = MathTextParser("path").parse(s, dpi=dpi, prop=prop)[:3]  # in pixels at dpi
            if width <= 0 or height <= 0:
                return None
            fig = Figure(figsize=(width / dpi, height / dpi))
            fig.text(0, depth / height, s, fontproperties=prop, color=tuple(c / 255 for c in color))
            fig.savefig(buf, dpi=dpi, format="png", facecolor="white")
    except Exception:  # mathtext raises ValueError on what it cannot parse, and other errors on odd input
        return None
    from PIL import Image

    with Image.open(io.BytesIO(buf.getvalue())) as img:
        w_px, h_px = img.size
    mm = 25.4 / dpi
    return Formula(buf.getvalue(), w_px * mm, h_px * mm, float(depth) * mm)
