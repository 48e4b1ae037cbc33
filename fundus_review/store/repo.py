"""The store's public API: the only functions other packages call.

Every function takes an open SQLAlchemy ``Session`` (from ``Database.session()``) first; the
caller's ``with db.session()`` block is the transaction. ORM objects and plain integer ids are
both accepted wherever a row is referenced, so objects kept from an earlier session still work.

Datasets/images: get_or_create_dataset, list_datasets, upsert_image, set_image_identity,
    forget_unread_images, image_shape, find_image, get_image, dataset_images, images_with_sha256,
    set_label, image_labels.
Reviewers and regions: get_or_create_reviewer, list_reviewers, add_annotation, update_annotation,
    replace_imported_mask, list_annotations, list_structures, soft_delete_annotation,
    restore_annotation, annotation_mask, structure_mask, set_annotation_source (a proposal
    accepted / edited), region_sources (counts by provenance).
Review state: set_review_status, get_review_status, set_verdict, list_verdicts.
Models and results: get_or_create_model, list_models, get_or_create_cam_run, list_cam_runs,
    save_prediction, get_prediction, save_heatmap, get_heatmap, heatmap_array, load_heatmap,
    encode_for_store (EncodedHeatmap: a heatmap in its stored form, for save_heatmap),
    find_done_images, save_scores, list_scores, iter_score_values, delete_scores.
Reports: iter_results (-> ResultRow).
Read models of the window and the import use case have their own modules, imported directly:
``store.repo_views`` (views/) and ``store.repo_import`` (app/importing, app/identify).
"""

from __future__ import annotations

from fundus_review.store.repo_annotations import (
    Rasterizer,
    add_annotation,
    annotation_mask,
    get_review_status,
    list_annotations,
    list_structures,
    list_verdicts,
    region_sources,
    replace_imported_mask,
    restore_annotation,
    set_annotation_source,
    set_review_status,
    set_verdict,
    soft_delete_annotation,
    structure_mask,
    update_annotation,
)
from fundus_review.store.repo_images import (
    dataset_images,
    find_image,
    forget_unread_images,
    get_image,
    get_or_create_dataset,
    get_or_create_reviewer,
    image_labels,
    image_shape,
    images_with_sha256,
    list_datasets,
    list_reviewers,
    set_image_identity,
    set_label,
    upsert_image,
)
from fundus_review.store.repo_query import ResultRow, iter_results, model_kind
from fundus_review.store.repo_results import (
    EncodedHeatmap,
    encode_for_store,
    find_done_images,
    get_heatmap,
    get_or_create_cam_run,
    get_or_create_model,
    get_prediction,
    heatmap_array,
    list_cam_runs,
    list_models,
    load_heatmap,
    save_heatmap,
    save_prediction,
)
from fundus_review.store.repo_scores import (
    delete_scores,
    iter_score_values,
    list_scores,
    mean_score,
    save_scores,
)

__all__ = [
    "forget_unread_images",
    "Rasterizer",
    "ResultRow",
    "mean_score",
    "model_kind",
    "add_annotation",
    "annotation_mask",
    "dataset_images",
    "delete_scores",
    "find_done_images",
    "find_image",
    "get_heatmap",
    "get_image",
    "get_or_create_cam_run",
    "get_or_create_dataset",
    "get_or_create_model",
    "get_or_create_reviewer",
    "get_prediction",
    "get_review_status",
    "heatmap_array",
    "image_labels",
    "image_shape",
    "images_with_sha256",
    "iter_results",
    "list_annotations",
    "region_sources",
    "set_annotation_source",
    "list_cam_runs",
    "list_datasets",
    "list_models",
    "list_reviewers",
    "list_scores",
    "iter_score_values",
    "list_structures",
    "list_verdicts",
    "load_heatmap",
    "replace_imported_mask",
    "restore_annotation",
    "save_heatmap",
    "EncodedHeatmap",
    "encode_for_store",
    "save_prediction",
    "save_scores",
    "set_label",
    "set_image_identity",
    "set_review_status",
    "set_verdict",
    "soft_delete_annotation",
    "structure_mask",
    "update_annotation",
    "upsert_image",
]
