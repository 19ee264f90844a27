"""The paper's experiments, each a function a command calls; what they share is in :mod:`.common`,
the run cache and divergence handling in :mod:`.runs`, and the ``taynode`` commands, registered
once, in :mod:`.commands`."""

from .common import (
    LATER_DEFAULTS,
    QUADRATURE_DEFAULTS,
    cast,
    check_quadrature,
    csv_text,
    markdown_rows,
    preset,
    save_figure,
    setting,
    stored_config,
    with_x64,
    write_json,
    write_table,
    write_text,
)

__all__ = [
    "LATER_DEFAULTS",
    "QUADRATURE_DEFAULTS",
    "cast",
    "check_quadrature",
    "csv_text",
    "markdown_rows",
    "preset",
    "save_figure",
    "setting",
    "stored_config",
    "with_x64",
    "write_json",
    "write_table",
    "write_text",
]
