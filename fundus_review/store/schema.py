"""ORM tables of the fundus_review database (SQLAlchemy 2.x declarative).

The schema itself is created and evolved only by the alembic migrations in ``migrations/``;
``tests/unit/test_store_migrations.py`` checks that these classes and the migrated schema agree.

Conventions:
- integer surrogate primary keys everywhere; natural keys are unique constraints;
- timestamps are timezone-aware UTC (stored naive-UTC, see ``UTCDateTime``);
- a child row that is meaningless without its parent has ``ON DELETE CASCADE``; human work
  (annotations, verdicts) is never cascaded away by deleting a reviewer (``RESTRICT``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from fundus_review.core.vocabulary import PROPOSED_PREFIX

# Named constraints: alembic's batch mode on SQLite (and any later migration that drops or
# alters a constraint) needs stable names, identical on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend.

    SQLite has no time-zone type and would hand back naive values; normalising here keeps
    comparisons and ISO strings in reports consistent between SQLite and PostgreSQL.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: store aware UTC datetimes only")
        utc = value.astimezone(UTC)
        # PostgreSQL's timestamptz needs the offset (a naive value would be read in the session's
        # time zone); SQLite stores text, where one fixed zone keeps string order == time order.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def canonical_json(value: Any) -> str:
    """Deterministic JSON text, so equal lists/dicts compare equal inside unique constraints."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.__dict__.get('id')}>"


class _Created:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class _Timestamps(_Created):
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Dataset(_Created, Base):
    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    root: Mapped[str] = mapped_column(String(4096), unique=True)

    images: Mapped[list[Image]] = relationship(
        back_populates="dataset", cascade="all, delete-orphan", passive_deletes=True
    )


class Image(_Timestamps, Base):
    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("dataset_id", "rel_path"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    rel_path: Mapped[str] = mapped_column(String(4096))
    # Size and content hash are read in a background pass after the fast listing of a folder
    # (fundus_review.app.importing): NULL until then. `file_stamp` is the file's stat (size, mtime,
    # ctime, inode) when they were read: an unchanged stamp means the file need not be read again.
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    file_stamp: Mapped[str | None] = mapped_column(String(96))

    dataset: Mapped[Dataset] = relationship(back_populates="images")
    labels: Mapped[list[Label]] = relationship(
        back_populates="image", cascade="all, delete-orphan", passive_deletes=True
    )


class Label(_Timestamps, Base):
    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("image_id", "source"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    value: Mapped[str] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(1024))  # "folders" | "csv:<file name>" | ...

    image: Mapped[Image] = relationship(back_populates="labels")


class Reviewer(_Created, Base):
    __tablename__ = "reviewers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)


class Annotation(_Timestamps, Base):
    """One expert region: its geometry (editable shapes) and/or its raster (the bool mask).

    ``raster`` is the exact mask the metrics use (encoded by ``codec.encode_mask``); drawn shapes
    keep their ``geometry`` too so they stay editable. ``deleted_at`` makes deletes undoable.
    """

    __tablename__ = "annotations"
    __table_args__ = (Index(None, "image_id", "structure"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewers.id", ondelete="RESTRICT"))
    structure: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    geometry: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    raster: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    source: Mapped[str] = mapped_column(String(4096), default="drawn")
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    image: Mapped[Image] = relationship()
    reviewer: Mapped[Reviewer] = relationship()


def expert_region():
    """SQL condition: the region is expert work (drawn, imported, an accepted or edited
    proposal), not an unreviewed proposal of a segmenter (``core.vocabulary.PROPOSED_PREFIX``).
    Every query that feeds scores, reports, exports or the viewer's outlines applies it."""
    return ~Annotation.source.startswith(PROPOSED_PREFIX, autoescape=True)


class ModelRecord(_Created, Base):
    """A model bundle, identified by its weights AND its card (resize policy, classes, mean/std

    change the predictions even with identical weights, so they must not share stored results).
    """

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("weights_sha256", "card_sha256"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    architecture: Mapped[str] = mapped_column(String(255))
    card: Mapped[dict[str, Any]] = mapped_column(JSON)
    weights_sha256: Mapped[str] = mapped_column(String(64))
    card_sha256: Mapped[str] = mapped_column(String(64))
    bundle_path: Mapped[str] = mapped_column(String(4096))


class CamRun(_Created, Base):
    """The recipe of a heatmap: model + method + layers + target policy + method parameters.

    Layers and parameters are canonical JSON text (not a JSON column) so that they can sit in a
    unique constraint on every backend (PostgreSQL has no equality operator for ``json``).
    """

    __tablename__ = "cam_runs"
    __table_args__ = (
        UniqueConstraint(
            "model_id",
            "method",
            "layers_json",
            "target_policy",
            "params_json",
            name="uq_cam_runs_recipe",  # the generated name would exceed PostgreSQL's 63 chars
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(String(64))
    layers_json: Mapped[str] = mapped_column(Text)
    target_policy: Mapped[str] = mapped_column(String(255))  # "predicted" | "class:<name>"
    params_json: Mapped[str] = mapped_column(Text, default="{}")

    model: Mapped[ModelRecord] = relationship()

    @property
    def layers(self) -> list[str]:
        return list(json.loads(self.layers_json))

    @property
    def params(self) -> dict[str, Any]:
        return dict(json.loads(self.params_json))


class Prediction(_Timestamps, Base):
    __tablename__ = "predictions"
    __table_args__ = (UniqueConstraint("image_id", "model_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    probs: Mapped[list[float]] = mapped_column(JSON)
    predicted_index: Mapped[int] = mapped_column(Integer)
    transform: Mapped[dict[str, Any]] = mapped_column(JSON)  # InputTransform.to_dict()

    image: Mapped[Image] = relationship()
    model: Mapped[ModelRecord] = relationship()


class Heatmap(_Timestamps, Base):
    """A CAM at model-input resolution (``height`` x ``width``), encoded by ``codec``."""

    __tablename__ = "heatmaps"
    __table_args__ = (UniqueConstraint("cam_run_id", "image_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cam_run_id: Mapped[int] = mapped_column(ForeignKey("cam_runs.id", ondelete="CASCADE"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    target_index: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    dtype: Mapped[str] = mapped_column(String(16))  # codec name, e.g. "float16-zlib"
    data: Mapped[bytes] = mapped_column(LargeBinary)

    cam_run: Mapped[CamRun] = relationship()
    image: Mapped[Image] = relationship()


class Score(_Timestamps, Base):
    __tablename__ = "scores"
    __table_args__ = (UniqueConstraint("heatmap_id", "structure", "reviewer_id", "metric"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    heatmap_id: Mapped[int] = mapped_column(ForeignKey("heatmaps.id", ondelete="CASCADE"))
    structure: Mapped[str] = mapped_column(String(255))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewers.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(128))
    value: Mapped[float | None] = mapped_column(
        Float, nullable=True
    )  # None: undefined (empty mask)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    heatmap: Mapped[Heatmap] = relationship()
    reviewer: Mapped[Reviewer] = relationship()


class ImageReview(_Timestamps, Base):
    """Per image and reviewer: where the review stands (issue 6)."""

    __tablename__ = "image_reviews"
    __table_args__ = (UniqueConstraint("image_id", "reviewer_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewers.id", ondelete="RESTRICT"))
    status: Mapped[str] = mapped_column(String(32))  # one of core.vocabulary.REVIEW_STATUSES
    comment: Mapped[str] = mapped_column(Text, default="")

    image: Mapped[Image] = relationship()
    reviewer: Mapped[Reviewer] = relationship()


class Verdict(_Timestamps, Base):
    """A reviewer's judgement of one heatmap: does it focus on the relevant region (issue 6)."""

    __tablename__ = "verdicts"
    __table_args__ = (UniqueConstraint("heatmap_id", "reviewer_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    heatmap_id: Mapped[int] = mapped_column(ForeignKey("heatmaps.id", ondelete="CASCADE"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewers.id", ondelete="RESTRICT"))
    verdict: Mapped[str] = mapped_column(String(16))  # one of core.vocabulary.VERDICTS
    comment: Mapped[str] = mapped_column(Text, default="")

    heatmap: Mapped[Heatmap] = relationship()
    reviewer: Mapped[Reviewer] = relationship()


class FaithfulnessValue(_Timestamps, Base):
    """One faithfulness measure of one heatmap (issue 11: ROAD, Rong et al. ICML 2022).

    ``metric`` names the value ("road_combined", "road_morf_prob@0.3", ...); a reference value of a
    baseline map computed for the same image, model and target is stored under the real
    heatmap with the baseline's prefix ("baseline_random:road_combined"), so a run's values and
    its baselines pair up image by image. ``params_json`` (canonical JSON: measure, version,
    removal fractions, seed, noise) is part of the key, so results of different settings never
    mix; it is text, like ``CamRun.params_json``, to sit in a unique constraint on every backend.
    """

    __tablename__ = "faithfulness"
    __table_args__ = (UniqueConstraint("heatmap_id", "metric", "params_json"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    heatmap_id: Mapped[int] = mapped_column(ForeignKey("heatmaps.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(128))
    value: Mapped[float | None] = mapped_column(Float, nullable=True)  # None: undefined
    params_json: Mapped[str] = mapped_column(Text)

    heatmap: Mapped[Heatmap] = relationship()

    @property
    def params(self) -> dict[str, Any]:
        return dict(json.loads(self.params_json))


class CupDiscRatioCache(_Timestamps, Base):
    """One reviewer's cup-to-disc ratios on one image (``core.cdr``), kept for the browser.

    A row exists for each (image, reviewer) with live regions of both ``optic_disc`` and
    ``optic_cup`` (each the union of the reviewer's regions): written in the transaction of every
    edit of those regions (``store.repo_cdr.refresh_cdr``), so sorting 100,000 images by CDR never
    rasterises a region. Ratios are NULL where undefined (an empty disc). Migration 0004.
    """

    __tablename__ = "cdr_cache"
    __table_args__ = (UniqueConstraint("image_id", "reviewer_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("reviewers.id", ondelete="CASCADE"))
    vertical: Mapped[float | None] = mapped_column(Float, nullable=True)
    horizontal: Mapped[float | None] = mapped_column(Float, nullable=True)
    area: Mapped[float | None] = mapped_column(Float, nullable=True)


class WorkClaim(Base):
    """Who computes one image for one analysis recipe, so that concurrent ``analyze`` runs on one
    database share the work instead of each computing everything (``store.repo_claims``).

    ``recipe`` is the canonical text of the CAM run ids one analysis computes together (their
    model is ``model_id``): two runs of the same command share claims. A claim is *active* while
    ``finished_at`` is NULL and ``expires_at`` is in the future; a worker that crashed leaves
    claims that expire (lease timeout) and are taken over. A finished claim stays as the record of
    which worker computed the image when; it only stops another run from computing the image
    again if that run started before it finished (``--force`` runs).
    """

    __tablename__ = "work_claims"
    __table_args__ = (
        UniqueConstraint("model_id", "recipe", "image_id"),
        Index("ix_work_claims_owner_finished", "owner", "finished_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    recipe: Mapped[str] = mapped_column(String(255))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    owner: Mapped[str] = mapped_column(String(255))  # host:pid:random, one per analysis run
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
