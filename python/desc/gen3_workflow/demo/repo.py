"""Build a small butler repository with synthetic raw data for the demo pipelines.

The repository holds the dimension records of a made-up instrument, DemoCam
(one exposure per visit, visit ID == exposure ID), and one small raw image per
exposure and detector, so that ``config/pipelines/demo_drp.yaml`` can be run on
it with ``pipetask`` or ``bps`` without any science code or data downloads.

Run as a script to build one from the command line::

    python -m desc.gen3_workflow.demo.repo /tmp/demo_repo --visits 4 --detectors 4
"""

from __future__ import annotations

__all__ = [
    "DEFAULTS_COLLECTION",
    "INSTRUMENT",
    "RAW_RUN",
    "make_demo_repo",
    "make_raw_image",
]

import argparse
import os
import re
import uuid
from typing import Any

import astropy.time
import astropy.units as u
import numpy as np
from lsst.daf.butler import Butler, CollectionType, Config, DatasetType, Timespan
from lsst.sphgeom import ConvexPolygon, LonLat, UnitVector3d

INSTRUMENT = "DemoCam"
"""Name of the synthetic instrument."""

RAW_RUN = f"{INSTRUMENT}/raw/all"
"""RUN collection holding the raw datasets."""

DEFAULTS_COLLECTION = f"{INSTRUMENT}/defaults"
"""CHAINED collection to pass as pipeline input (``-i``)."""

_BANDS = ("g", "r", "i")
_DAY_OBS = 20250101
_IMAGE_SHAPE = (64, 64)
_OVERSCAN_COLUMNS = 8  # Must match IsrConfig.overscanColumns' default.
_BIAS_LEVEL = 1000.0
_SKY_LEVEL = 100.0
_EXPOSURE_TIME = 30.0
_DETECTOR_SIZE_DEG = 0.1


def make_raw_image(rng: np.random.Generator, n_stars: int = 8) -> np.ndarray:
    """Make one synthetic raw image: bias + sky + Gaussian stars + noise.

    Parameters
    ----------
    rng : `numpy.random.Generator`
        Random number generator (seeded by the caller for reproducibility).
    n_stars : `int`, optional
        Number of stars to add.

    Returns
    -------
    raw : `numpy.ndarray`
        float32 image of shape ``(64, 72)``: 64 data columns followed by
        8 bias-only overscan columns.
    """
    ny, nx = _IMAGE_SHAPE
    yy, xx = np.mgrid[0:ny, 0:nx]
    image = np.full((ny, nx), _SKY_LEVEL)
    for x0, y0, flux in zip(
        rng.uniform(5, nx - 5, n_stars),
        rng.uniform(5, ny - 5, n_stars),
        rng.uniform(2e3, 2e4, n_stars),
        strict=True,
    ):
        sigma = 1.5
        image += flux / (2 * np.pi * sigma**2) * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * sigma**2))
    # Poisson-like noise on the signal, plus read noise everywhere.
    image = rng.normal(image, np.sqrt(image))
    raw = np.concatenate([image, np.zeros((ny, _OVERSCAN_COLUMNS))], axis=1)
    raw += _BIAS_LEVEL + rng.normal(0.0, 5.0, raw.shape)
    return raw.astype(np.float32)


def _box_region(ra: float, dec: float, half: float) -> ConvexPolygon:
    """Return a square sky region (degrees) as a convex polygon."""
    corners = [
        (ra - half, dec - half),
        (ra + half, dec - half),
        (ra + half, dec + half),
        (ra - half, dec + half),
    ]
    return ConvexPolygon([UnitVector3d(LonLat.fromDegrees(r, d)) for r, d in corners])


def _dimension_records(n_visits: int, n_detectors: int) -> dict[str, list[dict[str, Any]]]:
    """Return dimension records, in insertion order, keyed by element name."""
    records: dict[str, list[dict[str, Any]]] = {
        "instrument": [
            {
                "name": INSTRUMENT,
                "visit_max": 1_000_000,
                "exposure_max": 1_000_000,
                "detector_max": 1000,
                "visit_system": 0,
            }
        ],
        "physical_filter": [
            {"instrument": INSTRUMENT, "name": f"{INSTRUMENT}-{band}", "band": band} for band in _BANDS
        ],
        "detector": [
            {
                "instrument": INSTRUMENT,
                "id": det,
                "full_name": f"D{det:02d}",
                "name_in_raft": f"S{det:02d}",
                "raft": "R00",
                "purpose": "SCIENCE",
            }
            for det in range(n_detectors)
        ],
        "day_obs": [],
        "group": [],
        "exposure": [],
        "visit_system": [{"instrument": INSTRUMENT, "id": 0, "name": "one-to-one"}],
        "visit": [],
        "visit_definition": [],
        "visit_system_membership": [],
        "visit_detector_region": [],
    }
    start = astropy.time.Time("2025-01-02T03:00:00", scale="tai")
    records["day_obs"].append(
        {
            "instrument": INSTRUMENT,
            "id": _DAY_OBS,
            "timespan": Timespan(start - 12 * u.hour, start + 12 * u.hour),
        }
    )
    # Detectors tile a square focal plane, row-major.
    n_side = int(np.ceil(np.sqrt(n_detectors)))
    for visit in range(1, n_visits + 1):
        begin = start + (visit - 1) * 60 * u.s
        timespan = Timespan(begin, begin + _EXPOSURE_TIME * u.s)
        physical_filter = f"{INSTRUMENT}-{_BANDS[(visit - 1) % len(_BANDS)]}"
        group = f"{INSTRUMENT}-group-{visit:04d}"
        ra0, dec0 = 150.0 + 0.05 * visit, 2.0
        regions = [
            _box_region(
                ra0 + (det % n_side - (n_side - 1) / 2) * _DETECTOR_SIZE_DEG,
                dec0 + (det // n_side - (n_side - 1) / 2) * _DETECTOR_SIZE_DEG,
                _DETECTOR_SIZE_DEG / 2,
            )
            for det in range(n_detectors)
        ]
        common = {"instrument": INSTRUMENT, "physical_filter": physical_filter, "day_obs": _DAY_OBS}
        records["group"].append({"instrument": INSTRUMENT, "name": group})
        records["exposure"].append(
            common
            | {
                "id": visit,
                "obs_id": f"{INSTRUMENT}_{_DAY_OBS}_{visit:06d}",
                "group": group,
                "timespan": timespan,
                "exposure_time": _EXPOSURE_TIME,
                "dark_time": _EXPOSURE_TIME,
                "observation_type": "science",
                "observation_reason": "science",
                "seq_num": visit,
                "seq_start": visit,
                "seq_end": visit,
                "target_name": "demo_field",
                "science_program": "demo",
                "tracking_ra": ra0,
                "tracking_dec": dec0,
                "sky_angle": 0.0,
                "azimuth": 0.0,
                "zenith_angle": 30.0,
                "has_simulated": True,
                "can_see_sky": True,
            }
        )
        records["visit"].append(
            common
            | {
                "id": visit,
                "name": f"{INSTRUMENT}_{_DAY_OBS}_{visit:06d}",
                "seq_num": visit,
                "exposure_time": _EXPOSURE_TIME,
                "target_name": "demo_field",
                "observation_reason": "science",
                "science_program": "demo",
                "azimuth": 0.0,
                "zenith_angle": 30.0,
                "region": ConvexPolygon.convexHull([v for r in regions for v in r.getVertices()]),
                "timespan": timespan,
            }
        )
        records["visit_definition"].append({"instrument": INSTRUMENT, "exposure": visit, "visit": visit})
        records["visit_system_membership"].append(
            {"instrument": INSTRUMENT, "visit": visit, "visit_system": 0}
        )
        records["visit_detector_region"].extend(
            {"instrument": INSTRUMENT, "visit": visit, "detector": det, "region": region}
            for det, region in enumerate(regions)
        )
    return records


def make_demo_repo(
    root: str,
    n_visits: int = 4,
    n_detectors: int = 4,
    seed_config: str | None = None,
    *,
    rng_seed: int = 12345,
    registry_db: str | None = None,
    registry_namespace: str | None = None,
) -> str:
    """Create a butler repository holding DemoCam raw data.

    Parameters
    ----------
    root : `str`
        Local directory for the repository; must not exist or be empty.
    n_visits : `int`, optional
        Number of visits (= exposures), with IDs ``1 .. n_visits``.
    n_detectors : `int`, optional
        Number of detectors, with IDs ``0 .. n_detectors - 1``.
    seed_config : `str`, optional
        Butler seed config file for ``Butler.makeRepo`` (e.g. one setting
        ``registry: {db: postgresql+psycopg://...}``).  Default: SQLite
        registry and file datastore inside ``root``.
    rng_seed : `int`, optional
        Seed for the synthetic pixel data.
    registry_db : `str`, optional
        SQLAlchemy URL of a PostgreSQL registry database, without a password
        (e.g. ``postgresql+psycopg://user@127.0.0.1:5432/butler``; the butler
        finds the password in the ``$LSST_DB_AUTH`` file).  Overrides any
        ``registry.db`` of ``seed_config``.  Default: SQLite in ``root``.
    registry_namespace : `str`, optional
        PostgreSQL schema for this repository's registry tables (created if
        missing; it must not already hold a registry).  Default with
        ``registry_db``: a new schema named after ``root`` and a random suffix,
        so that repositories can share one database.

    Returns
    -------
    root : `str`
        Absolute path of the repository root.

    Raises
    ------
    FileExistsError
        Raised if ``root`` exists and is not an empty directory.
    ValueError
        Raised if ``n_visits`` or ``n_detectors`` is not positive.
    """
    if n_visits < 1 or n_detectors < 1:
        raise ValueError(f"Need at least one visit and detector, got {n_visits=}, {n_detectors=}.")
    root = os.path.abspath(root)
    if os.path.exists(root) and (not os.path.isdir(root) or os.listdir(root)):
        raise FileExistsError(f"Refusing to build a demo repo in {root!r}: it exists and is not empty.")
    config = Config(seed_config) if seed_config else None
    if registry_db is not None:
        config = config if config is not None else Config()
        config["registry", "db"] = registry_db
        if registry_namespace is None:
            stem = re.sub(r"[^a-z0-9_]", "_", os.path.basename(root).lower())[:40]
            registry_namespace = f"demo_{stem}_{uuid.uuid4().hex[:8]}"
        config["registry", "namespace"] = registry_namespace
    Butler.makeRepo(root, config=config)
    butler = Butler.from_config(root, writeable=True)
    try:
        with butler.transaction():
            for element, rows in _dimension_records(n_visits, n_detectors).items():
                butler.registry.insertDimensionData(element, *rows)
        raw_type = DatasetType(
            "raw",
            dimensions=("instrument", "exposure", "detector"),
            storageClass="NumpyArray",
            universe=butler.dimensions,
        )
        butler.registry.registerDatasetType(raw_type)
        butler.collections.register(RAW_RUN, CollectionType.RUN)
        for exposure in range(1, n_visits + 1):
            for detector in range(n_detectors):
                # One stream per (exposure, detector) keeps images independent of n_visits/n_detectors.
                rng = np.random.default_rng([rng_seed, exposure, detector])
                data_id = {"instrument": INSTRUMENT, "exposure": exposure, "detector": detector}
                butler.put(make_raw_image(rng), raw_type, data_id, run=RAW_RUN)
        butler.collections.register(DEFAULTS_COLLECTION, CollectionType.CHAINED)
        butler.collections.redefine_chain(DEFAULTS_COLLECTION, [RAW_RUN])
    finally:
        butler.close()
    return root


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point; see the module docstring.

    Parameters
    ----------
    argv : `list` [`str`], optional
        Arguments; default ``sys.argv[1:]``.
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("root", help="Repository root directory (must not exist or be empty).")
    parser.add_argument("--visits", type=int, default=4, help="Number of visits (default 4).")
    parser.add_argument("--detectors", type=int, default=4, help="Number of detectors (default 4).")
    parser.add_argument("--seed-config", default=None, help="Butler seed config, e.g. for PostgreSQL.")
    parser.add_argument(
        "--registry-db", default=None, help="PostgreSQL registry URL (no password; see $LSST_DB_AUTH)."
    )
    parser.add_argument("--registry-namespace", default=None, help="PostgreSQL schema for the registry.")
    args = parser.parse_args(argv)
    root = make_demo_repo(
        args.root,
        args.visits,
        args.detectors,
        args.seed_config,
        registry_db=args.registry_db,
        registry_namespace=args.registry_namespace,
    )
    print(root)


if __name__ == "__main__":
    main()
