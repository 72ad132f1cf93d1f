"""The front figure of `marl pareto`: one panel per front group, every member numbered on the plot and named
in the panel's legend, the same colour and marker for the same family in every figure.

- Family: a hand-designed policy (`heuristic:fixed_roles/pso`) or a learned team by its sharing scheme
  (`learned/shared`, `learned/grouped`, `learned/hyper`); `FAMILY_STYLES` fixes their colours and markers,
  and any other family gets a colour from a hash of its name (stable across figures, runs and machines).
- Each point is a member's seed mean with its 95% interval (`marl.pareto.interval`: kept inside the
  objective's range). Filled markers are on the front (joined by its staircase), hollow ones dominated; the
  most balanced member is ringed.
- Off-scale members: a dominated member that lies beyond a gap in one objective wider than the spread of
  all members below that gap (the random team), or further beyond the front's worst value than 1.5 times the
  front's own extent in that objective, would squeeze the front into a corner. It is drawn as an arrow head
  at the axis edge, pointing to where it lies; its values are in the legend, as for every member.
- Numbers beside the points are placed where they overlap no other number or marker, and off the front's
  staircase where a spot as near allows (a leader line joins a number set further away to its point).
  Members drawn on the same spot (teams that behave alike, e.g. a switching team whose every agent searches
  and the fixed-roles team of all searchers) share one label, their numbers joined by "=", so no marker
  hides another unnamed.
"""

from __future__ import annotations

import math
import textwrap
import zlib
from collections.abc import Sequence

from marl.pareto import with_interval

# family -> (colour, marker); the order is the legend's order
FAMILY_STYLES: dict[str, tuple[str, str]] = {
    "heuristic:patrol": ("#2ca02c", "p"),
    "heuristic:fixed_roles/pso": ("#ff7f0e", "o"),
    "heuristic:fixed_roles/ecoli": ("#8c564b", "v"),
    "heuristic:switch/pso": ("#1f77b4", "s"),
    "heuristic:switch/ecoli": ("#17becf", "D"),
    "learned/shared": ("#9467bd", "^"),
    "learned/shared/team-reward": ("#3f007d", "8"),  # a shared actor paid the team reward, not role rewards
    "learned/grouped": ("#d62728", "P"),
    "learned/hyper": ("#e377c2", "*"),
    "learned/independent": ("#bcbd22", "h"),
    "learned": ("#000000", "d"),
    "heuristic:random": ("#7f7f7f", "X"),
}
_OTHER_COLOURS = ["#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354"]
_OTHER_MARKERS = ["H", "<", ">", "8", "d"]
FAR_FROM_FRONT = 1.5  # off scale beyond the front's worst value + this x the front's extent (one objective)
LEGEND_FONT = 7.5
STAIRCASE_COST = 0.02  # per square pixel of a number on the staircase: below 1 for a number's width


def family_of(entry: dict) -> str:
    """A member's family: its `family` field, or (summaries written before it existed) its policy, with
    the sharing scheme for a learned member."""
    if "family" in entry:
        return str(entry["family"])
    return member_family(entry.get("choices", {}), str(entry["policy"]))


def member_family(choices: dict, policy: str) -> str:
    """`learned/<sharing>` for a learned member whose grid sets a sharing scheme (`.../team-reward` when it
    is paid the team reward instead of role rewards), else the policy."""
    if policy != "learned":
        return policy
    setting = {k.split(".")[-1]: v for k, v in choices.items()}
    family = f"learned/{setting['sharing']}" if "sharing" in setting else "learned"
    return family + ("/team-reward" if setting.get("reward_mode") == "team" else "")


def family_style(family: str) -> tuple[str, str]:
    """(colour, marker) of a family: fixed for the known ones (a variant such as `heuristic:patrol/pso`
    takes its base's), otherwise chosen by a CRC of the name, so the same in every figure."""
    if family in FAMILY_STYLES:
        return FAMILY_STYLES[family]
    base = family.split("/")[0]
    if base in FAMILY_STYLES:
        return FAMILY_STYLES[base]
    code = zlib.crc32(family.encode())
    return _OTHER_COLOURS[code % len(_OTHER_COLOURS)], _OTHER_MARKERS[code % len(_OTHER_MARKERS)]


def _family_rank(family: str) -> int:
    order = list(FAMILY_STYLES)
    base = family if family in FAMILY_STYLES else family.split("/")[0]
    return order.index(base) if base in FAMILY_STYLES else len(order)


def _short(name: str) -> str:
    return name.split("/")[-1]


def display_name(family: str) -> str:
    return family.removeprefix("heuristic:")


def panel_members(summary: dict, front_name: str) -> list[str]:
    """The members of one front group in legend order: by family (`FAMILY_STYLES` order), then as listed."""
    labels = summary["fronts"][front_name]["members"]
    return sorted(
        labels, key=lambda label: (_family_rank(family_of(summary["members"][label])), labels.index(label))
    )


def member_text(summary: dict, label: str) -> str:
    """A member's name without the settings the panel title and the family already say."""
    entry = summary["members"][label]
    hidden = {*summary["front_per"], "policy", "sharing", "reward_mode"}
    rest = [
        f"{'critic' if k.endswith('critic.scheme') else k.split('.')[-1]}={v}"
        for k, v in entry["choices"].items()
        if k.split(".")[-1] not in hidden
    ]
    return " ".join([display_name(family_of(entry)), *rest])


def off_scale(values: list[float], dominated: list[bool]) -> set[int]:
    """Indices of the dominated values drawn off scale in one objective: those above a gap wider than the
    (non-zero) spread of the values below it (a random team), and those further beyond the front's worst
    value than `FAR_FROM_FRONT` times the front's own extent (a few dominated teams far from a narrow front).
    At most half of the values, and never a front member."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranked = [values[i] for i in order]
    beyond_gap: set[int] = set()
    for j in range(max(3, math.ceil(len(values) / 2)), len(values)):
        gap = ranked[j] - ranked[j - 1]
        spread = ranked[j - 1] - ranked[0]  # (equal values below: nothing to squeeze)
        if spread > 0 and gap > spread:
            above = order[j:]
            beyond_gap = set(above) if all(dominated[i] for i in above) else set()
            break
    front = [v for v, d in zip(values, dominated, strict=True) if not d]
    far: set[int] = set()
    if len(front) >= 2 and max(front) > min(front):
        limit = max(front) + FAR_FROM_FRONT * (max(front) - min(front))
        far = {i for i, v in enumerate(values) if dominated[i] and v > limit}
    both = beyond_gap | far
    return both if len(both) <= len(values) // 2 else beyond_gap


def plot_fronts(summary: dict, title: str, fronts: list[str] | None = None):
    """The figure (matplotlib, Agg) of `fronts` (default: every front group of the summary), laid out in
    inches: each panel with its legend to its right, two panels a row when that stays within 16 inches
    (else one), the titles wrapped to the width."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = fronts or list(summary["fronts"])
    x_name, y_name = summary["objectives"][:2]
    figure = plt.figure(figsize=(8, 6), dpi=110)
    renderer = figure.canvas.get_renderer()
    widest = 0.0
    for name in names:
        for text in legend_entries(summary, name)[1]:
            probe = figure.text(0, 0, text, fontsize=LEGEND_FONT, fontweight="bold")
            widest = max(widest, probe.get_window_extent(renderer).width / figure.dpi)
            probe.remove()
    axis_width, left, gap, between = 5.0, 0.85, 0.3, 0.45
    legend_width = widest + 0.45  # the marker before each line
    columns = min(2, len(names)) if 2 * (left + axis_width + gap + legend_width) + between <= 16 else 1
    rows = -(-len(names) // columns)
    most = max(len(summary["fronts"][n]["members"]) for n in names)
    axis_height = max(4.2, 0.152 * most + 0.45)
    width = columns * (left + axis_width + gap + legend_width) + (columns - 1) * between
    wrap = int(width * 72 / (10.5 * 0.56))
    intervals = summary.get("interval", "95% interval over seeds")
    heading = textwrap.wrap(title, wrap)
    seeds = summary["seeds"]
    points = (
        f"Points: mean over seeds {seeds}; bars: {intervals}."
        if len(seeds) > 1
        else f"Points: seed {seeds[0]} alone (one seed: no interval bars)."
    )
    note = textwrap.wrap(
        f"{points} Filled: on the front (joined by the staircase), hollow: dominated, ringed: the most "
        "balanced front member.",
        int(wrap * 10.5 / 9),
    )
    top = 0.25 + 0.2 * len(heading) + 0.17 * len(note) + 0.35  # the headings, then the panel title
    row_height = axis_height + 0.6 + 0.35  # the axis, its x label, the next panel's title
    height = top + rows * row_height
    figure.set_size_inches(width, height)
    for index, name in enumerate(names):
        row, column = divmod(index, columns)
        x0 = column * (left + axis_width + gap + legend_width + between) + left
        y0 = height - top - row * row_height - axis_height
        axis = figure.add_axes((x0 / width, y0 / height, axis_width / width, axis_height / height))
        _draw_panel(figure, axis, summary, name, x_name, y_name, gap / axis_width)
    figure.text(0.5, 1 - 0.15 / height, "\n".join(heading), ha="center", va="top", fontsize=10.5)
    note_top = 1 - (0.2 + 0.2 * len(heading)) / height
    figure.text(0.5, note_top, "\n".join(note), ha="center", va="top", fontsize=9, color="0.25")
    return figure


def off_scale_members(summary: dict, name: str) -> tuple[set[int], set[int]]:
    """The positions (in legend order) of a front group's members drawn off scale in x and in y."""
    front = summary["fronts"][name]
    labels = panel_members(summary, name)
    dominated = [label not in front["front"] for label in labels]
    return tuple(
        off_scale([summary["members"][label]["objectives"][o]["mean"] for label in labels], dominated)
        for o in summary["objectives"][:2]
    )


def legend_entries(summary: dict, name: str) -> tuple[list[str], list[str]]:
    """A front group's members in legend order and their legend lines: number, name, the objectives' means
    and notes (front, most balanced, off scale)."""
    front = summary["fronts"][name]
    labels = panel_members(summary, name)
    x_name, y_name = summary["objectives"][:2]
    clipped = set.union(*off_scale_members(summary, name))
    texts = []
    for i, label in enumerate(labels):
        entry = summary["members"][label]
        notes = ["front"] if label in front["front"] else []
        notes += ["most balanced"] if label == front["most_balanced"] else []
        notes += ["off scale"] if i in clipped else []
        values = f"{entry['objectives'][x_name]['mean']:.1f}, {entry['objectives'][y_name]['mean']:.1f}"
        texts.append(
            f"{i + 1:>2}  {member_text(summary, label)}: {values}"
            + (f" ({', '.join(notes)})" if notes else "")
        )
    return labels, texts


def _draw_panel(figure, axis, summary: dict, name: str, x_name: str, y_name: str, gap: float) -> None:
    import matplotlib.pyplot as plt

    front = summary["fronts"][name]
    labels, texts = legend_entries(summary, name)
    entries = [summary["members"][label] for label in labels]
    on_front = [label in front["front"] for label in labels]
    xs = [e["objectives"][x_name] for e in entries]
    ys = [e["objectives"][y_name] for e in entries]
    clipped_x, clipped_y = off_scale_members(summary, name)
    inside = [i for i in range(len(labels)) if i not in clipped_x | clipped_y]
    bounds = summary.get("bounds") or [[None, None]] * len(summary["objectives"])
    xlim = _limits([xs[i] for i in inside], bounds[0])
    ylim = _limits([ys[i] for i in inside], bounds[1])
    axis.set_xlim(*xlim)
    axis.set_ylim(*ylim)

    positions = []
    for i, entry in enumerate(entries):
        colour, marker = family_style(family_of(entry))
        style = dict(
            color=colour,
            marker=marker,
            markersize=8 if on_front[i] else 6,
            markerfacecolor=colour if on_front[i] else "white",
            markeredgewidth=1.2,
            zorder=3 if on_front[i] else 2,
        )
        x, y = xs[i]["mean"], ys[i]["mean"]
        if i in clipped_x or i in clipped_y:  # an arrow head at the edge, pointing to the member
            (x, y), angle = _at_edge((x, y), xlim, ylim)
            style.update(marker=(3, 0, angle - 90), markersize=9)  # a triangle pointing at `angle`
            axis.plot([x], [y], ls="", clip_on=False, **style)
        else:
            axis.errorbar(
                x,
                y,
                xerr=[[x - xs[i]["low"]], [xs[i]["high"] - x]],
                yerr=[[y - ys[i]["low"]], [ys[i]["high"] - y]],
                capsize=2,
                elinewidth=0.8,
                alpha=1.0 if on_front[i] else 0.55,
                ls="",
                **style,
            )
        positions.append((x, y))
    points = sorted((xs[i]["mean"], ys[i]["mean"]) for i in range(len(labels)) if on_front[i])
    axis.step([p[0] for p in points], [p[1] for p in points], where="post", color="black", lw=1, alpha=0.6)
    best = labels.index(front["most_balanced"])
    if best in inside:
        axis.plot(*positions[best], "o", mfc="none", mec="black", ms=16, zorder=4)
    hv = front["hypervolume"]["all"]
    panel = name.replace(",", ", ") + ": " if name != "all" else ""
    axis.set_title(f"{panel}hypervolume {with_interval(hv, 0)}", fontsize=10)
    axis.set_xlabel(f"{x_name} (lower is better)")
    axis.set_ylabel(f"{y_name} (lower is better)")
    axis.grid(alpha=0.3)
    if clipped_x or clipped_y:
        axis.text(
            0.99,
            0.01,
            "arrow heads: off scale (values in the legend)",
            transform=axis.transAxes,
            fontsize=7,
            ha="right",
            va="bottom",
            color="0.3",
        )
    _place_numbers(
        figure, axis, positions, on_front, ringed=best if best in inside else None, staircase=points
    )

    handles = []
    for i, entry in enumerate(entries):
        colour, marker = family_style(family_of(entry))
        face = colour if on_front[i] else "white"
        handles.append(
            plt.Line2D([], [], ls="", color=colour, marker=marker, markersize=6, markerfacecolor=face)
        )
    legend = axis.legend(
        handles,
        texts,
        loc="upper left",
        bbox_to_anchor=(1 + gap, 1.0),
        fontsize=LEGEND_FONT,
        frameon=False,
        title=f"member: {_short(x_name)}, {_short(y_name)} (bold: on the front)",
        title_fontsize=8,
        alignment="left",
        handletextpad=0.3,
        borderaxespad=0.0,
        borderpad=0.0,
        labelspacing=0.35,
    )
    for text, front_member in zip(legend.get_texts(), on_front, strict=True):
        if front_member:
            text.set_fontweight("bold")


def _at_edge(point: tuple[float, float], xlim, ylim) -> tuple[tuple[float, float], float]:
    """A point outside the axes moved just inside their edge, and the direction (degrees) it lies in."""
    inset = 0.015
    moved, steps = [], []
    for value, (low, high) in zip(point, (xlim, ylim), strict=True):
        margin = inset * (high - low)
        moved.append(min(max(value, low + margin), high - margin))
        steps.append((value > high - margin) - (value < low + margin))
    return (moved[0], moved[1]), math.degrees(math.atan2(steps[1], steps[0]))


def _limits(stats: list[dict], bound: list) -> tuple[float, float]:
    """Axis limits covering the means and intervals of `stats`, with a margin, never past the range."""
    low = min(s["low"] for s in stats)
    high = max(s["high"] for s in stats)
    pad = 0.06 * (high - low) or 1.0
    lower, upper = low - pad, high + pad
    if bound[0] is not None:
        lower = max(lower, bound[0])
    if bound[1] is not None:
        upper = min(upper, bound[1])
    return lower, upper


def _place_numbers(
    figure,
    axis,
    positions: list[tuple[float, float]],
    on_front: list[bool],
    ringed: int | None,
    staircase: Sequence[tuple[float, float]] = (),
) -> None:
    """Write each member's number next to its point where it overlaps no marker, no other number and stays
    inside the axes, and off the front's staircase where a spot as near allows (a number on the staircase
    reads as belonging to the step's corner); front members first, then the most crowded points. A leader
    line joins a number that had to move away from its point."""
    renderer = figure.canvas.get_renderer()
    frame = axis.get_window_extent(renderer)
    pixels = [tuple(axis.transData.transform(p)) for p in positions]
    scale = figure.dpi / 72
    radius = 5 * scale
    taken = [(px - radius, py - radius, px + radius, py + radius) for px, py in pixels]
    steps = [tuple(axis.transData.transform(p)) for p in staircase]
    half = scale  # the staircase's segments as thin boxes, each step across, then down to the next point
    lines = [
        box
        for (x0, y0), (x1, y1) in zip(steps, steps[1:])
        for box in (
            (min(x0, x1) - half, y0 - half, max(x0, x1) + half, y0 + half),
            (x1 - half, min(y0, y1) - half, x1 + half, max(y0, y1) + half),
        )
    ]
    if ringed is not None:  # the ring around the most balanced member
        px, py = pixels[ringed]
        taken.append((px - 8 * scale, py - 8 * scale, px + 8 * scale, py + 8 * scale))
    angles = [
        math.radians(a) for a in (45, 0, 90, 135, 315, 180, 270, 225, 22, 68, 112, 158, 202, 248, 292, 338)
    ]

    def crowding(i: int) -> float:
        return sum(math.dist(pixels[i], q) < 30 * scale for q in pixels)

    spots: list[list[int]] = []  # members drawn within a pixel of each other: one label for all
    for i, pixel in enumerate(pixels):
        spot = next((spot for spot in spots if math.dist(pixels[spot[0]], pixel) < 1.0), None)
        if spot is None:
            spots.append([i])
        else:
            spot.append(i)
    spots.sort(key=lambda spot: (not any(on_front[i] for i in spot), -crowding(spot[0]), spot[0]))
    for spot in spots:
        i, label = spot[0], "=".join(str(j + 1) for j in spot)
        text = axis.text(0, 0, label, fontsize=7)
        extent = text.get_window_extent(renderer)
        text.remove()
        width, height = extent.width + 2, extent.height
        px, py = pixels[i]
        best, best_cost = None, math.inf
        for ring, distance in enumerate(
            (
                radius + 1,
                radius + 8 * scale,
                radius + 16 * scale,
                radius + 26 * scale,
                radius + 38 * scale,
                radius + 52 * scale,
            )
        ):
            for angle in angles:
                ux, uy = math.cos(angle), math.sin(angle)
                cx = px + ux * distance + ux * width / 2
                cy = py + uy * distance + uy * height / 2
                box = (cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2)
                cost = sum(_overlap(box, other) for other in taken) + ring * 0.01
                cost += STAIRCASE_COST * sum(_overlap(box, line) for line in lines)
                if box[0] < frame.x0 or box[2] > frame.x1 or box[1] < frame.y0 or box[3] > frame.y1:
                    cost += 1e6
                if cost < best_cost:
                    best, best_cost = (cx, cy, box, ring), cost
            if best_cost < 1:
                break
        cx, cy, box, ring = best
        taken.append(box)
        axis.annotate(
            label,
            positions[i],
            xytext=((cx - px) / scale, (cy - py) / scale),
            textcoords="offset points",
            ha="center",
            va="center",
            fontsize=7,
            zorder=5,
            bbox=dict(boxstyle="square,pad=0.05", facecolor="white", edgecolor="none", alpha=0.75),
            annotation_clip=False,
            arrowprops=dict(arrowstyle="-", lw=0.5, color="0.45", shrinkA=0, shrinkB=4) if ring > 0 else None,
        )


def _overlap(a: tuple, b: tuple) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def save(figure, path) -> None:
    """Save with every text inside the image (titles and legends are never cut at the edges)."""
    figure.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.15)


def close(figure) -> None:
    """Free a figure (pyplot keeps every figure it made until it is closed)."""
    import matplotlib.pyplot as plt

    plt.close(figure)


def png_array(figure):
    """The figure as saved (`save`), as an [H, W, 3] uint8 array for TensorBoard."""
    import io

    import matplotlib.image
    import numpy as np

    buffer = io.BytesIO()
    save(figure, buffer)
    buffer.seek(0)
    image = matplotlib.image.imread(buffer, format="png")
    return (np.asarray(image)[..., :3] * 255).round().astype(np.uint8)
