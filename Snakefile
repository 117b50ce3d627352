# facepipe: two people's videos in, a face-swapped video with its audio out.
# Run `snakemake --cores N` (config/config.yaml) or add `--configfile my.yaml`.
# Stage settings live in params.yaml; rules live in workflow/rules/.

import sys

from snakemake.utils import min_version

from facepipe import buildlock
from facepipe.config import check_config_file
from facepipe.errors import FacepipeError

min_version("9.0")


# One build at a time in this folder (facepipe.buildlock); jobs that Snakemake runs
# elsewhere (a cluster node) read this file in another mode.
if workflow.is_main_process:
    try:
        buildlock.hold()
    except FacepipeError as exc:
        sys.exit(f"facepipe: error: {exc}")


# The default config only when none is given: Snakemake would merge the two, adding the
# default's people and swaps to the user's.
if not workflow.config_settings.configfiles:
    try:
        check_config_file("config/config.yaml")
    except FacepipeError as exc:
        sys.exit(f"facepipe: error: {exc}")

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/frames.smk"
include: "workflow/rules/detect.smk"
include: "workflow/rules/filter.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/convert.smk"
include: "workflow/rules/evaluate.smk"


rule all:
    input:
        all_targets(),
    default_target: True


onsuccess:
    version_with_dvc()
