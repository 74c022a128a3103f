"""jadam: the Adam family (Kingma & Ba, 2015) as pure, optax-compatible gradient transformations."""

from importlib import metadata as _metadata

from jadam._adabelief import ScaleByBeliefState as ScaleByBeliefState
from jadam._adabelief import adabelief as adabelief
from jadam._adabelief import scale_by_belief as scale_by_belief
from jadam._adafactor import FactoredState as FactoredState
from jadam._adafactor import adafactor as adafactor
from jadam._adafactor import scale_by_factored_rms as scale_by_factored_rms
from jadam._adam import adam as adam
from jadam._adam import adamw as adamw
from jadam._adam import nadam as nadam
from jadam._adam import nadamw as nadamw
from jadam._adam import scale_by_adam as scale_by_adam
from jadam._adamax import ScaleByAdamaxState as ScaleByAdamaxState
from jadam._adamax import adamax as adamax
from jadam._adamax import adamaxw as adamaxw
from jadam._adamax import scale_by_adamax as scale_by_adamax
from jadam._ademamix import ScaleByAdemamixState as ScaleByAdemamixState
from jadam._ademamix import ademamix as ademamix
from jadam._ademamix import scale_by_ademamix as scale_by_ademamix
from jadam._adopt import adopt as adopt
from jadam._adopt import scale_by_adopt as scale_by_adopt
from jadam._amsgrad import ScaleByAmsgradState as ScaleByAmsgradState
from jadam._amsgrad import amsgrad as amsgrad
from jadam._amsgrad import scale_by_amsgrad as scale_by_amsgrad
from jadam._averaging import TemporalAveragingState as TemporalAveragingState
from jadam._averaging import averaged_params as averaged_params
from jadam._averaging import temporal_averaging as temporal_averaging
from jadam._baselines import ScaleByAdadeltaState as ScaleByAdadeltaState
from jadam._baselines import ScaleByAdagradState as ScaleByAdagradState
from jadam._baselines import ScaleByMomentumState as ScaleByMomentumState
from jadam._baselines import ScaleByRmsState as ScaleByRmsState
from jadam._baselines import ScaleByRmsWithCountState as ScaleByRmsWithCountState
from jadam._baselines import ScaleByRStdDevState as ScaleByRStdDevState
from jadam._baselines import ScaleByRStdDevWithCountState as ScaleByRStdDevWithCountState
from jadam._baselines import adadelta as adadelta
from jadam._baselines import adagrad as adagrad
from jadam._baselines import rmsprop as rmsprop
from jadam._baselines import scale_by_adadelta as scale_by_adadelta
from jadam._baselines import scale_by_adagrad as scale_by_adagrad
from jadam._baselines import scale_by_momentum as scale_by_momentum
from jadam._baselines import scale_by_rms as scale_by_rms
from jadam._baselines import sgd as sgd
from jadam._family import ScaleByAdamState as ScaleByAdamState
from jadam._fused import FusedFallbackWarning as FusedFallbackWarning
from jadam._fused import FusedTransformation as FusedTransformation
from jadam._fused import fused_train_step as fused_train_step
from jadam._kernel import available as fused_kernel_available
from jadam._lamb import lamb as lamb
from jadam._lamb import scale_by_trust_ratio as scale_by_trust_ratio
from jadam._lazy_adam import ScaleByLazyAdamState as ScaleByLazyAdamState
from jadam._lazy_adam import SparseRowOptimizer as SparseRowOptimizer
from jadam._lazy_adam import lazy_adam as lazy_adam
from jadam._lazy_adam import scale_by_lazy_adam as scale_by_lazy_adam
from jadam._lazy_adam import sparse_lazy_adam as sparse_lazy_adam
from jadam._migration import from_optax_state as from_optax_state
from jadam._migration import to_optax_state as to_optax_state
from jadam._nadam import ScaleByNadamState as ScaleByNadamState
from jadam._nadam import scale_by_nadam as scale_by_nadam
from jadam._nonfinite import SkipNonFiniteState as SkipNonFiniteState
from jadam._nonfinite import skip_counts as skip_counts
from jadam._nonfinite import skip_nonfinite as skip_nonfinite
from jadam._packed import PackedAdamState as PackedAdamState
from jadam._precision import StochasticRounding as StochasticRounding
from jadam._primitives import bias_correction as bias_correction
from jadam._primitives import update_first_moment as update_first_moment
from jadam._primitives import update_infinity_norm as update_infinity_norm
from jadam._primitives import update_second_moment as update_second_moment
from jadam._quantization import Blockwise8bit as Blockwise8bit
from jadam._radam import radam as radam
from jadam._radam import scale_by_radam as scale_by_radam
from jadam._schedule_free import ScheduleFreeState as ScheduleFreeState
from jadam._schedule_free import scale_by_corrected_rms as scale_by_corrected_rms
from jadam._schedule_free import schedule_free as schedule_free
from jadam._schedule_free import schedule_free_adamw as schedule_free_adamw
from jadam._schedule_free import schedule_free_eval_params as schedule_free_eval_params
from jadam._schedules import decayed_b1_correction as decayed_b1_correction
from jadam._schedules import decayed_b1_schedule as decayed_b1_schedule
from jadam._schedules import inverse_sqrt_schedule as inverse_sqrt_schedule
from jadam._sharding import init_sharded as init_sharded
from jadam._sharding import per_device_bytes as per_device_bytes
from jadam._sharding import state_shardings as state_shardings
from jadam._state_size import state_nbytes as state_nbytes
from jadam._yogi import scale_by_yogi as scale_by_yogi
from jadam._yogi import yogi as yogi

try:  # the version is defined once, in pyproject.toml
    __version__ = _metadata.version("jadam")
except _metadata.PackageNotFoundError:  # an uninstalled source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "Blockwise8bit",
    "FactoredState",
    "FusedFallbackWarning",
    "FusedTransformation",
    "PackedAdamState",
    "ScaleByAdadeltaState",
    "ScaleByAdagradState",
    "ScaleByAdamState",
    "ScaleByAdamaxState",
    "ScaleByAdemamixState",
    "ScaleByAmsgradState",
    "ScaleByBeliefState",
    "ScaleByLazyAdamState",
    "ScaleByMomentumState",
    "ScaleByNadamState",
    "ScaleByRStdDevState",
    "ScaleByRStdDevWithCountState",
    "ScaleByRmsState",
    "ScaleByRmsWithCountState",
    "ScheduleFreeState",
    "SkipNonFiniteState",
    "SparseRowOptimizer",
    "StochasticRounding",
    "TemporalAveragingState",
    "adabelief",
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "adamaxw",
    "adamw",
    "ademamix",
    "adopt",
    "amsgrad",
    "averaged_params",
    "bias_correction",
    "decayed_b1_correction",
    "decayed_b1_schedule",
    "from_optax_state",
    "fused_kernel_available",
    "fused_train_step",
    "init_sharded",
    "inverse_sqrt_schedule",
    "lamb",
    "lazy_adam",
    "nadam",
    "nadamw",
    "per_device_bytes",
    "radam",
    "rmsprop",
    "scale_by_adadelta",
    "scale_by_adagrad",
    "scale_by_adam",
    "scale_by_adamax",
    "scale_by_ademamix",
    "scale_by_adopt",
    "scale_by_amsgrad",
    "scale_by_belief",
    "scale_by_corrected_rms",
    "scale_by_factored_rms",
    "scale_by_lazy_adam",
    "scale_by_momentum",
    "scale_by_nadam",
    "scale_by_radam",
    "scale_by_rms",
    "scale_by_trust_ratio",
    "scale_by_yogi",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "sgd",
    "skip_counts",
    "skip_nonfinite",
    "sparse_lazy_adam",
    "state_nbytes",
    "state_shardings",
    "temporal_averaging",
    "to_optax_state",
    "update_first_moment",
    "update_infinity_norm",
    "update_second_moment",
    "yogi",
]
