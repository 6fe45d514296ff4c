"""What other libraries do that attnlab cannot fix, worked around in one place: warnings
silenced, and Hydra's copy of every stored schema at each composition.

Each filter is narrow (its message, category and the module that warns) and names the
upstream issue whose fix makes it unneeded; anything else still reaches the user.
"""

from __future__ import annotations

import copy
import warnings

KNOWN_WARNINGS = (
    # torchdata's StatefulDataLoader calls torch.set_vital, which torch deprecated and then
    # removed (meta-pytorch/data#1536); every loader attnlab builds would print it.
    dict(message="'set_vital' is deprecated", category=UserWarning, module="torchdata"),
    # Lightning's pytree helper still tests isinstance(treespec, LeafSpec), deprecated by torch
    # (Lightning-AI/pytorch-lightning#21326); printed once per fit.
    dict(
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module="lightning",
    ),
)


def silence_known_warnings() -> None:
    """Ignore the warnings of ``KNOWN_WARNINGS`` in this process."""
    for known in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", **known)


def share_config_store() -> None:
    """Make Hydra's copy of its config repository share the one ConfigStore instead of copying it.

    Hydra deep-copies its config repository for each composition (``CachingConfigRepository``),
    and with it the ConfigStore its structured config source holds: every stored schema, ~0.1 s
    a copy here. ``--help`` lists the config groups with ~165 such copies (7 s). Hydra has since
    made that source read ``ConfigStore.instance()`` at each load instead of holding a copy
    (facebookresearch/hydra#2928); this does the same for the installed 1.3. The copy never
    protected the store: loading a config from it copies the loaded node anyway. (Patched here,
    not on the source class: Hydra's plugin scan re-executes that class's module.)
    """
    from hydra._internal.config_repository import CachingConfigRepository
    from hydra.core.config_store import ConfigStore

    def copy_sharing_the_store(repository: CachingConfigRepository, delegate) -> None:
        store = ConfigStore.instance()
        repository.delegate = copy.deepcopy(delegate, {id(store): store})
        repository.cache = {}

    CachingConfigRepository.__init__ = copy_sharing_the_store
