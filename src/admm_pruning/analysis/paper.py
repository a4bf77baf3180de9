"""The paper's figures beside ours: quoted as given, never mixed into our numbers, and a claimed gap
between two methods counts as reproduced only when our own intervals back it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from admm_pruning.analysis.compare import comp, versus
from admm_pruning.analysis.runs import Study

ROOT = Path(__file__).resolve().parents[3]
# Every paper figure the suite quotes: per experiment, per study, and the speedup benchmark's.
FIGURES = ROOT / "conf" / "papers" / "figures.yaml"

GAP_SHARE = 0.9  # our compression ratio must reach this share of the paper's for its gap to count as reproduced


def load_figures(path: Path = FIGURES) -> dict[str, Any]:
    """conf/papers/figures.yaml as plain data: ``experiments``, ``studies`` and ``speedup``."""
    return OmegaConf.to_container(OmegaConf.load(path), resolve=True)  # type: ignore[return-value]


def study_points(name: str, path: Path = FIGURES) -> list[dict]:
    """The reference points of study ``name`` (``studies.<name>`` of the figures file)."""
    studies = load_figures(path)["studies"]
    if name not in studies:
        raise KeyError(f"no study {name!r} in {path}; known: {', '.join(sorted(studies))}")
    return studies[name]


def points_for_folder(folder: Path, path: Path = FIGURES) -> list[dict]:
    """The points a study folder (<model>_<data>_<kind>) is compared with: ``studies.<model>_<kind>``,
    else ``studies.<model>``, else none."""
    model, kind = folder.name.split("_")[0], folder.name.rsplit("_", 1)[-1]
    studies = load_figures(path)["studies"]
    return studies.get(f"{model}_{kind}", studies.get(model, []))


def _claim_line(pruner: str, paper_compression: float, s: Study) -> str:
    """Our best compression within 0.5 points set beside one no-loss figure of the paper."""
    ours = s.best[pruner][0.5]
    if ours is None:
        return f"- `{pruner}`: no operating point of ours stays within 0.5 points."
    # the paper quotes one decimal (71.157x is its "71.2x"): compare at that precision
    reached = round(ours.compression, 1) >= paper_compression
    return (f"- `{pruner}`: ours {comp(ours)}, {'at or above' if reached else 'below'} the paper's "
            f"{paper_compression}x ({ours.compression / paper_compression:.2f} of it); our test top-1 there: "
            f"{ours.test.pct()} (n={ours.test.n}).")


def _gap_line(a: str, b: str, top: dict[str, float], s: Study) -> str:
    """The paper says a reaches top[a] / top[b] times b's compression at no loss; ours must come within
    GAP_SHARE of that ratio and `versus` must call a the winner, else the gap is not reproduced."""
    pa, pb = s.best[a][0.5], s.best[b][0.5]
    paper_ratio = top[a] / top[b]
    if pa is not None and pb is not None:
        ours = f"{pa.compression / pb.compression:.2f}x ({comp(pa)} / {comp(pb)})"
        ratio_ok = pa.compression / pb.compression >= paper_ratio * GAP_SHARE
    else:
        ours, ratio_ok = "not computable (a pruner has no point within 0.5 points)", False
    outcome = versus(s, a, b)
    if ratio_ok and outcome.winner == a:
        verdict = f"reproduced here ({outcome.why})"
    else:
        short = "" if ratio_ok or pa is None or pb is None else f"our ratio is below {GAP_SHARE:.0%} of the paper's; "
        verdict = f"NOT reproduced here ({short}{outcome.why})"
    return (f"- Gap `{a}` over `{b}`: paper {paper_ratio:.2f}x ({top[a]}x / {top[b]}x), ours {ours}: "
            f"the paper's gap is {verdict}.")


def paper_section(paper_points: list[dict], s: Study | None = None) -> list[str]:
    """Paper figures quoted as given, clearly separated from our measurements; where a point names
    its pruner and claims no accuracy loss, our best compression within 0.5 points is set beside it."""
    if not paper_points:
        return ["No paper points were given."]
    lines = ["Figures quoted from the paper (not measured here):", ""]
    for p in paper_points:
        top1 = "top-1 not reported (not plotted)" if p.get("top1") is None else f"top-1 {100 * p['top1']:.2f}%"
        lines.append(f"- paper: {p['label']}: compression {p['compression']}x, {top1}")
    claims = [p for p in paper_points if p.get("pruner") and p.get("no_loss") and s and p["pruner"] in s.best]
    if not claims:
        return lines
    lines += ["", "Paper claim (no accuracy loss) against ours (best compression within 0.5 points of our dense, "
              f"selected on {s.basis.label}; different data and budget, see above):", ""]
    lines += [_claim_line(p["pruner"], p["compression"], s) for p in claims]
    top: dict[str, float] = {}
    for p in claims:  # each pruner's highest no-loss claim
        top[p["pruner"]] = max(top.get(p["pruner"], 0.0), p["compression"])
    names = sorted(top, key=lambda n: -top[n])
    lines += [_gap_line(a, b, top, s) for a, b in zip(names, names[1:], strict=False)]
    return lines
