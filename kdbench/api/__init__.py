"""The public plugin API: everything a KD method, pair, model, metric, dataset or executor
plugin is written against, importable from this one path.

Built-in plugins import only from here (and `kdbench.errors`), exactly as a third-party
package must: a test fails when a module under `plugins/` imports any other part of the
core. So anything a built-in needs that is missing here is missing for everyone and
belongs here. The submodules group the contracts by kind; their names are not part of the
API, `kdbench.api` is.
"""

from kdbench.api.datasets import SPLITS, Dataset, PreparedDataset, Utterance, version_of
from kdbench.api.devices import (
    VISIBLE_DEVICES_ENV,
    check_device_setting,
    places_over_gpus,
    resolve_device,
    visible_gpus,
)
from kdbench.api.executors import (
    Event,
    Executor,
    NodePortable,
    OnStep,
    ProgressExecutor,
    Report,
    ReportingExecutor,
    Started,
    Step,
    adopt_outputs,
    run_on_node,
    shippable_inputs,
    started_here,
    throttled,
)
from kdbench.api.latents import (
    AlignedLatentLoss,
    Aligner,
    LatentPairLoss,
    aligned_pairs,
    build_aligners,
    channel_pooling,
    latents_param,
    match_latents,
    match_param,
    paired_tensors,
    resample,
    resample_param,
)
from kdbench.api.methods import Batch, KDLoss, KDMethod
from kdbench.api.metrics import Metric
from kdbench.api.models import (
    ArchitecturePair,
    Denoiser,
    DenoiserOutput,
    MaskDenoiser,
    ModelFamily,
    ModelSpec,
    TimeReach,
)
from kdbench.api.params import Param, resolve_params
from kdbench.errors import AudioError, ConfigError, CorruptFile, MetricUndefined, NotApplicable
from kdbench.files.audio import AudioInfo, audio_info, read_audio, write_audio
from kdbench.files.cache import load_or_build, staged_directory
from kdbench.plugin.markers import hookimpl

__all__ = [
    "VISIBLE_DEVICES_ENV",
    "Aligner",
    "AlignedLatentLoss",
    "ArchitecturePair",
    "AudioError",
    "AudioInfo",
    "Batch",
    "ConfigError",
    "CorruptFile",
    "Dataset",
    "SPLITS",
    "Denoiser",
    "DenoiserOutput",
    "Event",
    "Executor",
    "KDLoss",
    "KDMethod",
    "LatentPairLoss",
    "MaskDenoiser",
    "Metric",
    "MetricUndefined",
    "ModelFamily",
    "ModelSpec",
    "NodePortable",
    "NotApplicable",
    "OnStep",
    "Param",
    "PreparedDataset",
    "ProgressExecutor",
    "Report",
    "ReportingExecutor",
    "Started",
    "Step",
    "TimeReach",
    "Utterance",
    "adopt_outputs",
    "aligned_pairs",
    "audio_info",
    "build_aligners",
    "check_device_setting",
    "channel_pooling",
    "hookimpl",
    "latents_param",
    "load_or_build",
    "match_latents",
    "match_param",
    "paired_tensors",
    "places_over_gpus",
    "read_audio",
    "resample",
    "resample_param",
    "resolve_device",
    "resolve_params",
    "run_on_node",
    "staged_directory",
    "shippable_inputs",
    "started_here",
    "throttled",
    "version_of",
    "visible_gpus",
    "write_audio",
]
