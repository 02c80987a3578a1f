"""What every chart we draw as a document shares: fonts that hold Chinese as well as English
(the AGP report, the validation pack)."""

from __future__ import annotations

# The first one installed wins; DejaVu has no CJK glyphs, so a machine without the first two
# draws Chinese as boxes (scripts/system-deps.sh installs WenQuanYi).
FONTS = ["WenQuanYi Micro Hei", "Noto Sans CJK SC", "DejaVu Sans"]


class document_fonts:
    """matplotlib's font list (FONTS first) for the duration of one drawing."""

    def __enter__(self) -> None:
        import matplotlib

        self.saved = list(matplotlib.rcParams["font.sans-serif"])
        matplotlib.rcParams["font.sans-serif"] = FONTS + self.saved
        matplotlib.rcParams["font.family"] = "sans-serif"

    def __exit__(self, *exc: object) -> None:
        import matplotlib

        matplotlib.rcParams["font.sans-serif"] = self.saved
