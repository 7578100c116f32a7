"""The reproduction lab: reruns the paper with the library and judges its claims from the numbers.

It imports the library (`anode`), never the other way round. Its parts:

- `anode.lab.experiments`: declarative experiment configs, the resumable runner (local or Ray), fingerprints, suites;
- `anode.lab.claims`, `anode.lab.stats`: claims declared as data and the one evaluator, the t-tests;
- `anode.lab.report`, `anode.lab.experiment_report`, `anode.lab.compare`: Markdown/HTML reports and their comparison;
- `anode.lab.reproduce` (`toy`, `images`), `anode.lab.table1`: the paper's experiments, one command each;
- `anode.lab.docgen`: the generated config reference; `anode.lab.environment`: provenance;
- `anode.lab.distributed`: one experiment run under torchrun; `anode.lab.cli`: the `anode` command.
"""

import importlib as _importlib
from types import ModuleType as _ModuleType

#: Parts reachable as `anode.lab.<name>` after `import anode.lab`, imported on first use.
_LAZY_SUBMODULES: tuple[str, ...] = ("claims", "cli", "compare", "distributed", "docgen", "environment",
                                    "experiment_report", "experiments", "report", "reproduce", "stats", "table1")


def __getattr__(name: str) -> _ModuleType:
    """Import a part of the lab on first access, e.g. `anode.lab.experiments.load_config`."""
    if name in _LAZY_SUBMODULES:
        return _importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'anode.lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_SUBMODULES))
