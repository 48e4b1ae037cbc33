"""From a dataset folder to the train/validation ImageSets of one run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fundus_review.data.dataset import ImageRecord, scan_dataset
from fundus_review.errors import DatasetError
from fundus_review.inference import train_data as td
from fundus_review.inference.train_config import PreprocessConfig, TrainConfig, TrainProgress


@dataclass
class DataSplit:
    records: list[ImageRecord]  # labelled records, sorted by rel_path
    classes: list[str]
    targets: list[int]
    train_idx: list[int]
    val_idx: list[int]
    problems: list[tuple[str, str]] = field(default_factory=list)

    def datasets(
        self, spec: PreprocessConfig, config: TrainConfig, emit: Callable[[TrainProgress], None]
    ) -> tuple[td.ImageSet, td.ImageSet, list[tuple[str, str]]]:
        """(train set, validation set, problems). Unreadable images are dropped and reported;
        the validation file list (`val_idx`) is updated to what was actually validated on."""
        aug = td.AugmentSpec() if config.augment else None
        train = td.ImageSet(
            [self.records[i].path for i in self.train_idx],
            [self.targets[i] for i in self.train_idx],
            spec,
            aug,
            config.seed,
        )
        val = td.ImageSet(
            [self.records[i].path for i in self.val_idx],
            [self.targets[i] for i in self.val_idx],
            spec,
            None,
            config.seed,
        )
        threads = max(1, config.num_workers)
        problems = list(self.problems)
        emit(TrainProgress(kind="stage", message=f"reading {len(self.records)} images"))
        sets = []
        for ds, idx in ((train, self.train_idx), (val, self.val_idx)):
            if ds.input_bytes() <= td.CACHE_BUDGET_BYTES:
                failures = ds.preload(threads)
            else:
                failures = td.check_readable(ds.paths, threads)
            for i, reason in failures:
                problems.append((self.records[idx[i]].rel_path, reason))
            sets.append(ds.without({i for i, _ in failures}) if failures else ds)
            bad = {idx[i] for i, _ in failures}
            idx[:] = [j for j in idx if j not in bad]
        return sets[0], sets[1], problems

    def heldout_files(self) -> list[str]:
        return [self.records[i].rel_path for i in self.val_idx]


def load_split(config: TrainConfig, emit: Callable[[TrainProgress], None]) -> DataSplit:
    """Scan the dataset, keep labelled images, and split them (stratified, seeded)."""
    emit(TrainProgress(kind="stage", message=f"scanning {config.data}"))
    scan = scan_dataset(
        config.data,
        labels_csv=config.labels_csv,
        filename_column=config.filename_column,
        label_column=config.label_column,
    )
    problems = [(str(p), r) for p, r in scan.problems]
    records = []
    for rec in sorted(scan.records, key=lambda r: r.rel_path):
        if rec.label is None or not str(rec.label).strip():
            problems.append((rec.rel_path, "no label; not used for training"))
        else:
            records.append(rec)
    classes = sorted({str(r.label) for r in records})
    if len(classes) < 2:
        found = f"only '{classes[0]}'" if classes else "no labels"
        raise DatasetError(
            f"{config.data}: training needs labelled images of at least two classes, found {found} "
            f"(labels come from sub-folders or --labels CSV; label source: {scan.label_source})"
        )
    index = {c: i for i, c in enumerate(classes)}
    targets = [index[str(r.label)] for r in records]
    train_idx, val_idx = td.stratified_split(
        [str(r.label) for r in records], config.val_fraction, config.seed
    )
    return DataSplit(records, classes, targets, train_idx, val_idx, problems)
