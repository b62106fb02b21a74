"""``--plot FILE.png``: a distribution per hour, drawn with matplotlib's file-only backend.

One box per hour (median, quartiles, whiskers at 1.5 IQR, outliers as points) and the p97 of
each hour as a line, because the tail is what an operator watches (StackTach's report
printed the 97th percentile beside the median).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from stacktide.errors import StacktideError
from stacktide.readers.common import percentile


def hourly(path: str, values: Mapping[datetime, list[float]], title: str, ylabel: str) -> Path:
    """Draw *values* (hour -> durations) into the PNG *path*; return it."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt

    hours = sorted(h for h, v in values.items() if v)
    if not hours:
        raise StacktideError("--plot: nothing to draw in the selected window")
    out = Path(path)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.5 * len(hours) + 2), 4.5), dpi=100)
    try:
        data = [values[h] for h in hours]
        ax.boxplot(data, positions=range(len(hours)), widths=0.6)
        ax.plot(range(len(hours)), [percentile(v, 0.97) for v in data], "r.-", label="p97")
        ax.set_xticks(range(len(hours)), [f"{h:%m-%d %H}h" for h in hours], rotation=60,
                      fontsize=8)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("hour (UTC)")
        ax.legend(loc="upper right")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out, format="png")
    except OSError as exc:
        raise StacktideError(f"--plot: cannot write {out}: {exc}") from exc
    finally:
        plt.close(fig)
    return out
