"""Tiny, DRP-shaped `~lsst.pipe.base.PipelineTask` classes used as a demo payload.

The tasks do a little real numpy work on small synthetic images so that a
pipeline built from them exercises the same butler I/O, quantum graph shapes
(per visit+detector, per visit and global quanta) and final-job aggregation as
a real Data Release Production pipeline, in milliseconds per quantum.

Only standard storage classes (``NumpyArray`` and ``StructuredDataDict``) are
used, so any process with the stock ``daf_butler`` configuration (notably
ctrl_bps's final ``butler aggregate-graph`` job) can read and register the
outputs; the mock storage classes of `lsst.pipe.base.tests.mocks` cannot be.

Every task config has the ``sleep``, ``failOn`` and ``failExitSignal`` fields
of `~desc.gen3_workflow.demo.control.DemoControlConfig`.
"""

from __future__ import annotations

__all__ = [
    "CalibrateTask",
    "CharacterizeImageTask",
    "DemoControlConfig",
    "DemoTaskError",
    "GlobalTableTask",
    "IsrTask",
    "VisitSummaryTask",
    "fail_condition_matches",
    "parse_fail_condition",
]

from collections.abc import Mapping
from typing import Any

import lsst.pex.config as pexConfig
import lsst.pipe.base as pipeBase
import lsst.pipe.base.connectionTypes as cT
import numpy as np

from .control import (
    DemoControlConfig,
    DemoTaskBase,
    DemoTaskError,
    fail_condition_matches,
    parse_fail_condition,
    quantum_data_id,
)

# Dimensions of the single-frame (per visit and detector) quanta and datasets.
_VISIT_DETECTOR = ("instrument", "visit", "detector")


def _robust_stats(image: np.ndarray) -> tuple[float, float]:
    """Return the median and MAD-based sigma of an image."""
    median = float(np.median(image))
    return median, float(1.4826 * np.median(np.abs(image - median)))


class IsrConnections(pipeBase.PipelineTaskConnections, dimensions=_VISIT_DETECTOR):
    raw = cT.Input(
        name="raw",
        doc="Raw exposures (one per snap) of this visit and detector, with overscan columns.",
        storageClass="NumpyArray",
        dimensions=("instrument", "exposure", "detector"),
        multiple=True,
    )
    postISRCCD = cT.Output(
        name="postISRCCD",
        doc="Overscan-subtracted, trimmed, snap-combined image.",
        storageClass="NumpyArray",
        dimensions=_VISIT_DETECTOR,
    )


class IsrConfig(DemoControlConfig, pipeBase.PipelineTaskConfig, pipelineConnections=IsrConnections):
    overscanColumns = pexConfig.Field[int](doc="Number of overscan columns at the right edge.", default=8)


class IsrTask(DemoTaskBase):
    """Subtract the overscan level, trim, and average the snaps of a visit."""

    ConfigClass = IsrConfig
    _DefaultName = "isr"
    config: IsrConfig

    def run(self, raw: list[np.ndarray]) -> pipeBase.Struct:
        """Process the raw snaps of one visit and detector.

        Parameters
        ----------
        raw : `list` [`numpy.ndarray`]
            Raw images, each with ``overscanColumns`` overscan columns.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``postISRCCD``: the trimmed, combined float32 image.
        """
        n_over = self.config.overscanColumns
        trimmed = [r[:, :-n_over].astype(np.float64) - np.median(r[:, -n_over:]) for r in raw]
        return pipeBase.Struct(postISRCCD=np.mean(trimmed, axis=0).astype(np.float32))


class CharacterizeImageConnections(pipeBase.PipelineTaskConnections, dimensions=_VISIT_DETECTOR):
    postISRCCD = cT.Input(
        name="postISRCCD",
        doc="Image from ISR.",
        storageClass="NumpyArray",
        dimensions=_VISIT_DETECTOR,
    )
    icExp = cT.Output(
        name="icExp",
        doc="Background-subtracted image.",
        storageClass="NumpyArray",
        dimensions=_VISIT_DETECTOR,
    )
    icSrc = cT.Output(
        name="icSrc",
        doc="Background statistics and bright peaks.",
        storageClass="StructuredDataDict",
        dimensions=_VISIT_DETECTOR,
    )


class CharacterizeImageConfig(
    DemoControlConfig, pipeBase.PipelineTaskConfig, pipelineConnections=CharacterizeImageConnections
):
    threshold = pexConfig.Field[float](doc="Detection threshold in units of background sigma.", default=5.0)
    maxSources = pexConfig.Field[int](doc="Maximum number of peaks to keep (brightest first).", default=50)


class CharacterizeImageTask(DemoTaskBase):
    """Estimate and subtract the background and detect bright peaks."""

    ConfigClass = CharacterizeImageConfig
    _DefaultName = "characterizeImage"
    config: CharacterizeImageConfig

    def run(self, postISRCCD: np.ndarray) -> pipeBase.Struct:
        """Characterize one image.

        Parameters
        ----------
        postISRCCD : `numpy.ndarray`
            Image from ISR.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``icExp``: background-subtracted image; ``icSrc``: dict with
            ``background``, ``backgroundSigma``, ``nSources`` and ``peaks``
            (list of ``{"x", "y", "peak"}``).
        """
        background, sigma = _robust_stats(postISRCCD)
        image = postISRCCD - np.float32(background)
        # A peak is a pixel above threshold that is the maximum of its 3x3 box.
        padded = np.pad(image, 1, mode="constant", constant_values=-np.inf)
        neighbours = np.max(
            [padded[1 + dy : padded.shape[0] - 1 + dy, 1 + dx : padded.shape[1] - 1 + dx]
             for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx],
            axis=0,
        )  # fmt: skip
        ys, xs = np.nonzero((image > self.config.threshold * max(sigma, 1e-6)) & (image > neighbours))
        order = np.argsort(image[ys, xs])[::-1][: self.config.maxSources]
        peaks = [{"x": int(xs[i]), "y": int(ys[i]), "peak": float(image[ys[i], xs[i]])} for i in order]
        icSrc = {"background": background, "backgroundSigma": sigma, "nSources": len(peaks), "peaks": peaks}
        return pipeBase.Struct(icExp=image, icSrc=icSrc)


class CalibrateConnections(pipeBase.PipelineTaskConnections, dimensions=_VISIT_DETECTOR):
    icExp = cT.Input(
        name="icExp",
        doc="Background-subtracted image.",
        storageClass="NumpyArray",
        dimensions=_VISIT_DETECTOR,
    )
    icSrc = cT.Input(
        name="icSrc",
        doc="Peaks from characterizeImage.",
        storageClass="StructuredDataDict",
        dimensions=_VISIT_DETECTOR,
    )
    calexp = cT.Output(
        name="calexp",
        doc="Photometrically calibrated image (flux units).",
        storageClass="NumpyArray",
        dimensions=_VISIT_DETECTOR,
    )
    src = cT.Output(
        name="src",
        doc="Aperture photometry of the peaks, with magnitudes.",
        storageClass="StructuredDataDict",
        dimensions=_VISIT_DETECTOR,
    )


class CalibrateConfig(
    DemoControlConfig, pipeBase.PipelineTaskConfig, pipelineConnections=CalibrateConnections
):
    apertureRadius = pexConfig.Field[int](doc="Half-width of the square photometry aperture.", default=3)
    zeroPoint = pexConfig.Field[float](doc="Magnitude zero point of one count.", default=27.0)


class CalibrateTask(DemoTaskBase):
    """Measure aperture fluxes at the characterized peaks and calibrate."""

    ConfigClass = CalibrateConfig
    _DefaultName = "calibrate"
    config: CalibrateConfig

    def run(self, icExp: np.ndarray, icSrc: dict[str, Any]) -> pipeBase.Struct:
        """Calibrate one image.

        Parameters
        ----------
        icExp : `numpy.ndarray`
            Background-subtracted image.
        icSrc : `dict`
            Output of `CharacterizeImageTask`.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``calexp``: image scaled to flux units; ``src``: dict with
            ``zeroPoint``, ``nSources``, ``medianMag`` and ``sources`` (list of
            ``{"x", "y", "flux", "mag"}``).
        """
        r = self.config.apertureRadius
        zp = self.config.zeroPoint
        sources = []
        for peak in icSrc["peaks"]:
            x, y = peak["x"], peak["y"]
            flux = float(icExp[max(y - r, 0) : y + r + 1, max(x - r, 0) : x + r + 1].sum())
            mag = zp - 2.5 * float(np.log10(flux)) if flux > 0 else float("nan")
            sources.append({"x": x, "y": y, "flux": flux, "mag": mag})
        mags = [s["mag"] for s in sources if np.isfinite(s["mag"])]
        src = {
            "zeroPoint": zp,
            "nSources": len(sources),
            "medianMag": float(np.median(mags)) if mags else None,
            "sources": sources,
        }
        # Scale counts to "nJy" so the calexp differs from the icExp.
        calexp = (icExp * np.float32(10 ** (-0.4 * (zp - 31.4)))).astype(np.float32)
        return pipeBase.Struct(calexp=calexp, src=src)


class VisitSummaryConnections(pipeBase.PipelineTaskConnections, dimensions=("instrument", "visit")):
    src = cT.Input(
        name="src",
        doc="Per-detector source measurements.",
        storageClass="StructuredDataDict",
        dimensions=_VISIT_DETECTOR,
        multiple=True,
    )
    calexp = cT.Input(
        name="calexp",
        doc="Per-detector calibrated images.",
        storageClass="NumpyArray",
        dimensions=_VISIT_DETECTOR,
        multiple=True,
    )
    visitSummary = cT.Output(
        name="visitSummary",
        doc="Per-detector summary statistics of one visit.",
        storageClass="StructuredDataDict",
        dimensions=("instrument", "visit"),
    )


class VisitSummaryConfig(
    DemoControlConfig, pipeBase.PipelineTaskConfig, pipelineConnections=VisitSummaryConnections
):
    pass


class VisitSummaryTask(DemoTaskBase):
    """Gather per-detector statistics of one visit into a summary."""

    ConfigClass = VisitSummaryConfig
    _DefaultName = "visitSummary"
    config: VisitSummaryConfig

    def runQuantum(
        self,
        butlerQC: pipeBase.QuantumContext,
        inputRefs: pipeBase.InputQuantizedConnection,
        outputRefs: pipeBase.OutputQuantizedConnection,
    ) -> None:
        # Docstring inherited.  Overridden because run() needs detector IDs.
        data_id = quantum_data_id(butlerQC)
        self.simulate(data_id.mapping)
        srcs = {ref.dataId["detector"]: butlerQC.get(ref) for ref in inputRefs.src}
        calexps = {ref.dataId["detector"]: butlerQC.get(ref) for ref in inputRefs.calexp}
        butlerQC.put(self.run(visit=int(data_id["visit"]), srcs=srcs, calexps=calexps), outputRefs)

    def run(self, visit: int, srcs: Mapping[Any, dict], calexps: Mapping[Any, np.ndarray]) -> pipeBase.Struct:
        """Summarize one visit.

        Parameters
        ----------
        visit : `int`
            Visit ID, recorded in the summary.
        srcs : `~collections.abc.Mapping` [`int`, `dict`]
            `CalibrateTask` ``src`` outputs, keyed by detector.
        calexps : `~collections.abc.Mapping` [`int`, `numpy.ndarray`]
            `CalibrateTask` ``calexp`` outputs, keyed by detector.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``visitSummary``: dict with ``visit``, ``nDetectors``,
            ``nSources`` and ``detectors`` (list of per-detector dicts).
        """
        detectors = []
        for detector in sorted(srcs):
            image = calexps.get(detector)
            detectors.append(
                {
                    "detector": int(detector),
                    "nSources": int(srcs[detector]["nSources"]),
                    "zeroPoint": float(srcs[detector]["zeroPoint"]),
                    "medianMag": srcs[detector]["medianMag"],
                    "imageStd": float(np.std(image)) if image is not None else None,
                }
            )
        summary = {
            "visit": visit,
            "nDetectors": len(detectors),
            "nSources": sum(d["nSources"] for d in detectors),
            "detectors": detectors,
        }
        return pipeBase.Struct(visitSummary=summary)


class GlobalTableConnections(pipeBase.PipelineTaskConnections, dimensions=("instrument",)):
    visitSummary = cT.Input(
        name="visitSummary",
        doc="Per-visit summaries.",
        storageClass="StructuredDataDict",
        dimensions=("instrument", "visit"),
        multiple=True,
    )
    objectTable = cT.Output(
        name="objectTable",
        doc="Survey-wide table built from every visit summary.",
        storageClass="StructuredDataDict",
        dimensions=("instrument",),
    )


class GlobalTableConfig(
    DemoControlConfig, pipeBase.PipelineTaskConfig, pipelineConnections=GlobalTableConnections
):
    pass


class GlobalTableTask(DemoTaskBase):
    """Combine all visit summaries into one survey-wide table."""

    ConfigClass = GlobalTableConfig
    _DefaultName = "globalTable"
    config: GlobalTableConfig

    def run(self, visitSummary: list[dict[str, Any]]) -> pipeBase.Struct:
        """Build the global table.

        Parameters
        ----------
        visitSummary : `list` [`dict`]
            `VisitSummaryTask` outputs.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``objectTable``: dict with ``nVisits``, ``nDetectorVisits``,
            ``nSources``, ``meanMedianMag`` and per-visit ``visits`` rows.
        """
        rows = sorted(
            (
                {"visit": s["visit"], "nDetectors": s["nDetectors"], "nSources": s["nSources"]}
                for s in visitSummary
            ),
            key=lambda row: row["visit"],
        )
        mags = [d["medianMag"] for s in visitSummary for d in s["detectors"] if d["medianMag"] is not None]
        table = {
            "nVisits": len(rows),
            "nDetectorVisits": sum(row["nDetectors"] for row in rows),
            "nSources": sum(row["nSources"] for row in rows),
            "meanMedianMag": float(np.mean(mags)) if mags else None,
            "visits": rows,
        }
        return pipeBase.Struct(objectTable=table)
