"""What a finished run registered in the butler."""

from __future__ import annotations

from collections import Counter

import click

from ..store.job_store import JobStateStore

__all__ = ["output_counts", "print_outputs"]


def output_counts(butler_config: str, collection: str) -> Counter[str]:
    """Number of datasets of each type registered in ``collection`` (none if
    the collection does not exist: a final job that failed never made it)."""
    from lsst.daf.butler import Butler, MissingCollectionError

    butler = Butler.from_config(butler_config)
    try:
        refs = butler.registry.queryDatasets(..., collections=collection)
        return Counter(ref.datasetType.name for ref in refs)
    except MissingCollectionError:
        return Counter()
    finally:
        butler.close()


def print_outputs(submit_dir: str) -> None:
    """Print the datasets a run registered in its output collection."""
    with JobStateStore.open(submit_dir) as store:
        info = store.run().info
    collection, repo = info.output_run, info.butler_config
    if not (collection and repo):
        return
    click.echo(f"\nOutputs in run collection {collection} of {repo}:")
    for dataset_type, count in sorted(output_counts(repo, collection).items()):
        click.echo(f"  {dataset_type:<30} {count:>6}")
    click.echo(f"(list them with: butler query-datasets {repo} --collections {collection})")
