"""From a dataset folder to the train/validation ImageSets of one run."""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fundus_review.data.dataset import ImageRecord, scan_dataset
from fundus_review.data.images import file_sha256
from fundus_review.errors import DatasetError, ImageLoadError
from fundus_review.training import data as td
from fundus_review.training.config import PreprocessConfig, TrainConfig, TrainProgress


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

    def digest(self) -> str:
        """SHA-256 over (file, label, file content hash) of every image used, in file order:
        equal digests mean a re-run trained on exactly the same pictures and labels."""
        used = sorted(set(self.train_idx) | set(self.val_idx))
        h = hashlib.sha256()
        for i in used:
            rec = self.records[i]
            try:
                content = file_sha256(rec.path)
            except ImageLoadError:
                content = "unreadable"
            h.update(f"{rec.rel_path}\t{rec.label}\t{content}\n".encode())
        return h.hexdigest()


def synthetic_provenance(folder: Path) -> dict:
    """For a set written by `fundus-review demo-data`: its parameters and, when the command line
    can express them, the command that writes the same bytes again; else {}."""
    from fundus_review.data.synthetic import demo_dataset_info

    info = demo_dataset_info(folder)
    if info is None:
        return {}
    out: dict = {"synthetic_data": {k: v for k, v in info.items() if v is not None}}
    size = info.get("size") or []
    expressible = (
        len(size) == 2
        and size[0] == size[1]
        and info.get("lesions") == 0.5
        and info.get("confounder_mode") == "corner"
        and info.get("image_format") == "jpg"
    )
    if expressible:
        cmd = f"fundus-review demo-data {shlex.quote(str(folder))} --n {info['n']} --seed {info['seed']}"
        if size[0] != 512:
            cmd += f" --size {size[0]}"
        if info.get("confounder"):
            cmd += " --confounder"
            if info.get("confounder_strength") != 1.0:
                cmd += f" --confounder-strength {info['confounder_strength']:g}"
        out["data_command"] = cmd
    return out


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
