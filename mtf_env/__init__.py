"""Synthetic short-video session simulator for multi-task fusion, as the Gymnasium env ``ShortVideoMTF-v0``.

``import mtf_env`` registers the environment::

    env = gymnasium.make("ShortVideoMTF-v0", reward="default")
    venv = gymnasium.make_vec("ShortVideoMTF-v0", num_envs=64, vectorization_mode="vector_entry_point")
"""
from gymnasium.envs.registration import register, registry

from .config import ResponseParams, SimConfig, make_config
from .fusion import BETA, PRODUCTION_ACTION, PRODUCTION_ALPHA, action_to_alpha, alpha_to_action
from .rewards import REWARD_PRESETS, reward_weights
from .tasks import N_TASKS, TASK_NAMES

ENV_ID = "ShortVideoMTF-v0"

if ENV_ID not in registry:
    register(
        id=ENV_ID,
        entry_point="mtf_env.env:ShortVideoMTFEnv",
        vector_entry_point="mtf_env.env:ShortVideoMTFVectorEnv",
        disable_env_checker=False,
    )

__all__ = [
    "ENV_ID", "SimConfig", "ResponseParams", "make_config", "BETA", "PRODUCTION_ACTION", "PRODUCTION_ALPHA",
    "action_to_alpha", "alpha_to_action", "REWARD_PRESETS", "reward_weights", "N_TASKS", "TASK_NAMES",
]
