"""Published critical learning rates, each with the setting it was measured in.

A published value is printed (``ntk-dist report``) or drawn as a guide (figures) only
beside results of the setting it was published for: the same model kind, activation,
depth, parameterisation, sharpness definition and optimiser. eta_max * lambda0 depends
strongly on depth and data (docs/theory.md §7), so a ReLU network of another depth is
shown without a published value. Where the data differ from the paper's (ours are
small offline sets), :attr:`Published.setting` says what the paper used.
"""

from __future__ import annotations

from typing import NamedTuple

import pyarrow as pa


class Published(NamedTuple):
    """One published critical value.

    Attributes:
      boundary: ``"c_loss"``, ``"c_sharp"`` or ``"c_max"`` (docs/theory.md §7).
      value: c = eta * lambda0 as published.
      approx: the paper gives it as "about" (a measurement, not a closed form).
      source: paper and figure or section.
      setting: the paper's setting, in words.
      match: the run columns and the values they must have (columns absent from a runs
        table take the ``defaults`` of :func:`published_for`).
    """

    boundary: str
    value: float
    approx: bool
    source: str
    setting: str
    match: tuple[tuple[str, object], ...]

    def text(self) -> str:
        """``"4 (Lewkowycz et al. 2020 ...)"``, ``"~12 (...)"`` for a measured value."""
        return f"{'~' if self.approx else ''}{self.value:g} ({self.source}; {self.setting})"


_LEWKOWYCZ = "Lewkowycz et al. 2020, arXiv 2003.02218"
_TOY = (
    f"{_LEWKOWYCZ}, §2",
    "the toy model f = v^T u x / sqrt(n) under GD, solved exactly",
    (("model_kind", "toy"), ("optimizer", "gd")),
)
PUBLISHED: tuple[Published, ...] = (
    Published("c_loss", 2.0, False, *_TOY),
    Published("c_max", 4.0, False, *_TOY),
    Published(
        "c_max",
        12.0,
        True,
        f"{_LEWKOWYCZ}, Fig. 2",
        "ReLU fc network, 3 hidden layers, NTK parameterisation, NTK sharpness, "
        "full-batch GD, on the paper's image data (not ours)",
        (
            ("model_kind", "fc"),
            ("activation", "relu"),
            ("depth", 3),
            ("parameterization", "ntk"),
            ("sharpness", "ntk"),
            ("optimizer", "gd"),
        ),
    ),
)

#: What a runs table without a setting column was trained with.
DEFAULTS = {"parameterization": "ntk", "sharpness": "ntk"}


def published_for(runs: pa.Table, *, boundary: str | None = None) -> list[Published]:
    """The published values whose setting every run of ``runs`` has (module docstring).

    Args:
      runs: rows in RECORD_SCHEMA (one group, or a whole sweep: a value is returned
        only if all rows match it).
      boundary: keep only this boundary's values.

    Returns:
      list of :class:`Published`, in :data:`PUBLISHED` order.
    """
    out = []
    for pub in PUBLISHED:
        if boundary is not None and pub.boundary != boundary:
            continue
        ok = runs.num_rows > 0
        for name, want in pub.match:
            if name in runs.column_names:
                values = set(runs.column(name).to_pylist())
            elif name in DEFAULTS:
                values = {DEFAULTS[name]}
            else:
                values = {None}
            ok = ok and values == {want}
        if ok:
            out.append(pub)
    return out
