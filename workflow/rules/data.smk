import functools
import glob
import os

import datasets as dataset_registry
from common.files import sha256_json


@functools.cache
def damage(dataset):
    """What differs between a prepared dataset and its manifest, as a short key ("" when
    nothing does or it is not prepared): the check every load makes (sizes and stamps, a file
    whose stamp changed hashed again), made when the workflow is planned."""
    try:
        problems = dataset_registry.get(dataset).differences(DATA)[1]
    except dataset_registry.DatasetNotPrepared:
        return ""
    # The manifest's own stamp is part of the key: the same damage after a new preparation
    # gets a new marker, newer than that manifest.
    stamp = os.stat(f"{DATA}/{dataset}/manifest.json").st_mtime_ns
    return sha256_json([stamp, problems])[:12] if problems else ""


def damage_marker(wildcards):
    """The input of `prepare`: the marker of damage found just now (made now, so newer than
    the manifest: the dataset is prepared again) or else the last marker made, as ancient, so
    that the set of inputs stays what it was at the last preparation (rerun trigger `input`)."""
    key = damage(wildcards.dataset)
    if key:
        return [f"{DATA}/logs/damaged-{wildcards.dataset}-{key}"]
    earlier = sorted(glob.glob(f"{DATA}/logs/damaged-{wildcards.dataset}-" + "[0-9a-f]" * 12), key=os.path.getmtime)
    return [ancient(earlier[-1])] if earlier else []


rule prepare:
    """Download (paper datasets), verify and prepare one dataset into arrays + manifest. A
    prepared dataset that no longer matches its manifest (a file changed, truncated or
    missing, the manifest edited) is prepared again before any run reads it."""
    input:
        damage_marker,
    output:
        f"{DATA}/{{dataset}}/manifest.json",
    log:
        f"{DATA}/logs/prepare-{{dataset}}.log",
    shell:
        "{BENCH} data prepare {wildcards.dataset:q} {DIRS} 2> {log:q}"


rule mark_damaged:
    """The marker of damage found in a prepared dataset (see `prepare`)."""
    output:
        touch(f"{DATA}/logs/damaged-{{dataset}}-{{key}}"),
    wildcard_constraints:
        key="[0-9a-f]{12}",
