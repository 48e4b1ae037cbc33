"""Import and export of expert regions and verdicts (Qt-free; every file write is atomic).

- ``exchange.masks``: mask PNGs in the ``masks/<structure>/<stem>.png`` layout (one folder level
  more, ``masks/<reviewer>/<structure>/<stem>.png``, when several reviewers are exported).
- ``exchange.coco``: COCO instance-segmentation JSON (polygons and RLE).
- ``exchange.verdicts``: CSV of the reviewers' verdicts on heatmaps and their review status.
- ``exchange.labelme``: import of labelme JSON annotations.

Modules are imported by their users; this package itself stays import-light.
"""
