"""A dataset checked for training with a config: its report, the map_fn it needs against the one set, its token lengths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engine.data.formats import DatasetFormat, format_read_by
from engine.data.report import DatasetReport, inspect_dataset
from engine.xtuner.config_datasets import config_training, dataset_reading
from engine.xtuner.configs import ConfigError
from engine.xtuner.token_lengths import PREVIEWS, TokenReport, token_report


@dataclass(frozen=True, slots=True)
class DataCheck:
    """What `check_data` found: the dataset's report and, with a config, its map_fn, token lengths (or why not)."""

    report: DatasetReport
    map_fn_needed: str | None  # source text, "None" for the conversation format; None when the format is unknown
    image_folder: Path | None  # where a LLaVA dataset's images were looked for
    config: Path | None = None
    map_fn_set: str | None = None  # what the config's dataset for this file sets
    tokens: TokenReport | None = None
    tokens_problem: str | None = None

    @property
    def map_fn_fits(self) -> bool | None:
        """Whether the config's map_fn reads this format; None without a config, or for a map_fn xtui does not know."""
        if self.map_fn_set is None or self.report.format is None:
            return None
        read = format_read_by(self.map_fn_set)
        if read is None and self.map_fn_set != "None":
            return None
        return read == self.report.format

    @property
    def ok(self) -> bool:
        """True when every record is fine and the config (if any) reads the format."""
        return self.report.ok and self.map_fn_fits is not False


def check_data(
    path: Path, cwd: Path, config: Path | None = None, image_folder: Path | None = None, previews: int = PREVIEWS
) -> DataCheck:
    """Check every record of `path` (and a LLaVA dataset's images); with `config`, its map_fn and token lengths too.

    Images are looked for in `image_folder`, else the config's image_folder, else the data file's folder.
    """
    dataset = None
    if config is not None:
        dataset = dataset_reading(path, config_training(config.read_text(encoding="utf-8")).datasets, cwd)
        if image_folder is None and dataset is not None and dataset.image_folder:
            image_folder = cwd / Path(dataset.image_folder).expanduser()
    folder = image_folder or path.parent
    report = inspect_dataset(path, image_folder=folder)  # images are looked at only in LLaVA records
    folder = folder if report.format == DatasetFormat.LLAVA else None
    if config is None:
        return DataCheck(report, report.map_fn, folder)
    tokens = problem = None
    if report.format is not None:
        try:
            tokens = token_report(path, config, cwd, report.format, previews)
        except ConfigError as exc:
            problem = str(exc)
    return DataCheck(report, report.map_fn, folder, config, dataset.map_fn if dataset else None, tokens, problem)
