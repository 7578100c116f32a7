"""Which runs of an experiment train together: runs whose models stack (`anode.ensemble`) and
whose data and settings allow one shared loop are grouped, up to `together` runs a group."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path

from anode.ensemble import MEMBER_KEYS, ensemble_support, stack_signature
from anode.lab.experiments.builders import build_data, build_model
from anode.lab.experiments.config import ImageSpec
from anode.lab.experiments.units import RunGroup, RunUnit, resolve_unit
from anode.training import load_checkpoint

__all__ = ["group_key", "mark_stacked", "plan_groups"]

#: Group keys already computed, by run folder (see `mark_stacked`, `plan_groups`).
Keys = dict[str, str | None]


def _position(run_dir: Path) -> tuple[int, int]:
    """(epoch, iteration) of the run's checkpoint, (0, 0) without one (or with an unreadable one)."""
    path = run_dir / "checkpoint.pt"
    if not path.exists():
        return (0, 0)
    try:
        state = load_checkpoint(path)
    except ValueError:
        return (-1, -1)  # the run itself will report it; it trains alone
    return (int(state["epoch"]), int(state["iteration"]))


def group_key(unit: RunUnit) -> str | None:
    """A key equal for runs that can train together, or None for a run that trains alone.

    Runs group when their models stack (same architecture and solver, see
    `anode.ensemble.ensemble_support`), they train on vector data with equally many samples at
    the same batch size, with the same settings (up to the seeds) on the same device, and they
    resume from the same iteration. Image data, regularisers other than the kinetic energy, and
    search candidates train alone.

    Arguments:
        unit: a run.

    Returns:
        The key (a string), or None.
    """
    spec, dataset_spec, train_cfg = resolve_unit(unit)
    if unit.candidate is not None or isinstance(dataset_spec, ImageSpec) or set(train_cfg.regularisers) - {"kinetic_energy"}:
        return None
    if spec.kind not in ("odenet", "flow", "resnet"):
        return None
    data = build_data(dataset_spec, unit.config, seed=unit.seed)
    model = build_model(spec, unit.config, data, seed=unit.seed)
    if ensemble_support(model) is not None:
        return None
    settings = {k: v for k, v in train_cfg.to_dict().items() if k not in MEMBER_KEYS}
    return repr((stack_signature(model), int(data.train_x.shape[0]), unit.config.train.batch_size, sorted(settings.items()),
                 unit.device, _position(Path(unit.run_dir))))


def _key(unit: RunUnit, keys: Keys | None) -> str | None:
    """`group_key(unit)`, computed once per run folder when `keys` memoises it (it builds the data
    and the model and reads the checkpoint)."""
    if keys is None:
        return group_key(unit)
    if unit.run_dir not in keys:
        keys[unit.run_dir] = group_key(unit)
    return keys[unit.run_dir]


def mark_stacked(units: Sequence[RunUnit], *, together: int, keys: Keys | None = None) -> list[RunUnit]:
    """`units` with `stacked=True` on every run that trains in a stacked ensemble when up to
    `together` runs train together (those with a `group_key`; none when `together` is 1).

    Whether a run is stacked depends on the run alone (not on which other runs are pending), so its
    fingerprint is the same however many of its siblings are finished. `keys` (a dict, filled here)
    lets `plan_groups` reuse the group keys computed on the way.

    Raises:
        ValueError: `together` is not a positive integer.
    """
    check_together(together)
    if together == 1:
        return list(units)
    return [dataclasses.replace(u, stacked=_key(u, keys) is not None) for u in units]


def plan_groups(units: Sequence[RunUnit], *, together: int, keys: Keys | None = None) -> list[RunUnit | RunGroup]:
    """Split the stacked runs among `units` (see `mark_stacked`) into groups that train together
    (at most `together` runs each, sizes as equal as possible; a lone stacked run is a group of
    one), keeping the others alone; groups come first (they take longest).

    Arguments:
        units: the runs to train.
        together: the largest group.
        keys: group keys computed by `mark_stacked`, by run folder (None: computed here).

    Returns:
        `RunGroup`s and single `RunUnit`s, each run exactly once.

    Raises:
        ValueError: `together` is not a positive integer.
    """
    check_together(together)
    buckets: dict[str, list[RunUnit]] = {}
    alone: list[RunUnit] = []
    for unit in units:
        key = _key(unit, keys) if unit.stacked else None
        if key is None:
            alone.append(unit)
        else:
            buckets.setdefault(key, []).append(unit)
    groups: list[RunGroup] = []
    for members in buckets.values():
        parts = math.ceil(len(members) / together)
        start = 0
        for part in range(parts):
            size = len(members) // parts + (part < len(members) % parts)
            chunk = members[start:start + size]
            start += size
            groups.append(RunGroup(tuple(chunk)))
    return [*groups, *alone]


def check_together(together: object) -> int:
    """`together` if it is a positive integer.

    Raises:
        ValueError: otherwise (naming the value; 1 trains every run alone).
    """
    if isinstance(together, bool) or not isinstance(together, int) or together < 1:
        raise ValueError(f"together must be a positive integer (1: every run alone), got {together!r}")
    return together
